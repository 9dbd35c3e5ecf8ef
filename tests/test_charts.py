"""The benchmark charts render from tiny inputs to PNGs of the expected pixel size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import latency  # noqa: E402 - the benchmarks folder is on the path only from here
import macs_vs_top1  # noqa: E402

PUBLISHED = {"v3_large_1.0": {"top1": 75.2, "source": "t"}, "v3_small_1.0": {"top1": 67.5,
             "source": "t"}, "v2_1.0": {"top1": 71.8, "source": "t"}}  # fmt: skip


def _row(model: str, engine: str, ms: float, threads: int = 1) -> dict:
    return {"model": model, "engine": engine, "threads": threads, "batch": 1, "median_ms": ms,
            "p90_ms": ms * 1.1, "iters": 3, "images_per_s": 1e3 / ms}  # fmt: skip


def test_latency_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the [plot] extra; a failure under CI=true
    rows = [_row("v3_large_1.0", "torch", 9.0), _row("v3_large_1.0", "litert", 7.0),
            _row("v3_small_1.0", "onnxruntime", 3.0), _row("v2_1.0", "torch", 8.0),
            _row("v3_small_1.0 (official uint8)", "litert uint8", 2.0)]  # fmt: skip
    path = latency.latency_chart(rows, PUBLISHED, tmp_path / "latency.png")
    _assert_drawn(path, (800, 500))
    lines = latency.checks(rows, ["v3_large_1.0"], [1])
    assert "0/1 models" in lines[0]  # torch (9 ms) slower than LiteRT (7 ms)


def test_engines_chart_every_engine_and_the_compute_limit(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [{**_row(m, e, ms * b, t), "batch": b} for b in (1, 32) for t in (1, 2)
            for m, e, ms in [("v3_small_1.0", "torch", 9.0), ("v3_small_1.0", "openvino", 3.0),
                             ("v2_1.0", "onnxruntime", 4.0), ("v2_1.0", "litert", 5.0)]]
    # 2 * 56.5 M MACs / (64 FLOP x 1 GHz) = 1.77 ms for Small at batch 1, 1 thread
    assert latency.compute_limit_ms("v3_small_1.0", 1, 1, 1e9) == pytest.approx(1.766, abs=1e-3)
    path = latency.engines_chart(rows, 1e9, tmp_path / "engines.png", "test machine, today")
    _assert_drawn(path, (1400, 900))


def test_latency_table_ratios() -> None:
    from mobilenetv3.runtime.latency import format_table

    table = format_table([_row("m", "torch", 10.0), _row("m", "litert", 5.0)])
    assert "2.00x" in table and "1.00x" in table


def test_macs_chart_and_measured(tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text(json.dumps({"rows": [{"model": "v3_small_1.0",
                                                              "top1": 0.771}]}))  # fmt: skip
    measured = macs_vs_top1.measured_top1(tmp_path)
    assert measured["v3_small_1.0"]["top1"] == pytest.approx(77.1)
    rows = macs_vs_top1.variant_figures(["v3_small_1.0", "v2_1.0"])
    assert rows[0]["macs"] == 56_511_424  # figures.json, slim's count
    pytest.importorskip("matplotlib")
    path = macs_vs_top1.macs_chart(rows, PUBLISHED, measured, tmp_path / "macs.png")
    _assert_drawn(path, (900, 600))


def _assert_drawn(path: Path, size: tuple[int, int]) -> None:
    """The PNG has the size asked for and something drawn on it: dark text and axes on a
    light background, and the colours of several series."""
    with Image.open(path) as image:
        assert image.size == size
        rgb = image.convert("RGB")
        darkest, lightest = rgb.convert("L").getextrema()
        assert darkest < 80 and lightest > 240
        assert len(rgb.getcolors(maxcolors=1 << 20)) > 50
