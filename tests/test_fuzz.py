"""Hostile files: a seeded slice of the fuzz campaign (benchmarks/fuzz.py runs the full one),
crafted images and metadata, and the CLI's one-line errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzz import runner, seeds
from fuzz.targets import BAD
from PIL import Image

from mobilenetv3 import create_model
from mobilenetv3.cli import main
from mobilenetv3.data.preprocess import ImageError, load_image
from mobilenetv3.runtime.evaluate import model_preprocess
from mobilenetv3.weights.safetensors_io import save_safetensors

TRIALS_PER_FORMAT = 25  # ~150 trials, about 20 s on 2 cores
SEED = 14
FORMATS = ("pt2", "image", "tgz", "checkpoint", "safetensors", "tflite")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> list[runner.Trial]:
    corpus = seeds.build(tmp_path_factory.mktemp("seeds"))
    return runner.run(runner.make_trials(corpus, TRIALS_PER_FORMAT, SEED))


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_slice_has_no_unclear_crash_hang_or_memory(campaign: list[runner.Trial],
                                                         fmt: str) -> None:  # fmt: skip
    trials = [t for t in campaign if t.format == fmt]
    if fmt == "tflite" and not trials:
        pytest.fail("no .tflite seed: ../shared/pretrained is missing")
    bad = [f"{t.outcome}: {t.mutations} {t.detail[:160]}" for t in trials if t.outcome in BAD]
    assert not bad, "\n".join(bad)
    assert any(t.outcome == "clear" for t in trials), "the mutations broke nothing"


def test_the_harness_tells_outcomes_apart() -> None:
    """A crash, hang, memory blow-up and foreign exception are each caught and named, and the
    trials after them still run in a fresh worker."""
    kinds = ("loaded", "unclear", "crash", "clear", "hang", "memory", "loaded")
    trials = [runner.Trial(i, "selftest", [], {".txt": k.encode()}) for i, k in enumerate(kinds)]
    runner.run(trials, timeout=5.0)
    assert [t.outcome for t in trials] == list(kinds)
    assert trials[2].detail == "SIGABRT"


# ----------------------------------------------------------------------------- crafted images


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid PNG header declaring width x height, with one tiny IDAT (a decompression bomb's
    header: a few bytes that would decode to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_image_declaring_144_megapixels_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 12000, 12000)
    with pytest.raises(ImageError, match=r"bomb\.png: declares 12000x12000 pixels"):
        load_image(bomb)


def test_max_pixels_overrides_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(path)
    with pytest.raises(ImageError, match="photo.png: declares 300x200"):
        load_image(path, max_pixels=50_000)
    assert load_image(path, max_pixels=60_000).size == (300, 200)


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.95])
def test_truncated_image_names_the_file(tmp_path: Path, cut: float) -> None:
    path = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    with pytest.raises(ImageError, match=r"cut\.jpg"):
        load_image(path)


def test_huge_image_size_in_metadata_is_a_clear_error() -> None:
    class Model:
        pretrained_info = {"source": "w.safetensors",
                           "preprocess": {"image_size": [100000, 100000]}}  # fmt: skip

    with pytest.raises(ValueError, match=r"w\.safetensors: bad preprocessing metadata.*4096"):
        model_preprocess(Model())


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("v3_small_0.35")
    return save_safetensors(model, tmp_path_factory.mktemp("w") / "small.safetensors")


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # after any progress bar
    assert last.startswith(f"mobilenetv3 {command}: error: ")
    return last


def test_cli_bomb_image_is_one_line(weights: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    bomb = _png_declaring(tmp_path / "bomb.png", 12000, 12000)
    assert main(["predict", str(bomb), "--weights", str(weights)]) == 2
    assert "bomb.png: declares 12000x12000" in _one_error_line(capsys, "predict")
    small = _png_declaring(tmp_path / "small.png", 400, 300)
    assert main(["predict", str(small), "--weights", str(weights), "--max-pixels", "1000"]) == 2
    assert "small.png: declares 400x300 pixels, more than the limit of 1000" in \
        _one_error_line(capsys, "predict")  # fmt: skip


def test_cli_evaluate_max_pixels(weights: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _png_declaring(tmp_path / "n01440764_1.png", 400, 300)
    args = ["evaluate", str(tmp_path), "--weights", str(weights), "--workers", "1"]
    assert main([*args, "--max-pixels", "1000"]) == 2
    assert "n01440764_1.png: declares 400x300 pixels, more than the limit of 1000" in \
        _one_error_line(capsys, "evaluate")  # fmt: skip


def test_cli_multi_line_error_becomes_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mobilenetv3.commands.summary as summary

    def fail(_args: object) -> int:
        raise ValueError("w.safetensors: size mismatch\n\tfor layer 1\n\tfor layer 2")

    monkeypatch.setattr(summary, "run", fail)
    assert main(["summary"]) == 2
    assert _one_error_line(capsys, "summary").endswith("size mismatch for layer 1 for layer 2")


def test_cli_bug_is_one_line_and_debug_shows_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mobilenetv3.commands.summary as summary

    def bug(_args: object) -> int:
        raise KeyError("scale")

    monkeypatch.setattr(summary, "run", bug)
    monkeypatch.delenv("MOBILENETV3_DEBUG", raising=False)
    assert main(["summary"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenetv3 summary: internal error: KeyError") and "\n" not in err
    monkeypatch.setenv("MOBILENETV3_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["summary"])
