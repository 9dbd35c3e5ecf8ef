"""The commands a user runs, each checked on the values it prints or writes: help, summary,
export, convert, benchmark, evaluate's engines and limit, and the error paths."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.core.init import randomize
from mobilenetv3.data.datasets import list_samples

COMMANDS = ["benchmark", "convert", "download", "evaluate", "export", "predict", "quantize",
            "summary", "train"]  # fmt: skip
SMALL = "v3-small_224_1.0_uint8.tflite"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", listed, re.M), command
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert f"usage: mobilenetv3 {command}" in capsys.readouterr().out


def test_summary_prints_slims_figures(shared, capsys):
    figures = json.loads((shared / "reference" / "figures.json").read_text())
    names = ["v3_large_1.0", "v3_small_1.0", "v2_1.0"]
    assert main(["summary", "--models", *names]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in names:
        params, macs = rows[name].split()[1:3]
        assert int(params.replace(",", "")) == figures[name]["trainable_params"], name
        assert int(macs.replace(",", "")) == figures[name]["macs_224"], name
    assert "README differs" not in rows["v3_large_1.0"]  # 217 M MACs, 5.4 M params
    assert "README differs" in rows["v3_small_1.0"]  # 66 M in the README, 56.5 M in the code


def test_export_command_writes_a_file_that_reproduces_the_model(tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "small.onnx"
    assert main(["export", "--model", "v3_small_0.35", "--format", "onnx", "--output", str(out),
                 "--image-size", "64", "64"]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "random weights" in printed.err
    diff = float(re.search(r"max abs diff ([0-9.e+-]+)", printed.out).group(1))
    assert diff < 1e-4
    model = randomize(mobilenetv3.create_model("v3_small_0.35"))  # what the command exported
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.1
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["small.onnx"]


def test_convert_command_gives_slims_logits(shared, tmp_path, capsys):
    folder = shared / "reference" / "slim" / "v3_large_1.0"
    out = tmp_path / "large.safetensors"
    assert main(["convert", str(folder / "model.ckpt"), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    _assert_slim_logits(mobilenetv3.create_model(weights=out), folder, "plain")
    assert main(["convert", str(folder), str(tmp_path / "large.bin")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["large.safetensors"]


def _assert_slim_logits(model, folder, group: str) -> None:
    reference = np.load(folder / "reference.npz")
    x = torch.from_numpy(reference["input_224x224"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_allclose(logits, reference[f"{group}_224x224/Logits"], atol=1e-4)


def test_create_model_reads_a_release_tgz(shared, tmp_path):
    """The README's first example: a release tarball, read in place. Built here from the slim
    fixture laid out as the release is (<name>/ema/model-N.* and <name>/pristine/model-N.*)."""
    folder = shared / "reference" / "slim" / "v3_small_1.0"
    archive = tmp_path / "v3-small_224_1.0_float.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for part in ("ema", "pristine"):
            for suffix in ("index", "data-00000-of-00001"):
                tar.add(folder / f"model.ckpt.{suffix}",
                        f"v3-small_224_1.0_float/{part}/model-388500.{suffix}")  # fmt: skip
    model = mobilenetv3.create_model(weights=archive)
    assert model.variant.name == "v3_small_1.0"
    _assert_slim_logits(model, folder, "ema")  # the release's EMA weights by default


def test_benchmark_command_times_each_engine(capsys):
    assert main(["benchmark", "--model", "v3_small_0.35", "--engines", "torch", "onnxruntime",
                 "--image-size", "64", "64", "--iters", "3", "--warmup", "1"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    for engine in ("torch", "onnxruntime"):
        row = next(line for line in table.splitlines() if f" {engine} " in f" {line} ")
        numbers = [float(n) for n in re.findall(r"\d+\.\d+", row)]
        assert numbers and all(n > 0 for n in numbers), row


@pytest.fixture(scope="module")
def photos(shared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for path, _ in list_samples(shared / "images" / "imagenet-samples")[:12]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.mark.parametrize("engine", ["litert", "torch_compile"])
def test_evaluate_engines_and_limit_agree_with_torch(engine, shared, photos, tmp_path):
    """The same photos through another engine give torch's predictions; --limit takes the
    first N in the folder's sorted order."""
    weights = str(shared / "pretrained" / SMALL)
    results = {}
    # torch_compile runs float graphs: both runs then load the file's weights as float
    as_float = ["--dequantize"] if engine == "torch_compile" else []
    for name in ("torch", engine):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", str(photos), "--weights", weights, "--engine", name,
                     "--limit", "5", "--workers", "1", "--threads", "1",
                     "--json", str(out), *as_float]) == 0  # fmt: skip
        results[name] = json.loads(out.read_text())
    expected = [label for _, label in list_samples(photos)[:5]]
    assert results[engine]["targets"] == results["torch"]["targets"] == expected
    assert results[engine]["engine"] == engine and results[engine]["images"] == 5
    if engine == "torch_compile":  # the same float graph: the same answers
        assert results[engine]["predictions"] == results["torch"]["predictions"]
    else:  # LiteRT runs the uint8 file as it is: the file's own answers
        from mobilenetv3.data.preprocess import load_image, preprocess_image
        from mobilenetv3.runtime.engines import make_runner

        x = torch.stack([preprocess_image(load_image(p)) for p, _ in list_samples(photos)[:5]])
        official = make_runner("litert", weights, threads=1)(x.numpy()).argmax(1)
        assert results[engine]["predictions"] == official.tolist()


def test_predict_include_background_and_topk(shared, capsys):
    """A float model (the slim fixture checkpoint): its 1001 softmax probabilities, printed to
    4 decimals, sum to 1 within their rounding (1001 x 0.5e-4)."""
    photo = shared / "images" / "photos" / "chelsea.png"
    weights = str(shared / "reference" / "slim" / "v3_small_1.0" / "model.ckpt")
    assert main(["predict", str(photo), "--weights", weights, "--json", "--topk", "1001",
                 "--include-background", "--engine", "torch"]) == 0  # fmt: skip
    entries = json.loads(capsys.readouterr().out)["results"][0]["top_k"]
    assert sorted(e["index"] for e in entries) == list(range(1001))
    assert sum(e["probability"] for e in entries) == pytest.approx(1.0, abs=1001 * 0.5e-4)
    assert [e["name"] for e in entries if e["index"] == 0] == ["background"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "{tmp}/missing.jpg"], "missing.jpg: no such image"),
        (["predict", "{tmp}"], "no images found"),
        (["quantize", "--calibration", "{tmp}", "--format", "onnx", "--output", "{tmp}/q.onnx",
          "--num-images", "0"], "--num-images: expected a whole number >= 1, got 0"),
        (["train", "--data", "{tmp}", "--output", "{tmp}/run", "--model", "v3_small_0.35",
          "--set", "lr0.1"], "--set expects KEY=VALUE, got 'lr0.1'"),
    ],
)
def test_command_errors_are_one_clear_line(args, message, shared, tmp_path, capsys):
    weights = ["--weights", str(shared / "pretrained" / SMALL)] if args[0] != "train" else []
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + weights
    try:
        code = main(argv)
    except SystemExit as stop:  # a bad flag value, refused by the argument parser
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mobilenetv3 {args[0]}: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
