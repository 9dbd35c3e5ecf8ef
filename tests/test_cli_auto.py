"""`--engine auto` (the default) and `--device`: the fastest installed engine for the file and
its precision, never a float engine that disagrees with torch; a GPU only where one is."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3 import export
from mobilenetv3.cli import main
from mobilenetv3.commands.convert import run_convert
from mobilenetv3.runtime import auto

SMALL = "v3-small_224_1.0_uint8.tflite"


@pytest.fixture(scope="module")
def float_small(shared, tmp_path_factory):
    """Float weights (the official 8-bit file's, dequantized) in a .safetensors."""
    path = tmp_path_factory.mktemp("float") / "small.safetensors"
    return run_convert(shared / "pretrained" / SMALL, path, dequantize=True)


@pytest.fixture
def photos(shared, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted((shared / "images" / "imagenet-samples").iterdir())[:12]:
        (data / path.name).symlink_to(path)
    return data


def _evaluate(data, weights, tmp_path, *extra: str) -> dict:
    out = tmp_path / "result.json"
    assert main(["evaluate", str(data), "--weights", str(weights), "--batch-size", "4",
                 "--workers", "1", "--json", str(out), *extra]) == 0  # fmt: skip
    return json.loads(out.read_text())


def test_auto_runs_float_weights_in_onnx_runtime_with_torch_predictions(float_small, photos,
                                                                        tmp_path):  # fmt: skip
    assert auto.float_candidates(auto.resolve_device("cpu"))[:2] == ("onnxruntime", "litert")
    chosen = _evaluate(photos, float_small, tmp_path)
    assert chosen["engine"] == "onnxruntime" and chosen["engine_chosen_by"] == "auto"
    torch_run = _evaluate(photos, float_small, tmp_path, "--engine", "torch")
    assert torch_run["engine"] == "torch"
    assert chosen["predictions"] == torch_run["predictions"]


def test_auto_runs_an_8bit_tflite_in_litert(shared, photos, tmp_path):
    result = _evaluate(photos, shared / "pretrained" / SMALL, tmp_path)
    assert result["engine"] == "litert"


def test_auto_skips_an_engine_that_disagrees_with_torch(float_small, photos, tmp_path,
                                                        monkeypatch, capsys):  # fmt: skip
    real = export.export_runner

    def off_by_a_little(engine, model, **options):
        runner = real(engine, model, **options)
        return _Shifted(runner) if engine == "onnxruntime" else runner

    monkeypatch.setattr(export, "export_runner", off_by_a_little)
    result = _evaluate(photos, float_small, tmp_path)
    assert result["engine"] == "litert"
    assert "auto: onnxruntime differs from torch by 1.0e-03" in capsys.readouterr().err


def test_device_must_exist(float_small, capsys):
    argv = ["predict", "x.jpg", "--weights", str(float_small)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert auto.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="CUDA device"):
        auto.resolve_device("cuda:99")


def test_the_gpu_runner_computes_what_the_model_does(shared):
    """DeviceRunner (torch on --device cuda) checked on the CPU device: the same graph."""
    model = mobilenetv3.create_model(weights=shared / "pretrained" / SMALL, dequantize=True).eval()
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runner = auto.DeviceRunner(model, torch.device("cpu"), (224, 224))
    with torch.inference_mode():
        expected = model(images).numpy()
    assert np.abs(expected).max() > 1  # trained weights: logits of real size
    np.testing.assert_allclose(runner(images.numpy()), expected, atol=1e-4, rtol=0)


class _Shifted:
    """A runner whose outputs are 1e-3 off: what auto must not choose."""

    def __init__(self, runner) -> None:
        self.runner, self.kind, self.output = runner, runner.kind, runner.output

    def __call__(self, x):
        return self.runner(x) + 1e-3


def test_train_runs_on_the_device_asked(shared, tmp_path, capsys):
    from mobilenetv3.train import load_config, train

    data = tmp_path / "data"
    for i, path in enumerate(sorted((shared / "images" / "imagenet-samples").iterdir())[:4]):
        (data / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (data / f"c{i % 2}" / path.name).symlink_to(path)
    config = load_config(model="v3_small_0.35", data=str(data), output=str(tmp_path / "run"),
                         image_size=64, batch_size=4, max_steps=1, device="cpu", log_every=0,
                         plot=False, progress=False)  # fmt: skip
    train(config)
    start = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["device"] == "cpu"
    argv = ["train", "--model", "v3_small_0.35", "--data", str(data), "--output",
            str(tmp_path / "run2"), "--device", "cuda:99"]
    assert main(argv) == 2
    assert "CUDA device" in capsys.readouterr().err


def test_benchmark_runs_torch_on_the_device_asked(capsys):
    argv = ["benchmark", "--model", "v3_small_0.35", "--engine", "torch", "--image-size", "64",
            "--iters", "2", "--warmup", "0", "--threads", "1", "2"]
    assert main([*argv, "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(row[1], row[2]) for row in rows] == [("torch", "1"), ("torch", "2")]
    assert main([*argv, "--device", "cuda:99"]) == 2
    assert "CUDA device" in capsys.readouterr().err
