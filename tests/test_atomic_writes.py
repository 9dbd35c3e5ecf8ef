"""Every writer appears whole or not at all: a write that fails midway (some bytes already
written, then a full disk) leaves nothing at the destination, no temp file, and an older file
there untouched; the full disk is one `OutputError` naming the destination."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mobilenetv3
from mobilenetv3.atomic import OutputError, write_json
from mobilenetv3.core.init import randomize


class DiskFull(OSError):
    pass


def _half_then_fail(target_of):
    """A replacement writer: some bytes land in its target file, then the disk is full."""

    def write(*args, **kwargs):
        target = target_of(*args, **kwargs)
        if hasattr(target, "write"):
            target.write(b"PK\x03\x04 partial")
        else:
            Path(target).write_bytes(b"PK\x03\x04 partial")
        raise DiskFull(28, "No space left on device")

    return write


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_json(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_json(target, {"top1": 1.0})
    monkeypatch.setattr(Path, "write_text", _half_then_fail(lambda path, text, **kw: path))
    with pytest.raises(OutputError, match="result.json: disk full"):
        write_json(target, {"top1": 2.0})
    monkeypatch.undo()
    assert _only(tmp_path) == ["result.json"] and target.read_text() == '{\n  "top1": 1.0\n}'


def test_pt2_export(tmp_path, monkeypatch):
    from mobilenetv3.export import export_pt2

    monkeypatch.setattr(torch.export, "save", _half_then_fail(lambda program, f, **kw: f))
    model = randomize(mobilenetv3.create_model("v3_small_0.35"))
    with pytest.raises(OutputError, match="m.pt2: disk full"):
        export_pt2(model, tmp_path / "m.pt2", image_size=(64, 64))
    assert _only(tmp_path) == []


def test_convert_command(shared, tmp_path, monkeypatch, capsys):
    from mobilenetv3.cli import main
    from mobilenetv3.weights import safetensors_io

    monkeypatch.setattr(safetensors_io, "save_file", _half_then_fail(
        lambda tensors, filename, **kw: filename))  # fmt: skip
    source = shared / "reference" / "slim" / "v3_small_1.0" / "model.ckpt"
    assert main(["convert", str(source), str(tmp_path / "small.safetensors")]) == 2
    assert "small.safetensors: disk full" in capsys.readouterr().err
    assert _only(tmp_path) == []


def test_training_checkpoint(tmp_path, monkeypatch):
    from mobilenetv3.train.checkpoint import load_checkpoint, save_checkpoint

    first = save_checkpoint({"step": 1}, tmp_path)
    monkeypatch.setattr(torch, "save", _half_then_fail(lambda obj, f, **kw: f))
    with pytest.raises(DiskFull):  # its own rotating write: the error passes through as is
        save_checkpoint({"step": 2}, tmp_path)
    monkeypatch.undo()
    assert _only(tmp_path) == [first.name]  # the earlier checkpoint kept, not rotated away
    assert load_checkpoint(first)["step"] == 1
