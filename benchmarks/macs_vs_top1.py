"""MACs (counted by `count_macs`, 224x224) vs top-1 for every named variant, blob size =
parameters. Published top-1 (seed README rows, MobileNetV2 README) are one marker set;
top-1 measured by this project on the 1000 sample photos, where a results JSON in
benchmarks/results/ holds one, is a second, labelled as such.

Run: `.venv/bin/python benchmarks/macs_vs_top1.py`; writes macs_vs_top1.{png,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, new_figure, published_top1, save_figure, write_json

import mobilenetv3


def variant_figures(names: list[str]) -> list[dict[str, Any]]:
    """MACs and params of each variant (1001 classes), by this project's counters."""
    rows = []
    for name in names:
        model = mobilenetv3.create_model(name)
        rows.append({"model": name, "macs": mobilenetv3.count_macs(model, 224),
                     "params": mobilenetv3.count_params(model)})  # fmt: skip
    return rows


def measured_top1(folder: Path) -> dict[str, dict[str, Any]]:
    """model -> {"top1", "source"} from any results JSON holding rows with a model name and a
    top-1 (percent, or a fraction <= 1); this script's own output is skipped."""
    found: dict[str, dict[str, Any]] = {}

    def visit(node: Any, source: str) -> None:
        if isinstance(node, dict):
            name = node.get("model") or node.get("variant")
            top1 = node.get("top1", node.get("top1_percent"))
            if isinstance(name, str) and isinstance(top1, int | float):
                found[name] = {"top1": top1 * 100 if top1 <= 1 else top1, "source": source}
            for value in node.values():
                visit(value, source)
        elif isinstance(node, list):
            for value in node:
                visit(value, source)

    for path in sorted(folder.glob("*.json")):
        if path.stem in ("macs_vs_top1", "latency"):
            continue
        try:
            visit(json.loads(path.read_text()), path.name)
        except (json.JSONDecodeError, OSError):
            continue
    return found


def macs_chart(rows: list[dict], published: dict[str, dict], measured: dict[str, dict],
               path: Path) -> Path:  # fmt: skip
    """Scatter of MACs vs top-1, area proportional to parameters."""
    fig, ax = new_figure((9.0, 6.0))
    for label, source, marker in (("published top-1", published, "o"),
                                  ("measured on 1000 sample photos", measured, "s")):  # fmt: skip
        points = [(r["macs"] / 1e6, source[r["model"]]["top1"], r["params"], r["model"])
                  for r in rows if r["model"] in source]  # fmt: skip
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, alpha=0.5,
                   s=[p[2] / 2e4 for p in points], label=label)  # fmt: skip
        for macs, top1, _, name in points:
            ax.annotate(name, (macs, top1), fontsize=7, textcoords="offset points",
                        xytext=(5, 4))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("multiply-accumulates at 224x224, millions (count_macs)")
    ax.set_ylabel("ImageNet top-1, %")
    ax.set_title("MobileNet MACs vs top-1 (blob area ~ parameters)")
    ax.legend(loc="lower right", markerscale=0.3)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "macs_vs_top1.json")
    args = parser.parse_args(argv)
    published, measured = published_top1(), measured_top1(RESULTS)
    names = list(dict.fromkeys([*mobilenetv3.list_models(), *published]))
    rows = variant_figures(names)
    chart = macs_chart(rows, published, measured, args.output.with_suffix(".png"))
    for r in rows:
        r["published_top1"] = published.get(r["model"])
        r["measured_top1"] = measured.get(r["model"])
        print(f"{r['model']:<28} {r['macs'] / 1e6:8.1f} M MACs {r['params'] / 1e6:6.2f} M params"
              f"  published {r['published_top1'] and r['published_top1']['top1']}"
              f"  measured {r['measured_top1'] and r['measured_top1']['top1']}")  # fmt: skip
    write_json(args.output, {"variants": rows})
    print(f"wrote {args.output} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
