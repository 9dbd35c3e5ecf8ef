"""The runner interface over every engine, on a tiny model; pt2 round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.export import example_input, export_pt2, export_runner, randomize
from mobilenetv3.runtime.engines import KINDS, make_runner

SIZE = (64, 64)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return randomize(mobilenetv3.create_model("v3_small_0.35"), seed=3)


@pytest.fixture(scope="module")
def expected(tiny: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    x = example_input(SIZE, 2, seed=9)
    with torch.no_grad():
        return x.numpy(), tiny(x).numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_runner_matches_eager(kind: str, tiny: torch.nn.Module, expected: tuple) -> None:
    x, logits = expected
    threads = torch.get_num_threads()
    runner = export_runner(kind, tiny, threads=1, batch_size=2, image_size=SIZE)
    assert runner.kind == kind and runner.output == "logits" and runner.threads == 1
    out = runner(x)
    assert out.dtype == np.float32 and out.shape == (2, 1001)
    np.testing.assert_allclose(out, logits, atol=1e-4)
    if kind != "torch_compile":  # batch 1 after batch 2: the runner adapts
        np.testing.assert_allclose(runner(x[:1]), logits[:1], atol=1e-4)
    torch.set_num_threads(threads)


def test_runner_takes_files(tmp_path: Path, tiny: torch.nn.Module, expected: tuple) -> None:
    from mobilenetv3.export import export

    x, logits = expected
    for fmt, kind in (("onnx", "onnxruntime"), ("tflite", "litert")):
        path = export(tiny, tmp_path / f"m.{fmt}", fmt, image_size=SIZE, dynamic_batch=True,
                      check=False).path  # fmt: skip
        np.testing.assert_allclose(make_runner(kind, path, threads=1)(x), logits, atol=1e-4)


def test_unknown_kind(tiny: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        make_runner("tensorrt", tiny)


def test_official_uint8_tflite(shared: Path) -> None:
    """The official files run through the same interface (uint8 in, probabilities out) and
    agree with our float export of their own weights on real photos."""
    from mobilenetv3.data.preprocess import load_image, preprocess_image

    official = shared / "pretrained" / "v3-small_224_1.0_uint8.tflite"
    photos = sorted((shared / "images" / "imagenet-samples").iterdir())[:4]
    x = torch.stack([preprocess_image(load_image(p)) for p in photos]).numpy()
    runner = make_runner("litert", official, threads=1)
    assert runner.output == "probabilities"
    probs = runner(x)  # the file fixes batch 1: the runner loops
    assert probs.shape == (4, 1001) and np.all(probs.sum(-1) > 0.5)
    ours = export_runner("litert", mobilenetv3.create_model(weights=official, dequantize=True),
                         threads=1)  # fmt: skip
    assert (ours(x).argmax(-1) == probs.argmax(-1)).sum() >= 3


def test_pt2_round_trip(tmp_path: Path, tiny: torch.nn.Module) -> None:
    result = export_pt2(tiny, tmp_path / "m.pt2", image_size=SIZE, dynamic_batch=True)
    assert result.max_abs_diff <= 1e-5
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = example_input(SIZE, 5, seed=2)
    with torch.no_grad():
        np.testing.assert_allclose(program(x).numpy(), tiny(x).numpy(), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt2"]


@pytest.mark.parametrize(("dtype", "zero_point"), [(np.uint8, 128), (np.int8, -1)])
def test_input_quantization_rounds_like_litert(dtype: type, zero_point: int) -> None:
    """Float input for an 8-bit file is rounded as LiteRT's own QUANTIZE rounds it in the
    runner's (default) kernels: halves to even, then the zero point added; rounding after
    adding an odd zero point moved every tie by one code."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    from tflite_helpers import quantized, tensor, tflite_bytes

    from mobilenetv3.runtime.engines import _quantize
    from mobilenetv3.tflite.model import Operator

    scale = 0.5
    values = np.array([k * 0.5 + 0.25 for k in range(-300, 300)], np.float32)  # codes k + .5
    n = values.size
    data = tflite_bytes([tensor("x", (1, n), np.float32),
                         tensor("q", (1, n), dtype, **quantized(scale, zero_point))],
                        [Operator("QUANTIZE", (0,), (1,))], [0], [1])  # fmt: skip
    it = interpreter.Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], values[None])
    it.invoke()
    litert = it.get_tensor(it.get_output_details()[0]["index"])[0]
    ours = _quantize(values, {"dtype": dtype, "quantization": (scale, zero_point)})
    np.testing.assert_array_equal(ours, litert)


def test_engines_run_files_not_modules(tiny: torch.nn.Module) -> None:
    """Engines never export: a module for a file engine is refused, pointing at the exporter."""
    for kind in ("onnxruntime", "litert"):
        with pytest.raises(ValueError, match="export_runner"):
            make_runner(kind, tiny)


def test_pt2_runs_in_the_torch_engines(tmp_path: Path, tiny: torch.nn.Module,
                                       expected: tuple) -> None:  # fmt: skip
    """A .pt2 path goes to the one engine registry's program runner, not to create_model."""
    x, logits = expected
    path = export_pt2(tiny, tmp_path / "m.pt2", image_size=SIZE, dynamic_batch=True).path
    runner = make_runner("torch", path, threads=1)
    np.testing.assert_allclose(runner(x), logits, atol=1e-4)
