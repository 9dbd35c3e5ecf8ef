"""How fast, and with how much memory, the TF checkpoint reader loads the Large checkpoint.

Peak memory is measured in a fresh subprocess per case (VmHWM from /proc/self/status, minus
the high-water mark after imports), so earlier runs and the timing loop do not pollute it.
Run: `.venv/bin/python benchmarks/checkpoint_load.py [--repeats 20]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import ENV_VAR, shared_dir

from mobilenetv3.weights.archive import open_checkpoint_in_tar
from mobilenetv3.weights.tensorbundle import read_checkpoint

RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint_load.json"

# Runs in a fresh interpreter; prints VmHWM before/after and RssAnon/RssFile growth (KiB).
_CHILD = r"""
import json, sys
import numpy as np
from mobilenetv3.weights.archive import open_checkpoint_in_tar
from mobilenetv3.weights.tensorbundle import CheckpointReader

def status():
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[key] = int(rest.split()[0])
    return fields

mode, path = sys.argv[1], sys.argv[2]
before = status()
reader = CheckpointReader(path) if mode == "files" else open_checkpoint_in_tar(path)
with reader:
    tensors = reader.read_all()
    held = status()
after = status()
print(json.dumps({"base_kib": before["VmHWM"], "peak_kib": after["VmHWM"],
                  "anon_kib": held["RssAnon"] - before["RssAnon"],
                  "file_kib": held["RssFile"] - before["RssFile"], "n": len(tensors)}))
"""


def _peak(mode: str, path: Path) -> dict[str, int]:
    """Memory figures of one load in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def _time(load: Callable[[], object], repeats: int) -> list[float]:
    """Wall time of each of `repeats` loads."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--variant", default="v3_large_1.0")
    args = parser.parse_args(argv)

    shared = shared_dir()
    if shared is None:
        sys.exit(f"reference data not found: put ../shared beside the checkout or set {ENV_VAR}")
    folder = shared / "reference" / "slim" / args.variant
    prefix = folder / "model.ckpt"
    data = folder / "model.ckpt.data-00000-of-00001"
    size = data.stat().st_size

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tgz = Path(tmp) / "release.tgz"
        with tarfile.open(tgz, "w:gz", compresslevel=6) as tar:
            tar.add(folder / "model.ckpt.index", "release/ema/model.ckpt.index")
            tar.add(data, "release/ema/" + data.name)
        cases = [
            ("files (mmap)", "files", prefix, lambda: read_checkpoint(prefix)),
            ("tgz (in memory)", "tar", tgz, lambda: open_checkpoint_in_tar(tgz).read_all()),
        ]
        for label, mode, path, load in cases:
            load()  # warm the page cache
            times = _time(load, args.repeats)
            mem = _peak(mode, path)
            delta = (mem["peak_kib"] - mem["base_kib"]) * 1024
            rows.append(
                {
                    "case": label,
                    "tensors": mem["n"],
                    "median_s": statistics.median(times),
                    "min_s": min(times),
                    "peak_rss_delta_bytes": delta,
                    "rss_anon_growth_bytes": mem["anon_kib"] * 1024,
                    "rss_file_growth_bytes": mem["file_kib"] * 1024,
                    "data_bytes": size,
                    "peak_over_size": delta / size,
                }
            )

    print(f"{args.variant}: data file {size / 2**20:.1f} MiB, {args.repeats} repeats")
    print(f"{'case':<18}{'median ms':>10}{'min ms':>9}{'peak dRSS MiB':>15}{'peak/size':>11}")
    for r in rows:
        print(
            f"{r['case']:<18}{r['median_s'] * 1e3:>10.1f}{r['min_s'] * 1e3:>9.1f}"
            f"{r['peak_rss_delta_bytes'] / 2**20:>15.1f}{r['peak_over_size']:>11.2f}"
        )
    result = {
        "variant": args.variant,
        "repeats": args.repeats,
        "python": sys.version.split()[0],
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")
    return result


if __name__ == "__main__":
    main()
