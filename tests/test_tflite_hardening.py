"""Hostile and broken .tflite files: every one ends in one TFLiteError naming the file and the
part of it that is wrong (issue 14), never in a foreign exception from flatbuffers, numpy or a
kernel. Files are built through the project's writer or mutated in memory from the official
Small release; a seeded mini-fuzz checks the promise over a few hundred mutations."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tflite
import torch

from mobilenetv3 import create_model
from mobilenetv3.errors import WeightsError
from mobilenetv3.tflite.interpreter import QuantizedTFLiteModule
from mobilenetv3.tflite.interpreter.checks import check_model
from mobilenetv3.tflite.model import Model, Operator, Quantization, Tensor, TFLiteError
from mobilenetv3.tflite.reader import TFLiteModel
from mobilenetv3.tflite.writer import serialize
from mobilenetv3.weights.loading import tflite_slim_state

SMALL = "v3-small_224_1.0_uint8.tflite"
U8 = np.dtype(np.uint8)
#: An internal exception's own text ("error: unpack_from requires ...") in a message.
INTERNAL_TEXT = re.compile(r"\b\w*(Error|error|Exception): ")


def _q(scale: float, zero_point: int) -> Quantization:
    return Quantization.per_tensor(scale, zero_point)


def _tiny() -> Model:
    """A quantized graph with the operators of a MobileNet block: CONV_2D (stride 2, SAME,
    RELU6), DEPTHWISE_CONV_2D, HARD_SWISH, ADD, MUL, AVERAGE_POOL_2D, RESHAPE, SOFTMAX."""
    rng = np.random.default_rng(0)
    tensors = [
        Tensor("x", (1, 8, 8, 3), U8, quantization=_q(1 / 128, 128)),
        Tensor("w", (4, 3, 3, 3), U8, rng.integers(0, 256, (4, 3, 3, 3)).astype(U8),
               _q(0.02, 128)),  # fmt: skip
        Tensor("b", (4,), np.dtype(np.int32), rng.integers(-500, 500, 4).astype(np.int32),
               _q(0.02 / 128, 0)),  # fmt: skip
        Tensor("y", (1, 4, 4, 4), U8, quantization=_q(0.05, 0)),
        Tensor("dw", (1, 3, 3, 4), U8, rng.integers(0, 256, (1, 3, 3, 4)).astype(U8),
               _q(0.02, 128)),  # fmt: skip
        Tensor("db", (4,), np.dtype(np.int32), rng.integers(-500, 500, 4).astype(np.int32),
               _q(0.001, 0)),  # fmt: skip
        Tensor("d", (1, 4, 4, 4), U8, quantization=_q(0.05, 128)),
        Tensor("h", (1, 4, 4, 4), U8, quantization=_q(0.03, 100)),
        Tensor("a", (1, 4, 4, 4), U8, quantization=_q(0.06, 128)),
        Tensor("m", (1, 4, 4, 4), U8, quantization=_q(0.04, 128)),
        Tensor("p", (1, 1, 1, 4), U8, quantization=_q(0.06, 128)),
        Tensor("r", (1, 4), U8, quantization=_q(0.06, 128)),
        Tensor("s", (1, 4), U8, quantization=_q(1 / 256, 0)),
    ]
    window = {"padding": "SAME", "stride_w": 2, "stride_h": 2}
    operators = [
        Operator("CONV_2D", (0, 1, 2), (3,), {**window, "fused_activation_function": "RELU6"}),
        Operator("DEPTHWISE_CONV_2D", (3, 4, 5), (6,), {"padding": "SAME", "stride_w": 1,
                                                       "stride_h": 1, "depth_multiplier": 1}),
        Operator("HARD_SWISH", (6,), (7,)),
        Operator("ADD", (6, 7), (8,), {"fused_activation_function": "NONE"}),
        Operator("MUL", (8, 7), (9,), {"fused_activation_function": "NONE"}),
        Operator("AVERAGE_POOL_2D", (9,), (10,), {"padding": "VALID", "stride_w": 1, "stride_h": 1,
                                                 "filter_width": 4, "filter_height": 4}),
        Operator("RESHAPE", (10,), (11,)),
        Operator("SOFTMAX", (11,), (12,), {"beta": 1.0}),
    ]  # fmt: skip
    return Model(tensors, operators, [0], [12], "tiny", source="tiny.tflite")


def _tiny_module(model: Model) -> QuantizedTFLiteModule:
    return QuantizedTFLiteModule(TFLiteModel.from_bytes(serialize(model), source="tiny.tflite"))


def test_tiny_model_runs() -> None:
    """The control: unchanged, the tiny graph builds and gives probabilities."""
    probs = _tiny_module(_tiny())(torch.rand(2, 3, 8, 8) * 2 - 1)
    assert probs.shape == (2, 4) and abs(float(probs.sum(1).mean()) - 1) < 0.05


# the int8 interpreter refuses malformed graphs before any kernel runs -------------------------


def _set(path: str, value: object) -> Callable[[Model], None]:
    """A change to the tiny model: 'operators.0.options.stride_h' = value."""

    def change(model: Model) -> None:
        *parents, last = path.split(".")
        target: object = model
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        if isinstance(target, dict):
            target[last] = value
        else:
            setattr(target, last, value)

    return change


GRAPH_CASES: dict[str, tuple[Callable[[Model], None], str]] = {
    "zero stride": (_set("operators.0.options.stride_h", 0),
                    r"operator 0 \(CONV_2D, producing 'y'\).*stride_h"),
    "pool without options": (_set("operators.5.options", {}),
                             r"operator 5 \(AVERAGE_POOL_2D, producing 'p'\).*filter_height"),
    "zero pool filter": (_set("operators.5.options.filter_width", 0),
                         r"operator 5 \(AVERAGE_POOL_2D.*filter_width"),
    "zero scale": (_set("tensors.3.quantization", _q(0.0, 0)),
                   r"operator 0 \(CONV_2D, producing 'y'\).*'y'.*finite and > 0"),
    "inf scale": (_set("tensors.7.quantization", _q(float("inf"), 0)),
                  r"operator 2 \(HARD_SWISH, producing 'h'\).*finite and > 0"),
    "nan scale": (_set("tensors.0.quantization", _q(float("nan"), 128)),
                  r"operator 0 \(CONV_2D.*'x'.*finite and > 0"),
    "zero point out of range": (_set("tensors.6.quantization", _q(0.05, 300)),
                                r"operator 1 \(DEPTHWISE_CONV_2D.*zero point"),
    "per-channel activation": (_set("tensors.6.quantization", Quantization(
        np.full(4, 0.05, np.float32), np.full(4, 128, np.int64), 3)),
        r"operator 1 \(DEPTHWISE_CONV_2D.*output 'd' has 4 scales"),
    "float activation": (_set("tensors.7.dtype", np.dtype(np.float32)),
                         r"operator 2 \(HARD_SWISH.*float32.*uint8 or int8"),
    "output shape": (_set("tensors.3.shape", (1, 5, 4, 4)),
                     r"operator 0 \(CONV_2D.*\(1, 5, 4, 4\).*\(1, 4, 4, 4\)"),
    "filter does not fit": (_set("operators.1.inputs", (3, 1, 5)),
                            r"operator 1 \(DEPTHWISE_CONV_2D.*does not fit"),
    "bias shape": (_set("operators.0.inputs", (0, 1, 4)),
                   r"operator 0 \(CONV_2D.*bias 'dw' is uint8 \(1, 3, 3, 4\)"),
    "unknown activation": (_set("operators.0.options.fused_activation_function", 9),
                           r"operator 0 \(CONV_2D.*fused activation 9"),
    "bad padding": (_set("operators.0.options.padding", 7), r"operator 0.*padding 7"),
    "constant first input": (_set("operators.2.inputs", (4,)),
                             r"operator 2 \(HARD_SWISH.*input 0 'dw' is a constant"),
    "no inputs": (_set("operators.6.inputs", ()), r"operator 6 \(RESHAPE.*has 0 inputs"),
    "read before produced": (_set("operators.2.inputs", (8,)),
                             r"operator 2 \(HARD_SWISH.*tensor 8 'a' before anything produces"),
    "infinite multiplier": (_set("tensors.9.quantization", _q(1e-45, 128)),
                            r"operator 4 \(MUL, producing 'm'\): a requantization multiplier "
                            r"is inf"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_malformed_graph_is_refused_naming_the_operator(case: str) -> None:
    change, pattern = GRAPH_CASES[case]
    model = _tiny()
    change(model)
    with pytest.raises(TFLiteError, match=pattern) as info:
        _tiny_module(model)
    assert str(info.value).startswith("tiny.tflite: ")


def test_in_memory_model_with_missing_tensor_is_refused() -> None:
    """A Model built in memory skips the reader's index checks; the interpreter repeats them."""
    model = _tiny()
    model.operators[2] = Operator("HARD_SWISH", (6,), (99,))
    with pytest.raises(TFLiteError, match=r"tiny.tflite: operator 2 \(HARD_SWISH.*tensor 99"):
        QuantizedTFLiteModule(model)


# the reader: sizes, indices and offsets checked at its boundary -------------------------------


def _reader_error(data: bytes, source: str = "tiny.tflite") -> str:
    with pytest.raises(TFLiteError) as info:
        TFLiteModel.from_bytes(data, source=source)
    message = str(info.value)
    assert message.startswith(f"{source}: ") and not INTERNAL_TEXT.search(message), message
    return message


READER_CASES: dict[str, tuple[Callable[[Model], None], str]] = {
    "negative dimension": (_set("tensors.3.shape", (1, -4, 4, 4)),
                           r"tensor 3 'y' has shape \(1, -4, 4, 4\)"),
    "huge dimensions": (_set("tensors.3.shape", (1, 1 << 20, 1 << 20, 4)),
                        r"tensor 3 'y' .*would exceed"),
    "rank": (_set("tensors.3.shape", (1, -4) + (2,) * 20), r"tensor 3 'y' has shape "
             r"\(1, -4, 2, 2, 2, 2, 2, 2, \.\.\. 22 dims\) \(UINT8\)"),
    "buffer size": (_set("tensors.2.shape", (5,)), r"tensor 2 'b' .*needs 20 bytes.*holds 16"),
    "operator tensor index": (_set("operators.3.inputs", (6, 70)),
                              r"operator 3 \(ADD\) names tensor 70, the file has 13"),
    "negative tensor index": (_set("operators.3.inputs", (6, -5)), r"operator 3 \(ADD\).*-5"),
    "graph input index": (_set("inputs", [40]), r"graph input tensor 40 does not exist"),
    "zero point count": (_set("tensors.4.quantization",
                              Quantization(np.ones(2, np.float32), np.zeros(1, np.int64))),
                         r"tensor 4 'dw' has 2 quantization scale\(s\) but 1 zero point"),
    "per-channel axis": (_set("tensors.4.quantization",
                              Quantization(np.ones(4, np.float32), np.zeros(4, np.int64), 7)),
                         r"tensor 4 'dw' .*per-channel scales along dimension 7"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(READER_CASES))
def test_reader_names_the_bad_part(case: str) -> None:
    change, pattern = READER_CASES[case]
    model = _tiny()
    change(model)
    assert re.search(pattern, _reader_error(serialize(model))), case


@pytest.fixture(scope="module")
def small(shared: Path) -> bytes:
    return (shared / "pretrained" / SMALL).read_bytes()


def _vector_length_at(data: bytes, table: object, slot: int) -> int:
    """Where the length of the vector in field `slot` of a flatbuffers table is stored."""
    tab = table._tab  # type: ignore[attr-defined]
    return tab.Vector(tab.Offset(4 + 2 * slot)) - 4


def _put_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + value.to_bytes(4, "little") + data[at + 4 :]


def test_official_file_damaged_in_place(small: bytes) -> None:
    """Length fields of the official file set huge, an opcode index out of range, a cut."""
    model = tflite.Model.GetRootAs(small, 0)
    graph = model.Subgraphs(0)
    data_buffer = next(i for i in range(model.BuffersLength()) if model.Buffers(i).DataLength())
    cases = {
        "buffer": (_put_u32(small, _vector_length_at(small, model.Buffers(data_buffer), 0),
                            1 << 30), rf"buffer {data_buffer} declares 1073741824 bytes"),
        "tensors": (_put_u32(small, _vector_length_at(small, graph, 0), 0x7FFFFFFF),
                    r"declares 2147483647 tensors"),
        "truncated": (small[: len(small) * 3 // 5], r"truncated or damaged"),
    }  # fmt: skip
    op = next(i for i in range(graph.OperatorsLength()) if graph.Operators(i).OpcodeIndex())
    tab = graph.Operators(op)._tab
    cases["opcode"] = (_put_u32(small, tab.Pos + tab.Offset(4), 200),
                       rf"operator {op} uses opcode index 200, the file has \d+")
    for name, (data, pattern) in cases.items():
        assert re.search(pattern, _reader_error(data, "small.tflite")), name


# the .tflite weights mapping of the float model ------------------------------------------------


def _float_conv(weights: np.ndarray, with_bias: bool = True) -> bytes:
    f32 = np.dtype(np.float32)
    tensors = [
        Tensor("input", (1, 8, 8, 3), f32),
        Tensor("MobilenetV3/Conv/weights", weights.shape, weights.dtype, weights),
        Tensor("MobilenetV3/Conv/biases", (4,), f32, np.zeros(4, np.float32)),
        Tensor("MobilenetV3/Conv/Relu6", (1, 8, 8, 4), f32),
    ]
    inputs = (0, 1, 2) if with_bias else (0, 1)
    op = Operator("CONV_2D", inputs, (3,), {"padding": "SAME", "stride_w": 1, "stride_h": 1})
    return serialize(Model(tensors, [op], [0], [3], "float"))


def test_slim_state_refuses_a_conv_without_bias() -> None:
    data = _float_conv(np.ones((4, 3, 3, 3), np.float32), with_bias=False)
    with pytest.raises(TFLiteError, match=r"f.tflite: operator 0 \(CONV_2D, producing "
                                          r"'MobilenetV3/Conv/Relu6'\) has inputs \[0, 1\]"):
        tflite_slim_state(data, "f.tflite")


def test_slim_state_refuses_non_finite_weights_naming_the_tensor() -> None:
    weights = np.ones((4, 3, 3, 3), np.float32)
    weights[2, 1, 1, 0] = np.nan
    with pytest.raises(TFLiteError, match=r"f.tflite: tensor 1 'MobilenetV3/Conv/weights' "
                                          r"holds non-finite"):
        tflite_slim_state(_float_conv(weights), "f.tflite")


def test_slim_state_names_a_filter_without_quantization() -> None:
    with pytest.raises(TFLiteError, match=r"f.tflite: tensor 1 'MobilenetV3/Conv/weights' "
                                          r"\(uint8\) has no quantization"):
        tflite_slim_state(_float_conv(np.ones((4, 3, 3, 3), np.uint8)), "f.tflite")


def test_tflite_error_is_a_weights_error() -> None:
    assert issubclass(TFLiteError, WeightsError) and issubclass(TFLiteError, ValueError)


# seeded mini-fuzz ----------------------------------------------------------------------------


def _structure_positions(data: bytes) -> np.ndarray:
    """The bytes outside constant data: where a mutation reaches offsets, lengths and fields."""
    model = tflite.Model.GetRootAs(data, 0)
    inside = np.zeros(len(data), bool)
    for i in range(model.BuffersLength()):
        tab = model.Buffers(i)._tab
        if tab.Offset(4):
            start = tab.Vector(tab.Offset(4))
            inside[start : start + tab.VectorLen(tab.Offset(4))] = True
    return np.flatnonzero(~inside)


def _mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """Bit flips, random bytes, 32-bit fields set huge (in the structure), and truncations."""
    rng = np.random.default_rng(seed)
    positions = _structure_positions(data)
    huge = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x40000000, 0xFFFF)
    for trial in range(count):
        buf = bytearray(data)
        kind = trial % 4
        at = int(rng.choice(positions))
        if kind == 0:
            buf[at] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            buf[at] = int(rng.integers(256))
        elif kind == 2:
            at -= at % 4
            buf[at : at + 4] = int(rng.choice(huge)).to_bytes(4, "little")
        else:
            del buf[int(rng.integers(0, len(buf))) :]
        yield bytes(buf)


def _outcome(action: Callable[[], object], source: str, foreign: list[str]) -> str:
    """'loaded' or 'error' (a project error naming the file, not an internal text); anything
    else is recorded in `foreign`."""
    try:
        action()
    except WeightsError as exc:
        message = str(exc)
        if source not in message or INTERNAL_TEXT.search(message):
            foreign.append(f"unclear: {message[:300]}")
            return "unclear"
        return "error"
    except Exception as exc:  # noqa: BLE001 - the finding this test looks for
        foreign.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        return "foreign"
    return "loaded"


def test_fuzz_official_small_parse_map_and_check(small: bytes) -> None:
    """200 mutations of the official file through the reader, the float weights mapping and
    the int8 graph checks (the kernels' builds and the forward pass: the slow test below)."""
    foreign: list[str] = []
    counts: Counter[str] = Counter()
    for data in _mutations(small, 200, seed=14):

        def trial(data: bytes = data) -> None:
            model = TFLiteModel.from_bytes(data, source="small.tflite")
            tflite_slim_state(data, "small.tflite")
            check_model(model)

        counts[_outcome(trial, "small.tflite", foreign)] += 1
    assert not foreign, f"{counts}: {foreign[:5]}"
    assert counts["error"] > 60 and counts["loaded"] > 0, counts


def test_fuzz_tiny_model_end_to_end(tmp_path: Path) -> None:
    """300 mutations of the tiny quantized file through create_model (int8 and float) and a
    forward pass: every outcome a load or a project error."""
    data, path = serialize(_tiny()), tmp_path / "tiny.tflite"
    foreign: list[str] = []
    counts: Counter[str] = Counter()
    for mutated in _mutations(data, 300, seed=9):
        path.write_bytes(mutated)

        def trial() -> None:
            create_model(weights=path, int8=True)(torch.zeros(1, 3, 8, 8))

        counts[_outcome(trial, "tiny.tflite", foreign)] += 1
        counts["float " + _outcome(lambda: create_model(weights=path), "tiny", foreign)] += 1
    assert not foreign, f"{counts}: {foreign[:5]}"
    assert counts["error"] > 50 and counts["loaded"] > 0, counts


@pytest.mark.slow
def test_fuzz_official_small_end_to_end(small: bytes, tmp_path: Path) -> None:
    """Mutations of the official file that pass the reader and the graph checks, run whole:
    create_model(int8=True) and a 1x224x224x3 forward pass, and the float create_model."""
    path = tmp_path / "small.tflite"
    foreign: list[str] = []
    counts: Counter[str] = Counter()
    x = torch.zeros(1, 3, 224, 224)
    for data in _mutations(small, 400, seed=15):
        try:
            check_model(TFLiteModel.from_bytes(data, source="small.tflite"))
        except TFLiteError:
            continue
        path.write_bytes(data)
        counts[_outcome(lambda: create_model(weights=path, int8=True)(x), str(path), foreign)] += 1
        counts["float " + _outcome(lambda: create_model(weights=path), str(path), foreign)] += 1
        if sum(counts.values()) >= 16:
            break
    assert not foreign, f"{counts}: {foreign[:5]}"
    assert counts, "no mutation passed the checks"

