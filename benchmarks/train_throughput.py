"""Training throughput (images/s) of `mobilenetv3 train` with 1 and 2 processes.

Runs the real command (Inception augmentation, TF RMSProp, EMA) on ImageNet sample photos for
a few steps and reads images/s from log.jsonl, skipping the first interval (warm-up). On a CUDA
machine the command trains on the GPU automatically; on CPU torchrun uses gloo.

    python benchmarks/train_throughput.py [--model v3_small_1.0] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import shared_dir

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"


def make_folder(root: Path, count: int) -> Path:
    """Symlinked ImageFolder of `count` sample photos in 4 classes."""
    shared = shared_dir()
    if shared is None:
        raise SystemExit("needs ../shared (sample photos); set MOBILENETV3_SHARED")
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))[:count]
    for i, f in enumerate(files):
        (root / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"c{i % 4}" / f.name).symlink_to(f)
    return root


def run(processes: int, data: Path, out: Path, args: argparse.Namespace) -> dict:
    launcher = [sys.executable, "-m", "mobilenetv3"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", "-m", "mobilenetv3"]  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [*launcher, "train", "--config", "slim_original", "--model", args.model, "--data",
           str(data), "--output", str(out), "--batch-size", str(args.batch_size), "--max-steps",
           str(args.steps), "--no-progress", "--set", "log_every=2", "--set", "num_workers=0",
           "--set", "checkpoint_every=0", "--set", "plot=false"]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if r["event"] == "train"][1:]
    start = next(r for r in records if r["event"] == "start")
    return {
        "processes": processes,
        "device": start["device"],
        "threads_per_process": threads,
        "global_batch": start["global_batch"],
        "images_per_s": statistics.median(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="v3_small_1.0")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_folder(Path(tmp) / "data", 2 * args.batch_size * args.steps)
        for n in (1, 2):
            rows.append(run(n, data, Path(tmp) / f"run{n}", args))
    print(f"{'processes':>9} {'device':>7} {'threads':>7} {'batch':>5} {'images/s':>9}")
    for r in rows:
        print(f"{r['processes']:>9} {r['device']:>7} {r['threads_per_process']:>7} "
              f"{r['global_batch']:>5} {r['images_per_s']:>9.1f}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "model": args.model, "image_size": 224, "recipe": "slim_original", "steps": args.steps,
        "torch": torch.__version__, "cuda": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_average_after": os.getloadavg(), "results": rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
