"""The int8 reference path against LiteRT's reference kernels (BUILTIN_REF), bit for bit."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tflite_helpers import quantized, tensor, tflite_bytes

from mobilenetv3.tflite.interpreter import (
    QuantizedTFLiteModule,
    multiply_by_quantized_multiplier,
    quantize,
    quantize_multiplier,
)
from mobilenetv3.tflite.interpreter.fixedpoint import requantizer
from mobilenetv3.tflite.model import Operator, Tensor
from mobilenetv3.tflite.reader import TFLiteModel

FILES = ["v3-small_224_1.0_uint8.tflite", "v3-large-minimalistic_224_1.0_uint8.tflite"]
N_IMAGES = 200
N_INTERMEDIATE = 8  # images whose every tensor is compared
BATCH = 25


def _litert():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"ai_edge_litert cannot be imported ({exc}); pip install ai-edge-litert")
    return Interpreter, OpResolverType


# pure-integer statements of the gemmlowp primitives (C semantics), for the fast paths -------


def _srdhm_literal(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return -((-v) // (1 << 31)) if v < 0 else v // (1 << 31)  # C++ truncating division


def _rdbpot_literal(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def _mbqm_literal(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbpot_literal(_srdhm_literal(x * (1 << left), m), right)


def test_quantize_multiplier_known_values() -> None:
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (1610612736, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1e-12) == (0, 0)  # shift < -31 flushes to zero
    m, s = quantize_multiplier(0.0078740157)
    assert (1 << 30) <= m < (1 << 31) and s == -6
    assert abs(m * 2.0 ** (s - 31) - 0.0078740157) < 2.0**-37


def test_multiply_by_quantized_multiplier_matches_literal_form() -> None:
    rnd = random.Random(0)
    xs = [rnd.randint(-(2**24), 2**24) for _ in range(3000)] + list(range(-600, 600))
    for m, s in [(1 << 30, -1), (1 << 30, -2), (1500000001, -9), (2**31 - 1, -1), (1234567890, 3),
                 (1073741825, 0), (1717986918, -20)]:  # fmt: skip
        fast = multiply_by_quantized_multiplier(torch.tensor(xs), m, s).tolist()
        tensor_form = multiply_by_quantized_multiplier(
            torch.tensor(xs), torch.tensor(m), torch.tensor(s)
        ).tolist()
        literal = [_mbqm_literal(x, m, s) for x in xs]
        assert fast == literal, (m, s)
        assert tensor_form == literal, (m, s)


def test_requantize_table_matches_arithmetic() -> None:
    """The table form of conv requantization equals the literal int64 arithmetic."""
    rnd = random.Random(1)
    for m, s, zp, lo in [(1500000001, -9, 99, 0), (1100000000, -11, 0, 0), (2**31 - 1, -6, 130, 7)]:
        bias = torch.tensor([rnd.randint(-5000, 5000) for _ in range(8)])
        mult, shift = torch.full((8,), m), torch.full((8,), s)
        table = requantizer(mult, shift, bias, zp, lo, 255, 1 << 20)
        assert table.__name__ == "lookup"
        seeded = torch.Generator().manual_seed(m)
        acc = torch.randint(-(1 << 20), 1 << 20, (3, 5, 7, 8), generator=seeded).float()
        acc[0, 0, 0] = torch.arange(8) - 4.0
        expected = [
            min(255, max(lo, _mbqm_literal(int(a) + int(bias[c]), m, s) + zp))
            for a, c in zip(
                acc.flatten().tolist(), list(range(8)) * (acc.numel() // 8), strict=True
            )
        ]
        assert table(acc).flatten().tolist() == expected


def test_quantize_rounds_like_litert() -> None:
    """LiteRT's QUANTIZE rounds halves away from zero (TfLiteRound), not to even."""
    interpreter, resolver = _litert()
    values = np.array([k * 0.5 + 0.25 for k in range(-260, 260)], np.float32)  # /0.5 -> ties
    values = np.concatenate([values, np.linspace(-1, 1, 301, dtype=np.float32)])
    n = values.size
    for scale, zp in [(0.5, 128), (1 / 127, 128)]:
        data = tflite_bytes(
            [tensor("x", (1, n), np.float32),
             tensor("q", (1, n), np.uint8, **quantized(scale, zp))],  # fmt: skip
            [Operator("QUANTIZE", (0,), (1,))],
            [0],
            [1],
        )
        it = interpreter(model_content=data, experimental_op_resolver_type=resolver.BUILTIN_REF)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], values[None])
        it.invoke()
        ref = it.get_tensor(it.get_output_details()[0]["index"])[0]
        ours = quantize(values, scale, zp, np.uint8)
        np.testing.assert_array_equal(ours, ref)
    half_even = (torch.round(torch.from_numpy(values[:520]) / 0.5) + 128).clamp(0, 255)
    assert (
        half_even.numpy().astype(np.uint8)
        != quantize(values[:520], 0.5, 128, np.uint8)
    ).any()


# the shared photos ------------------------------------------------------------------------


def central_crop_resize(path: Path, size: int = 224, fraction: float = 0.875) -> np.ndarray:
    """tf.image.central_crop (static shape) then Pillow BILINEAR to size x size, uint8 RGB."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    top = int((h - h * fraction) / 2)
    left = int((w - w * fraction) / 2)
    box = (left, top, w - left, h - top)
    return np.asarray(image.crop(box).resize((size, size), Image.BILINEAR), dtype=np.uint8)


@pytest.fixture(scope="module")
def photos(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    """N_IMAGES photos spread over all classes (every 5th) and their slim labels (1..1000)."""
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))
    assert len(files) == 1000
    step = len(files) // N_IMAGES
    chosen = list(range(0, len(files), step))[:N_IMAGES]
    pixels = np.stack([central_crop_resize(files[i]) for i in chosen])
    labels = np.array(chosen) + 1
    return pixels, labels


def _run_litert(path: Path, codes: np.ndarray, names: list[str], result: dict) -> None:
    """Reference kernels, one image at a time (the file's RESHAPE fixes the batch to 1)."""
    interpreter, resolver = _litert()
    it = interpreter(
        model_path=str(path),
        experimental_op_resolver_type=resolver.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    inp = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]
    outputs, tensors = [], []
    for i in range(len(codes)):
        it.set_tensor(inp, codes[i : i + 1])
        it.invoke()
        outputs.append(it.get_tensor(out)[0].copy())
        if i < N_INTERMEDIATE:
            tensors.append({n: it.get_tensor(index[n])[0].copy() for n in names})
    result["outputs"] = np.stack(outputs)
    result["tensors"] = tensors


@pytest.mark.slow
@pytest.mark.parametrize("filename", FILES)
def test_bit_exact_with_litert_reference(
    shared: Path, photos: tuple[np.ndarray, np.ndarray], filename: str
) -> None:
    _litert()
    path = shared / "pretrained" / filename
    module = QuantizedTFLiteModule(TFLiteModel.from_file(path))
    pixels, labels = photos
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
    codes = module.quantize_input(x)  # the same uint8 codes go to both engines
    names = [module.model.tensors[op.outputs[0]].name for op in module.model.operators]

    litert: dict = {}
    worker = threading.Thread(target=_run_litert, args=(path, codes.numpy(), names, litert))
    worker.start()  # LiteRT releases the GIL in invoke(): both engines run at once
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours, first_batch = [], {}
        for start in range(0, len(codes), BATCH):
            values = module.run(codes[start : start + BATCH])
            ours.append(values[module.output_name].numpy())
            if start == 0:
                first_batch = {n: values[n][:N_INTERMEDIATE].numpy() for n in names}
    finally:
        torch.set_num_threads(threads)
        worker.join()
    ours_out = np.concatenate(ours)
    ref_out = litert["outputs"]

    # every tensor of the first images, in operator order
    first_diff = None
    for i, ref_tensors in enumerate(litert["tensors"]):
        for name in names:
            a, b = first_batch[name][i], ref_tensors[name]
            if a.shape != b.shape or not np.array_equal(a, b):
                n_diff = int((a != b).sum()) if a.shape == b.shape else -1
                first_diff = f"image {i}: first differing tensor {name!r} ({n_diff} of {b.size})"
                break
        if first_diff:
            break

    equal = float((ours_out == ref_out).mean())
    top1_same = float((ours_out.argmax(1) == ref_out.argmax(1)).mean())
    accuracy = float((ours_out.argmax(1) == labels).mean())
    summary = (
        f"{filename}: {len(codes)} photos, output codes equal {equal:.4%}, top-1 identical "
        f"{top1_same:.2%}, top-1 accuracy {accuracy:.1%}; {first_diff or 'all tensors equal'}"
    )
    print(summary)
    assert first_diff is None, summary
    assert equal >= 0.999, summary
    assert top1_same >= 0.995, summary
    assert accuracy > 0.6, summary


def test_forward_returns_probabilities(shared: Path) -> None:
    module = QuantizedTFLiteModule.from_file(shared / "pretrained" / FILES[0])
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    probs = module(x)
    assert probs.shape == (2, 1001) and probs.dtype == torch.float32
    assert ((probs >= 0) & (probs <= 1)).all() and (probs.sum(1) <= 1.1).all()
    every = module.forward_all(x)
    assert every["input"].dtype == torch.uint8 and every["input"].shape == (2, 224, 224, 3)
    hs = every["MobilenetV3/expanded_conv_3/expand/hard_swish/mul_1"]
    assert hs.dtype == torch.uint8 and hs.shape == (2, 28, 28, 96)
    assert torch.equal(module.dequantize_output(every[module.output_name]), probs)
    with pytest.raises(ValueError, match="file wants"):
        module.run(torch.zeros(1, 160, 160, 3, dtype=torch.uint8))


# single operators on synthetic files (the shared files use only some of them) ---------------


_q = quantized


def _op_cases() -> dict[str, tuple[list[Tensor], list[Operator], tuple[int, ...]]]:
    rng = np.random.default_rng(0)
    u8, s = np.uint8, (1, 6, 6, 4)
    x = tensor("x", s, u8, **_q(0.05, 120))
    pool = {"stride_w": 2, "stride_h": 2, "filter_width": 3, "filter_height": 3}
    axes = tensor("axes", (2,), np.int32, np.array([1, 2], np.int32))
    w = rng.integers(0, 256, (5, 24)).astype(u8)
    bias = rng.integers(-3000, 3000, 5).astype(np.int32)
    other = rng.integers(0, 256, s).astype(u8)
    pads = np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)
    return {
        "RELU": ([x, tensor("y", s, u8, **_q(0.03, 3))], [Operator("RELU", (0,), (1,))], s),
        "RELU6": ([x, tensor("y", s, u8, **_q(0.03, 3))], [Operator("RELU6", (0,), (1,))], s),
        "LOGISTIC": (
            [x, tensor("y", s, u8, **_q(1 / 256, 0))],
            [Operator("LOGISTIC", (0,), (1,))],
            s,
        ),
        "MAX_POOL_2D": (
            [x, tensor("y", (1, 3, 3, 4), u8, **_q(0.05, 120))],
            [Operator("MAX_POOL_2D", (0,), (1,), {"padding": "SAME", **pool})],
            s,
        ),
        "AVERAGE_POOL_2D": (
            [x, tensor("y", (1, 3, 3, 4), u8, **_q(0.05, 120))],
            [Operator("AVERAGE_POOL_2D", (0,), (1,), {"padding": "SAME", **pool})],
            s,
        ),
        "MEAN": (
            [x, axes, tensor("y", (1, 1, 1, 4), u8, **_q(0.04, 100))],
            [Operator("MEAN", (0, 1), (2,), {"keep_dims": True})],
            s,
        ),
        "PAD": (
            [
                x,
                tensor("p", (4, 2), np.int32, pads),
                tensor("y", (1, 9, 9, 4), u8, **_q(0.05, 120)),
            ],
            [Operator("PAD", (0, 1), (2,))],
            s,
        ),
        "CONCATENATION": (
            [
                x,
                tensor("c", s, u8, other, **_q(0.02, 10)),
                tensor("y", (1, 6, 6, 8), u8, **_q(0.06, 110)),
            ],
            [Operator("CONCATENATION", (0, 1), (2,), {"axis": 3})],
            s,
        ),
        "FULLY_CONNECTED": (
            [
                tensor("x", (2, 24), u8, **_q(0.05, 120)),
                tensor("w", (5, 24), u8, w, **_q(0.01, 130)),
                tensor("b", (5,), np.int32, bias, **_q(0.0005, 0)),
                tensor("y", (2, 5), u8, **_q(0.2, 128)),
            ],
            [Operator("FULLY_CONNECTED", (0, 1, 2), (3,), {"fused_activation_function": "RELU"})],
            (2, 24),
        ),
        "QUANTIZE (requantize)": (
            [x, tensor("y", s, u8, **_q(0.07, 100))],
            [Operator("QUANTIZE", (0,), (1,))],
            s,
        ),
    }


@pytest.mark.parametrize("case", list(_op_cases()))
def test_single_operator_matches_litert(case: str) -> None:
    interpreter, resolver = _litert()
    tensors, ops, shape = _op_cases()[case]
    out = ops[-1].outputs[0]
    data = tflite_bytes(tensors, ops, [0], [out])
    module = QuantizedTFLiteModule(TFLiteModel.from_bytes(data, source=case))
    it = interpreter(model_content=data, experimental_op_resolver_type=resolver.BUILTIN_REF)
    it.allocate_tensors()
    codes = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    it.set_tensor(it.get_input_details()[0]["index"], codes)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    ours = module.run(torch.from_numpy(codes))[module.output_name].numpy()
    np.testing.assert_array_equal(ours, ref)
