"""Decode throughput on the 1000 ImageNet samples: images/s for decoding alone, decoding +
SLIM_EVAL preprocessing, and the two loader back-ends (thread pool vs DataLoader processes)
with 1 and 2 workers. Prints a table and writes benchmarks/results/decode.json.

Why: `make_loader` picks its default back-end from these numbers.

    .venv/bin/python benchmarks/decode.py [--data DIR] [--repeats N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import shared_dir
from PIL import Image

from mobilenetv3.data.datasets import ImageDataset, list_samples, make_loader
from mobilenetv3.data.preprocess import SLIM_EVAL, TIMM_IMAGENET, load_image, preprocess_image

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _best_rate(fn: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Best wall images/s over `repeats` runs, and CPU ms per image of that run.

    CPU time is reported too because on a shared machine wall time mostly measures the
    other tenants; CPU ms/image is the cost that does not depend on them.
    """
    best, cpu_ms = 0.0, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), _cpu_s()
        n = fn()
        rate = n / (time.perf_counter() - t0)
        if rate > best:
            best, cpu_ms = rate, (_cpu_s() - c0) / n * 1e3
    return best, cpu_ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="image folder (default: samples)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    data = args.data
    if data is None:
        shared = shared_dir()
        if shared is None:
            print("no ../shared folder: pass --data", file=sys.stderr)
            return 2
        data = shared / "images" / "imagenet-samples"
    samples = list_samples(data)
    paths = [p for p, _ in samples]

    def decode_only() -> int:
        for p in paths:
            load_image(p)
        return len(paths)

    def pil_decode_raw() -> int:
        for p in paths:
            with Image.open(p) as im:
                im.load()
        return len(paths)

    def decode_pre(preset=SLIM_EVAL) -> Callable[[], int]:
        def run() -> int:
            for p in paths:
                preprocess_image(load_image(p), preset)
            return len(paths)

        return run

    def loader(backend: str, workers: int) -> Callable[[], int]:
        ds = ImageDataset(samples, SLIM_EVAL, skip_bad=True)

        def run() -> int:
            n = 0
            for batch in make_loader(ds, args.batch_size, workers, backend=backend):
                n += batch.images.shape[0] + len(batch.skipped)
            return n

        return run

    rows: list[tuple[str, int, float, float]] = []
    cases: list[tuple[str, int, Callable[[], int]]] = [
        ("PIL open+load only (no RGB/EXIF)", 1, pil_decode_raw),
        ("load_image (decode)", 1, decode_only),
        ("decode + SLIM_EVAL", 1, decode_pre(SLIM_EVAL)),
        ("decode + TIMM_IMAGENET", 1, decode_pre(TIMM_IMAGENET)),
    ]
    for workers in (1, 2):
        cases.append((f"threads loader, SLIM_EVAL, bs {args.batch_size}", workers,
                      loader("threads", workers)))
        cases.append((f"DataLoader processes, SLIM_EVAL, bs {args.batch_size}", workers,
                      loader("processes", workers)))
    for name, workers, fn in cases:
        rate, cpu_ms = _best_rate(fn, args.repeats)
        rows.append((name, workers, rate, cpu_ms))
        print(f"{name:<44} workers={workers}  {rate:8.1f} img/s  {cpu_ms:6.2f} CPU ms/img",
              flush=True)

    load = os.getloadavg()[0]
    print(f"\n(load average {load:.1f} on {os.cpu_count()} CPUs)")
    print("| case | workers | images/s (wall) | CPU ms / image |\n| --- | --- | --- | --- |")
    for name, workers, rate, cpu_ms in rows:
        print(f"| {name} | {workers} | {rate:.0f} | {cpu_ms:.2f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "images": len(paths),
        "data": str(data),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "load_average_1min": round(load, 2),
        "results": [
            {"case": n, "workers": w, "images_per_s": round(r, 1), "cpu_ms_per_image": round(c, 3)}
            for n, w, r, c in rows
        ],
    }, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
