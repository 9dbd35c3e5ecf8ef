"""What the benchmark scripts share: published top-1 figures, the results folder, chart style,
and where the reference data lives (`shared_dir`, from tests/shared_data.py).

Published figures are labelled with their source and never mixed with measured ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import ENV_VAR, shared_dir  # noqa: F401  (the one locator of ../shared)

# torch's OpenMP pool spin-waits between ops by default; on a shared machine (other processes
# on the same cores) that made 2-thread eager 2-5x slower than 1 thread (measured here:
# v3_small 27-59 ms vs 11.5 ms). Scripts import this module before torch, so PASSIVE applies;
# run with OMP_WAIT_POLICY=ACTIVE to measure torch's default.
OMP_WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results"

# MobileNetV2 (slim `mobilenet_v2` README checkpoint table, float, 224). Its multipliers < 1
# keep the 1280-wide last layer: their published MACs (209, 97, 59 M) are the finegrain ones.
_V2_PUBLISHED = {"v2_1.4": 75.0, "v2_1.0": 71.8, "v2_0.75_finegrain": 69.8,
                 "v2_0.5_finegrain": 65.4, "v2_0.35_finegrain": 60.3}  # fmt: skip
# The official 8-bit files in shared/pretrained (shared/README.md).
OFFICIAL_UINT8 = {
    "v3-small_224_1.0_uint8.tflite": ("v3_small_1.0", 64.9),
    "v3-large-minimalistic_224_1.0_uint8.tflite": ("v3_large_minimalistic_1.0", 71.3),
}
FAMILIES = {"V2": "v2_", "V3-Large": "v3_large_", "V3-Small": "v3_small_"}


def published_top1() -> dict[str, dict[str, Any]]:
    """name -> {"top1", "source"}: the seed README rows (figures.json "readme") and V2's table.

    The README's 0.75 rows are the finegrain models; they are keyed by that name.
    """
    out = {name: {"top1": top1, "source": "MobileNetV2 slim README"}
           for name, top1 in _V2_PUBLISHED.items()}  # fmt: skip
    shared = shared_dir()
    if shared is not None:
        figures = json.loads((shared / "reference" / "figures.json").read_text())
        for name, entry in figures.items():
            if isinstance(entry, dict) and "readme" in entry:
                out[name] = {"top1": entry["readme"]["top1"], "source": "MobileNetV3 slim README"}
    return out


def family_of(name: str) -> str | None:
    """V2 / V3-Large / V3-Small for the depth-multiplier lines; None for other variants."""
    if "minimalistic" in name or "detection" in name:
        return None
    return next((family for family, prefix in FAMILIES.items() if name.startswith(prefix)), None)


def write_json(path: Path, document: Any) -> Path:
    """Atomic JSON write (results are read by other scripts and charts)."""
    from mobilenetv3.atomic import write_json as atomic_write  # torch loads after OMP_WAIT_POLICY

    return atomic_write(path, document)


def new_figure(size: tuple[float, float] = (8.0, 5.0), panels: tuple[int, int] = (1, 1)
               ) -> tuple[Any, Any]:  # fmt: skip
    """A figure of exactly size x 100 dpi pixels (no tight bbox, so tests can check it): one
    axes, or a grid of `panels` (rows, columns) as an array of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(*panels, figsize=size, dpi=100)
    for each in getattr(ax, "flat", [ax]):
        each.grid(True, alpha=0.3)
    return fig, ax


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
