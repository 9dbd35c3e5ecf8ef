"""The CLI as a whole: one spelling and one type per idea, one-line errors with exit 2, help
that shows defaults and imports no torch, outputs checked before any work, Ctrl-C kept."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from mobilenetv3.cli import build_parser, main
from mobilenetv3.commands import _common
from mobilenetv3.commands import evaluate as evaluate_command

SMALL = "v3-small_224_1.0_uint8.tflite"
# earlier spellings, accepted (hidden) for one release: old flag -> (command, new flag's dest)
OLD_SPELLINGS = {
    "--engines": ("benchmark", "engine"),
    "--limit": ("evaluate", "num_images"),
    "--models": ("summary", "model"),
    "--num-workers": ("train", "num_workers"),
}
# counts where 0 has a meaning of its own; every other numeric flag takes only positive values
ZERO_ALLOWED = {"--workers", "--num-workers", "--warmup", "--seed", "--checkpoint-every",
                "--min-score"}
CHECKED_TYPES = (_common.positive_int, _common.nonnegative_int, _common.positive_float,
                 _common.probability)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser, *, hidden: bool):
    for action in parser._actions:
        if action.help == argparse.SUPPRESS and not hidden:
            continue
        for flag in action.option_strings:
            yield flag, action


def test_each_idea_has_one_spelling_and_one_type():
    seen: dict[str, tuple] = {}
    for command, parser in _subparsers().items():
        for flag, action in _options(parser, hidden=False):
            assert flag not in OLD_SPELLINGS, f"{command} shows the old spelling {flag}"
            assert action.type not in (int, float), f"{command} {flag}: unchecked number"
            kind = (action.type or str, type(action))
            assert seen.setdefault(flag, kind) == kind, f"{flag} differs in {command}"
    assert {"--engine", "--workers", "--image-size", "--model", "--json"} <= set(seen)
    for old, (command, dest) in OLD_SPELLINGS.items():
        hidden = dict(_options(_subparsers()[command], hidden=True))
        assert hidden[old].dest == dest and hidden[old].help == argparse.SUPPRESS


def test_every_numeric_flag_rejects_zero_and_negatives_in_one_line(capsys):
    checked = 0
    for command, parser in _subparsers().items():
        for flag, action in _options(parser, hidden=True):
            if action.type not in CHECKED_TYPES and not isinstance(action, _common.ImageSize):
                continue
            bad = ["-1", "x"] if flag in ZERO_ALLOWED else ["-1", "0", "x"]
            bad += ["nan", "inf"] if action.type is _common.positive_float else []
            bad += ["1.5", "nan"] if action.type is _common.probability else []
            zero_means_something = (_common.nonnegative_int, _common.probability)
            assert (flag in ZERO_ALLOWED) == (action.type in zero_means_something), flag
            for value in bad:
                with pytest.raises(SystemExit) as exit_info:
                    main([command, f"{flag}={value}"])
                assert exit_info.value.code == 2
                err = capsys.readouterr().err
                assert err.count("\n") == 1 and err.startswith(f"mobilenetv3 {command}: error:")
                checked += 1
    assert checked >= 30


def test_old_spellings_still_work():
    args = build_parser().parse_args(["evaluate", "d", "--weights", "w", "--limit", "5"])
    assert args.num_images == 5
    args = build_parser().parse_args(["benchmark", "--engines", "torch", "--image-size", "96"])
    assert args.engine == ["torch"] and args.image_size == (96, 96)


def test_unknown_flags_name_the_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "data", "--weights", "w", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("mobilenetv3 evaluate: error: unrecognized arguments: --bogus "
                   "(see `mobilenetv3 evaluate --help`)\n")  # fmt: skip


def test_help_shows_defaults():
    commands = {name: " ".join(p.format_help().split()) for name, p in _subparsers().items()}
    assert "images per engine call (default: 50)" in commands["evaluate"]
    assert "classes shown per image (default: 5)" in commands["predict"]
    train = commands["train"]
    assert "(default: 32, unless --config sets it)" in train and "{none,bf16}" in train


def test_top_level_help_and_version_import_no_torch():
    code = ("import sys\nfrom mobilenetv3.cli import main\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert "mobilenetv3 0.1.0" in done.stdout
    assert done.stdout.splitlines()[-1] == "False"


def test_outputs_are_checked_before_any_work(tmp_path, capsys):
    wrong = tmp_path / "q.tflite"
    assert main(["export", "--model", "v3_small_0.35", "--format", "onnx", "--output",
                 str(wrong)]) == 2  # fmt: skip
    assert "--format onnx writes a .onnx file" in capsys.readouterr().err
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    cases = {str(blocker / "r.json"): "is a file, not a folder",
             str(blocker / "sub" / "r.json"): "cannot make",
             str(tmp_path / "r.txt"): "JSON"}  # fmt: skip
    for path, why in cases.items():
        for command in (["evaluate", "data"], ["predict", "x.jpg"]):
            with pytest.raises(SystemExit):
                main([*command, "--weights", "w", "--json", path])
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and why in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.fixture
def six_photos(shared, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted((shared / "images" / "imagenet-samples").iterdir())[:6]:
        (data / path.name).symlink_to(path)
    return data


def test_ctrl_c_in_evaluate_keeps_the_partial_result(shared, six_photos, tmp_path, monkeypatch,
                                                     capsys):  # fmt: skip
    real = _common.engine_runner

    def interrupted_on_third_batch(args, model, batch):
        return _CtrlCOnThirdCall(real(args, model, batch))

    monkeypatch.setattr(evaluate_command, "engine_runner", interrupted_on_third_batch)
    out = tmp_path / "partial.json"
    weights = str(shared / "pretrained" / SMALL)
    assert main(["evaluate", str(six_photos), "--weights", weights, "--batch-size", "2",
                 "--workers", "0", "--json", str(out)]) == 130  # fmt: skip
    assert "interrupted after 4 images" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["partial"] is True and result["images"] == 4
    assert result["top1"] == round(result["top1"], 2)


def test_predict_skips_bad_images_in_any_engine(shared, tmp_path, capsys):
    photos = shared / "images" / "photos"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    weights = str(shared / "pretrained" / SMALL)
    argv = ["predict", str(photos / "chelsea.png"), str(broken), "--weights", weights]
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1
    for engine in ("torch", "litert", "onnxruntime"):
        # the int8 file runs in torch and LiteRT; ONNX Runtime runs its dequantized weights
        extra = ["--dequantize"] if engine == "onnxruntime" else []
        assert main([*argv, "--skip-bad", "--engine", engine, "--json", *extra]) == 0
        captured = capsys.readouterr()
        document = json.loads(captured.out)
        assert [s["path"] for s in document["skipped"]] == [str(broken)]
        assert document["engine"] == engine and len(document["results"]) == 1
        cat = document["results"][0]["top_k"]
        assert cat[0]["name"] in {"Egyptian cat", "tabby, tabby cat", "tiger cat"}, engine
        assert sum(entry["probability"] for entry in cat) <= 1.001


class _CtrlCOnThirdCall:
    """A runner the user interrupts (Ctrl-C) during its third batch."""

    def __init__(self, runner) -> None:
        self.runner, self.kind, self.output, self.calls = runner, runner.kind, runner.output, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.runner(images)
