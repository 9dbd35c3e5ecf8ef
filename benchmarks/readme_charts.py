"""The README's two charts, redrawn into docs/: latency vs top-1 (V2 against V3, the seed
README's first figure) and MACs vs top-1 with blob size = parameters (its second).

Latency is a short run so that a shared CPU is not held for long: batch 1, 224x224, 1 thread,
ONNX Runtime (the fastest float engine here, see `runtime/auto.py`) on every named variant and
the official uint8 files in LiteRT, `--iters` timed runs (default 30) after 2 warm-ups, all
models timed round-robin (one call of each in turn) so that every model sees the same
background load of a shared machine. The chart plots each model's fastest run: on a loaded
machine the median measures the other jobs as much as the model (both are in charts.json).
The machine, date and run length go into docs/charts.json and the README's caption.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/readme_charts.py [--iters N]` (~3 min).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OFFICIAL_UINT8, RESULTS, published_top1, shared_dir, write_json
from latency import FULL_MODELS, latency_chart
from macs_vs_top1 import macs_chart, measured_top1, variant_figures

import mobilenetv3
from mobilenetv3.export import engine_sources
from mobilenetv3.runtime.engines import make_runner
from mobilenetv3.runtime.latency import time_runners

DOCS = Path(__file__).resolve().parents[1] / "docs"


def machine() -> str:
    """The CPU's model name and core count, as the caption states them."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())  # fmt: skip
    return f"{name}, {os.cpu_count()} cores"


def latency_rows(iters: int) -> list[dict]:
    """Batch-1, 1-thread rows (latency.py's shape) of every variant in ONNX Runtime and of the
    official uint8 files in LiteRT, all timed round-robin."""
    labels, runners = [], []
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-charts-") as tmp:
        for name in FULL_MODELS:
            folder = Path(tmp) / name
            folder.mkdir()
            model = mobilenetv3.create_model(name).eval()
            source = engine_sources(model, ["onnxruntime"], folder, (224, 224))["onnxruntime"]
            labels.append((name, "onnxruntime"))
            runners.append(make_runner("onnxruntime", source, threads=1))
        shared = shared_dir()
        for filename, (variant, _) in OFFICIAL_UINT8.items() if shared else ():
            labels.append((f"{variant} (official uint8)", "litert uint8"))
            runners.append(make_runner("litert", shared / "pretrained" / filename, threads=1))
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
        timings = time_runners(runners, x, warmup=2, iters=iters)
    return [{"model": model, "engine": engine, "threads": 1, "batch": 1, **timing}
            for (model, engine), timing in zip(labels, timings, strict=True)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="timed runs per model")
    args = parser.parse_args(argv)
    published = published_top1()
    rows = latency_rows(args.iters)
    fastest_runs = [{**row, "median_ms": row["min_ms"]} for row in rows]  # what the chart plots
    latency_png = latency_chart(fastest_runs, published, DOCS / "latency_vs_top1.png", threads=1)
    names = list(dict.fromkeys([*mobilenetv3.list_models(), *published]))
    macs_png = macs_chart(variant_figures(names), published, measured_top1(RESULTS),
                          DOCS / "macs_vs_top1.png")  # fmt: skip
    write_json(DOCS / "charts.json", {
        "machine": machine(), "date": datetime.date.today().isoformat(),
        "load_average": os.getloadavg(), "latency": {"engine": "onnxruntime", "threads": 1,
        "batch": 1, "warmup": 2, "iters": args.iters}, "latency_batch1": rows,
    })  # fmt: skip
    print(f"wrote {latency_png}, {macs_png} and {DOCS / 'charts.json'} ({machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
