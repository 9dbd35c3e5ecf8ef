"""Training curves: loss, accuracy and learning rate of a run's log.jsonl as a PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path


def plot_curves(log_path: Path, png_path: Path) -> Path | None:
    """Loss, accuracy and learning rate against step, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["event"] in ("train", "epoch") and math.isfinite(r["loss"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy", "lr"), strict=True):
        for event, style in (("train", "-"), ("epoch", "o")):
            pts = [(r["step"], r[key]) for r in train if r["event"] == event]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=f"{event} {key}")
        val = [(r["step"], r[f"val_{key}"]) for r in records if f"val_{key}" in r]
        if val:
            ax.plot(*zip(*val, strict=True), "s--", label=f"val {key}")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return png_path
