"""The .tflite reader: official uint8 files, a float file written here, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_helpers import operator_of, tensor, tflite_bytes

from mobilenetv3.tflite.model import Operator
from mobilenetv3.tflite.reader import KNOWN_OPS, TFLiteError, TFLiteModel, check_mobilenet

SMALL = "v3-small_224_1.0_uint8.tflite"
LARGE = "v3-large-minimalistic_224_1.0_uint8.tflite"


@pytest.fixture(scope="module")
def small(shared: Path) -> TFLiteModel:
    return TFLiteModel.from_file(shared / "pretrained" / SMALL)


@pytest.fixture(scope="module")
def large(shared: Path) -> TFLiteModel:
    return TFLiteModel.from_file(shared / "pretrained" / LARGE)


def _float_conv_model(names: tuple[str, str, str, str] | None = None) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    n = names or (
        "input",
        "MobilenetV3/Conv/weights",
        "MobilenetV3/Conv/bias",
        "MobilenetV3/Conv/Relu6",
    )
    data = tflite_bytes(
        [
            tensor(n[0], (1, 6, 6, 2), np.float32),
            tensor(n[1], (4, 3, 3, 2), np.float32, weights),
            tensor(n[2], (4,), np.float32, bias),
            tensor(n[3], (1, 3, 3, 4), np.float32),
        ],
        [
            Operator(
                "CONV_2D",
                (0, 1, 2),
                (3,),
                {
                    "padding": "SAME",
                    "stride_w": 2,
                    "stride_h": 2,
                    "fused_activation_function": "RELU6",
                    "dilation_w_factor": 1,
                    "dilation_h_factor": 1,
                },
            )
        ],
        [0],
        [3],
    )
    return data, weights


# official files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "n_ops", "opset"),
    [
        (
            "small",
            119,
            {
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "HARD_SWISH",
                "AVERAGE_POOL_2D",
                "ADD",
                "MUL",
                "RESHAPE",
                "SOFTMAX",
            },
        ),
        (
            "large",
            62,
            {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "ADD", "RESHAPE", "SOFTMAX"},
        ),
    ],
)
def test_official_structure(fixture: str, n_ops: int, opset: set[str], request) -> None:
    m: TFLiteModel = request.getfixturevalue(fixture)
    assert len(m.operators) == n_ops
    assert {op.opcode for op in m.operators} == opset
    assert check_mobilenet(m) == "MobilenetV3"
    (inp,) = m.inputs
    (out,) = m.outputs
    ti, to = m.tensor(inp), m.tensor(out)
    assert ti.shape == (1, 224, 224, 3) and ti.dtype == np.uint8
    assert ti.quantization.zero_point == 128
    assert ti.quantization.scale == pytest.approx(1 / 127, rel=1e-6)
    assert to.name == "MobilenetV3/Predictions/Softmax" and to.shape == (1, 1001)
    assert to.quantization.scale == 1 / 256 and to.quantization.zero_point == 0
    assert m.by_name[to.name] is to and m.tensor(to.name) is to
    first, last = m.operators[0], m.operators[-1]
    assert first.opcode == "CONV_2D" and first.inputs[0] == inp
    assert first.options["padding"] == "SAME"
    assert (first.options["stride_h"], first.options["stride_w"]) == (2, 2)
    assert (first.options["dilation_h_factor"], first.options["dilation_w_factor"]) == (1, 1)
    assert last.opcode == "SOFTMAX" and last.options["beta"] == 1.0 and last.outputs == (out,)
    for op in m.operators:
        if op.opcode == "DEPTHWISE_CONV_2D":
            assert op.options["depth_multiplier"] == 1
            assert op.options["fused_activation_function"] in {"NONE", "RELU", "RELU6"}
        if op.opcode == "AVERAGE_POOL_2D":
            assert op.options["padding"] == "VALID"
            window = (op.options["filter_height"], op.options["filter_width"])
            assert window == m.tensor(op.inputs[0]).shape[1:3]
        if op.opcode == "RESHAPE":
            assert op.options["new_shape"] == [1, 1001]
            assert m.constant(op.inputs[1]).tolist() == [1, 1001]


def test_slim_scope_names(small: TFLiteModel, large: TFLiteModel) -> None:
    names = set(small.by_name)
    assert "MobilenetV3/expanded_conv_3/expand/Conv2D_Fold_bias" in names
    assert "MobilenetV3/expanded_conv_3/expand/weights_quant/FakeQuantWithMinMaxVars" in names
    assert "MobilenetV3/expanded_conv_3/expand/hard_swish/mul_1" in names
    assert "MobilenetV3/expanded_conv_3/squeeze_excite/Conv/Relu" in names
    assert "MobilenetV3/Logits/Conv2d_1c_1x1/BiasAdd" in names
    assert any(n.startswith("MobilenetV3/expanded_conv_14/") for n in large.by_name)
    assert not any("hard_swish" in n or "squeeze_excite" in n for n in large.by_name)
    with pytest.raises(KeyError, match="similar"):
        small.tensor("MobilenetV3/expanded_conv_3/expand/Nope")


@pytest.mark.parametrize(
    "name",
    [
        "MobilenetV3/Conv/weights_quant/FakeQuantWithMinMaxVars",
        "MobilenetV3/expanded_conv_3/depthwise/weights_quant/FakeQuantWithMinMaxVars",
        "MobilenetV3/expanded_conv_3/depthwise/depthwise_Fold_bias",
        "MobilenetV3/Logits/Conv2d_1c_1x1/Conv2D_bias",
        "MobilenetV3/expanded_conv/squeeze_excite/Conv_1/add/y",
    ],
)
def test_dequantized_matches_raw_bytes(small: TFLiteModel, shared: Path, name: str) -> None:
    """(q - zp) * scale recomputed from the file's bytes with only the schema's offsets."""
    import tflite

    raw = (shared / "pretrained" / SMALL).read_bytes()
    graph = tflite.Model.GetRootAs(raw, 0).Subgraphs(0)
    t = next(
        graph.Tensors(i)
        for i in range(graph.TensorsLength())
        if graph.Tensors(i).Name() == name.encode()
    )
    buf = tflite.Model.GetRootAs(raw, 0).Buffers(t.Buffer())
    # locate the data vector in the file and decode it with numpy alone
    start = buf._tab.Vector(buf._tab.Offset(4))
    dtype = {3: np.uint8, 2: np.int32}[t.Type()]
    count = int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
    q = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    scale = np.float32(t.Quantization().ScaleAsNumpy()[0])
    zp = int(t.Quantization().ZeroPointAsNumpy()[0])
    expected = ((q.astype(np.int64) - zp).astype(np.float32) * scale).reshape(
        small.tensor(name).shape
    )
    got = small.dequantized(name)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(small.constant(name), q.reshape(small.tensor(name).shape))


def test_activation_has_no_constant(small: TFLiteModel) -> None:
    name = "MobilenetV3/Conv/hard_swish/mul_1"
    assert small.constant(name) is None
    with pytest.raises(TFLiteError, match="activation"):
        small.dequantized(name)
    assert operator_of(small, name).opcode == "HARD_SWISH"


def test_known_ops_cover_the_brief() -> None:
    required = {
        "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "HARD_SWISH", "LOGISTIC", "RELU", "RELU6",
        "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE", "PAD",
        "SQUEEZE", "FULLY_CONNECTED", "CONCATENATION", "MAX_POOL_2D",
    }  # fmt: skip
    assert required <= KNOWN_OPS


# a float file written here -------------------------------------------------------------------


def test_float_file_round_trip(tmp_path: Path) -> None:
    data, weights = _float_conv_model()
    path = tmp_path / "float_conv.tflite"
    path.write_bytes(data)
    m = TFLiteModel.from_file(path)
    assert [op.opcode for op in m.operators] == ["CONV_2D"]
    op = m.operators[0]
    assert op.options["padding"] == "SAME"
    assert op.options["fused_activation_function"] == "RELU6"
    assert (op.options["stride_h"], op.options["stride_w"]) == (2, 2)
    assert m.tensor(1).dtype == np.float32 and not m.tensor(1).quantization.is_quantized
    np.testing.assert_array_equal(m.constant("MobilenetV3/Conv/weights"), weights)
    np.testing.assert_array_equal(m.dequantized("MobilenetV3/Conv/weights"), weights)
    assert m.inputs == [0] and m.outputs == [3]
    assert check_mobilenet(m) == "MobilenetV3"


def test_float_file_runs_in_litert() -> None:
    """The writer produces a file LiteRT accepts and computes the same convolution from."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    torch = pytest.importorskip("torch")
    data, weights = _float_conv_model()
    m = TFLiteModel.from_bytes(data)
    it = interpreter.Interpreter(model_content=data)
    it.allocate_tensors()
    x = np.random.default_rng(1).standard_normal((1, 6, 6, 2)).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    xt = torch.nn.functional.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (0, 1, 0, 1))
    w = torch.from_numpy(m.dequantized(1)).permute(0, 3, 1, 2)
    ref = torch.nn.functional.conv2d(xt, w, torch.from_numpy(m.dequantized(2)), stride=2)
    np.testing.assert_allclose(got, ref.clamp(0, 6).permute(0, 2, 3, 1).numpy(), atol=1e-5)


# bad input ---------------------------------------------------------------------------------


def test_truncated_file(shared: Path) -> None:
    raw = (shared / "pretrained" / SMALL).read_bytes()
    for n in (0, 7, 100, len(raw) // 3, len(raw) // 2, len(raw) - 100):
        with pytest.raises(TFLiteError, match="truncated|too short"):
            TFLiteModel.from_bytes(raw[:n], source=f"small[:{n}]")


def test_random_bytes() -> None:
    rng = np.random.default_rng(0)
    for size in (16, 4096):
        with pytest.raises(TFLiteError, match="not a TFLite|truncated"):
            TFLiteModel.from_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def test_wrong_file_identifier(tmp_path: Path) -> None:
    data, _ = _float_conv_model()
    bad = data[:4] + b"TFL2" + data[8:]
    with pytest.raises(TFLiteError, match="file identifier b'TFL2'"):
        TFLiteModel.from_bytes(bad)
    path = tmp_path / "model.tflite"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 60)  # a zip renamed .tflite
    with pytest.raises(TFLiteError, match="not a TFLite FlatBuffer"):
        TFLiteModel.from_file(path)


@pytest.mark.parametrize(("opcode", "custom"), [("LSTM", None), ("CUSTOM", "MyFancyOp")])
def test_unknown_operator(opcode: str, custom: str | None) -> None:
    data = tflite_bytes(
        [
            tensor("a", (1, 4), np.float32),
            tensor("MobilenetV3/odd/out", (1, 4), np.float32),
        ],
        [Operator(opcode, (0,), (1,), custom_code=custom)],
        [0],
        [1],
    )
    expected = "LSTM" if custom is None else r"CUSTOM\(MyFancyOp\)"
    with pytest.raises(TFLiteError, match=rf"operator 0 is {expected}.*'MobilenetV3/odd/out'"):
        TFLiteModel.from_bytes(data, source="odd.tflite")


def test_another_network() -> None:
    data, _ = _float_conv_model(
        ("input_1", "resnet50/conv1/kernel", "resnet50/conv1/bias", "resnet50/conv1/Relu6")
    )
    m = TFLiteModel.from_bytes(data, source="resnet50.tflite")
    with pytest.raises(TFLiteError, match=r"resnet50\.tflite is not a MobileNet.*'resnet50'"):
        check_mobilenet(m)


def test_official_file_survives_read_and_write(shared: Path) -> None:
    """Parser and writer share one model: an official file read and written again runs in
    LiteRT's reference kernels to the same output codes as the original."""
    from mobilenetv3.tflite.writer import serialize

    litert = pytest.importorskip("ai_edge_litert.interpreter")
    original = (shared / "pretrained" / SMALL).read_bytes()
    rewritten = serialize(TFLiteModel.from_bytes(original))
    first, again = TFLiteModel.from_bytes(original), TFLiteModel.from_bytes(rewritten)
    assert [op.opcode for op in again.operators] == [op.opcode for op in first.operators]
    assert [t.name for t in again.tensors] == [t.name for t in first.tensors]
    codes = np.random.default_rng(2).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    outputs = []
    for data in (original, rewritten):
        it = litert.Interpreter(model_content=data,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], codes)
        it.invoke()
        outputs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert outputs[0].max() > 0
    np.testing.assert_array_equal(outputs[1], outputs[0])
