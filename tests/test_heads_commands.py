"""The `detect` and `segment` commands end to end on the committed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenetv3.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
DETECTOR = FIXTURES / "detection_ssdlite_v3_small" / "model.ckpt"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    pixels = np.random.default_rng(5).integers(0, 256, (72, 104, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(pixels).save(path)
    return path


def test_detect_writes_json_and_an_annotated_png(image: Path, tmp_path: Path) -> None:
    out, drawn = tmp_path / "boxes.json", tmp_path / "drawn"
    args = [str(image), "--weights", str(DETECTOR), "--json", str(out), "--draw", str(drawn),
            "--min-score", "0"]  # fmt: skip
    assert main(["detect", *args]) == 0
    [result] = json.loads(out.read_text())
    assert result["image"] == str(image) and len(result["detections"]) == 100
    scores = [d["score"] for d in result["detections"]]
    assert scores == sorted(scores, reverse=True)
    assert all(1 <= d["class"] <= 20 for d in result["detections"])
    assert Image.open(drawn / "noise.png").size == (104, 72)


def test_segment_writes_a_mask_and_an_overlay(image: Path, tmp_path: Path) -> None:
    assert main(["segment", str(image), "--model", "lraspp_v3_small_0.35",
                 "--output", str(tmp_path / "seg")]) == 0  # fmt: skip
    mask = np.asarray(Image.open(tmp_path / "seg" / "noise_mask.png"))
    assert mask.shape == (72, 104) and int(mask.max()) < 19
    assert Image.open(tmp_path / "seg" / "noise_overlay.png").size == (104, 72)


def test_wrong_kind_of_model_is_one_clear_line(image: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    code = main(["segment", str(image), "--weights", str(DETECTOR), "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a segmentation model (it builds SSDLite)" in err[0]
    assert main(["detect", str(image), "--model", "lraspp_v3_small"]) == 2
    assert "is not a detection model (it builds LRASPP)" in capsys.readouterr().err
