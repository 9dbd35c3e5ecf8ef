"""The full fuzz campaign over every reader (tests/test_fuzz.py runs a slice of it).

    python benchmarks/fuzz.py --trials 5000 [--seed 0] [--formats pt2 image]

`--trials` is the total, split evenly over the formats. Prints the table of outcomes by format
(loaded / clear / unclear / crash / hang / memory, see tests/fuzz/targets.py) and writes every
trial (format, mutations, outcome, error) to benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import RESULTS  # noqa: E402  (sets the OpenMP wait policy before torch)
from fuzz import runner, seeds  # noqa: E402
from fuzz.targets import OUTCOMES  # noqa: E402

from mobilenetv3.atomic import write_json  # noqa: E402


def print_table(table: dict[str, dict[str, int]]) -> None:
    print(f"{'format':<12}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'total':>9}")
    totals = dict.fromkeys(OUTCOMES, 0)
    for fmt, counts in table.items():
        print(f"{fmt:<12}" + "".join(f"{counts[o]:>9}" for o in OUTCOMES)
              + f"{sum(counts.values()):>9}")  # fmt: skip
        totals = {o: totals[o] + counts[o] for o in OUTCOMES}
    print(f"{'all':<12}" + "".join(f"{totals[o]:>9}" for o in OUTCOMES)
          + f"{sum(totals.values()):>9}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000, help="total over all formats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="*", help="default: every format with a seed")
    parser.add_argument("--batch", type=int, default=50, help="trials per worker process")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per trial")
    parser.add_argument("--memory-gib", type=float, default=3.0, help="address-space limit")
    parser.add_argument("--output", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = seeds.build(Path(tmp))
    formats = tuple(args.formats or corpus)
    trials = runner.make_trials(corpus, max(1, args.trials // len(formats)), args.seed, formats)
    start = time.perf_counter()
    runner.run(trials, args.batch, args.timeout, int(args.memory_gib * (1 << 30)))
    seconds = time.perf_counter() - start
    table = runner.table(trials)
    print(f"{len(trials)} trials, seed {args.seed}, {seconds:.0f} s")
    print_table(table)
    bad = [t for t in trials if t.outcome not in ("loaded", "clear")]
    for trial in bad[:20]:
        print(f"  {trial.format} #{trial.id} {trial.outcome}: {trial.mutations} "
              f"{trial.detail[:150]}")
    write_json(args.output, {"seed": args.seed, "seconds": round(seconds, 1), "table": table,
                             "command": " ".join(sys.argv), "trials": runner.report(trials)})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
