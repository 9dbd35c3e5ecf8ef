"""The README's charts, redrawn into docs/ from a `benchmarks/latency.py` run: latency vs top-1
(V2 against V3, the seed README's first figure), every engine relative to the fastest (batch 1
and 32, 1 and 2 threads, with the compute limit), and MACs vs top-1 with blob size =
parameters (the seed README's second figure, counted, not measured).

The latency charts use that run's medians (fastest engine per model; the official uint8 files
in LiteRT as stars), so measure on a quiet machine: a shared CPU's background load is in every
median. The machine, date and run length go into each latency chart, docs/charts.json and the
README's caption.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/latency.py && PYTHONPATH=src .venv/bin/python
benchmarks/readme_charts.py [--latency benchmarks/results/latency.json]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, published_top1, write_json
from latency import caption, engines_chart, latency_chart
from macs_vs_top1 import macs_chart, measured_top1, variant_figures

import mobilenetv3

DOCS = Path(__file__).resolve().parents[1] / "docs"


def read_run(path: Path) -> dict:
    """A latency.py JSON with every field the charts need, or one clear error."""
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read {path} ({e}): run benchmarks/latency.py first (--quick "
                         "for a short check), or give --latency PATH") from None  # fmt: skip
    missing = {"machine", "date", "clock_hz", "latency_batch1", "throughput_batch32"} - set(run)
    if missing:
        raise SystemExit(f"{path} lacks {', '.join(sorted(missing))}: it was written by an older "
                         "benchmarks/latency.py; run it again")  # fmt: skip
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=Path, default=RESULTS / "latency.json",
                        help="benchmarks/latency.py's JSON (default: its default output)")
    args = parser.parse_args(argv)
    run = read_run(args.latency)
    published, note = published_top1(), caption(run)
    latency_png = latency_chart(run["latency_batch1"], published, DOCS / "latency_vs_top1.png",
                                threads=1, note=note)  # fmt: skip
    engines = engines_chart(run["latency_batch1"] + run["throughput_batch32"], run["clock_hz"],
                            DOCS / "latency_engines.png", note)  # fmt: skip
    names = list(dict.fromkeys([*mobilenetv3.list_models(), *published]))
    macs_png = macs_chart(variant_figures(names), published, measured_top1(RESULTS),
                          DOCS / "macs_vs_top1.png")  # fmt: skip
    write_json(DOCS / "charts.json", {
        "machine": run["machine"], "date": run["date"], "quick": run.get("quick"),
        "load_average": run.get("load_average"), "source": str(args.latency),
        "latency_batch1": run["latency_batch1"], "throughput_batch32": run["throughput_batch32"],
    })  # fmt: skip
    print(f"wrote {latency_png}, {engines}, {macs_png} and {DOCS / 'charts.json'} ({note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
