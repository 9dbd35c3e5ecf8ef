"""`--device` of export and quantize: PyTorch's side of the check after writing a file runs
there (the file's engine stays on the CPU); a device the machine lacks is one line, exit 2."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.core.init import randomize
from mobilenetv3.data.preprocess import SLIM_EVAL
from mobilenetv3.export.check import example_input, reference_device, reference_output
from mobilenetv3.weights.safetensors_io import save_safetensors

ABSENT_GPU = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


@pytest.mark.usefixtures("one_thread")
def test_reference_runs_on_the_device_asked_for() -> None:
    """A copy of the model runs there; the model given stays on the CPU."""
    model = randomize(mobilenetv3.create_model("v3_small_0.35"))
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].device))
    x = example_input((32, 32))
    with reference_device("meta"), pytest.raises(NotImplementedError, match="meta"):
        reference_output(model, x, softmax=False)  # a meta tensor has no values to return
    cpu = reference_output(model, x, softmax=False)  # outside the block: the CPU again
    assert [d.type for d in seen] == ["meta", "cpu"]
    assert next(model.parameters()).device.type == "cpu" and cpu.std() > 0.1


@pytest.mark.usefixtures("one_thread")
def test_export_checks_on_the_cpu_when_asked(tmp_path: Path, capsys) -> None:
    out = tmp_path / "small.onnx"
    assert main(["export", "--model", "v3_small_0.35", "--format", "onnx", "--output", str(out),
                 "--image-size", "64", "64", "--device", "cpu"]) == 0  # fmt: skip
    diff = float(re.search(r"max abs diff ([0-9.e+-]+)", capsys.readouterr().out).group(1))
    assert diff < 1e-4 and out.is_file()


@pytest.mark.usefixtures("one_thread")
def test_quantize_checks_on_the_cpu_when_asked(tmp_path: Path, shared: Path, capsys) -> None:
    model = randomize(mobilenetv3.create_model("v3_small_0.35"))
    small = replace(SLIM_EVAL, image_size=(64, 64)).to_dict()  # calibrates in seconds
    weights = save_safetensors(model, tmp_path / "small.safetensors", {"preprocess": small})
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))[:16]:
        (photos / photo.name).symlink_to(photo)
    out = tmp_path / "q.tflite"
    assert main(["quantize", "--weights", str(weights), "--calibration", str(photos),
                 "--format", "tflite", "--method", "minmax", "--output", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert f"-> {out}" in capsys.readouterr().out and out.stat().st_size > 100_000


@pytest.mark.parametrize("command", [
    ["export", "--model", "v3_small_0.35", "--format", "onnx", "--output", "{tmp}/m.onnx"],
    ["quantize", "--model", "v3_small_0.35", "--weights", "{tmp}/w.safetensors", "--calibration",
     "{tmp}", "--format", "onnx", "--output", "{tmp}/q.onnx"],
])  # fmt: skip
def test_absent_gpu_is_one_line_exit_2(command: list[str], tmp_path: Path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command] + ["--device", ABSENT_GPU]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mobilenetv3 {command[0]}: error: --device {ABSENT_GPU}: this machine")
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
