"""`mobilenetv3 summary`: every variant's parameters and MACs, beside the seed README's table."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import add_image_size, add_option

HELP = "table of all variants: parameters, MACs at a size, and the README's published figures"

# The seed README's checkpoint table (TF-slim nets/mobilenet/README.md): MACs (M), params (M),
# top-1. The Small rows do not describe the released Small architecture: its code gives
# 56.5 M MACs / 2.54 M params for Small 1.0 (as the final MobileNetV3 paper also reports).
README_TABLE = {
    "v3_large_1.0": (217, 5.4, 75.2),
    "v3_large_0.75_finegrain": (155, 4.0, 73.3),
    "v3_small_1.0": (66, 2.9, 67.5),
    "v3_small_0.75_finegrain": (44, 2.4, 65.4),
    "v3_large_minimalistic_1.0": (209, 3.9, 72.3),
    "v3_small_minimalistic_1.0": (65, 2.0, 61.9),
}


def configure(parser: argparse.ArgumentParser) -> None:
    add_image_size(parser, (224, 224))
    add_option(parser, "--model", old=("--models",), nargs="+",
               help="variants to list (default: all named ones)")  # fmt: skip


def summary_rows(models: list[str], image_size: tuple[int, int]) -> list[dict]:
    from mobilenetv3 import count_macs, count_params, create_model

    rows = []
    for name in models:
        model = create_model(name)
        row = {"model": name, "params": count_params(model), "macs": count_macs(model, image_size)}
        readme = README_TABLE.get(name)
        if readme:
            macs_m, params_m, top1 = readme
            row |= {"readme_macs_m": macs_m, "readme_params_m": params_m, "readme_top1": top1}
            # the README rounds MACs to 1 M and gives params to 0.1 M (sometimes truncated)
            row["matches_readme"] = (
                round(row["macs"] / 1e6) == macs_m and abs(row["params"] / 1e6 - params_m) < 0.1
            )
        rows.append(row)
    return rows


def format_table(rows: list[dict], image_size: tuple[int, int]) -> str:
    header = f"{'model':28s} {'params':>10s} {'MACs@' + 'x'.join(map(str, image_size)):>14s}"
    header += "   README: MACs(M) params(M) top-1"
    lines = [header, "-" * len(header)]
    for r in rows:
        line = f"{r['model']:28s} {r['params']:>10,d} {r['macs']:>14,d}"
        if "readme_top1" in r:
            line += f"   {r['readme_macs_m']:>9d} {r['readme_params_m']:>9.1f}"
            line += f" {r['readme_top1']:>5.1f}"
            line += "" if r["matches_readme"] else "  (README differs: see note)"
        lines.append(line)
    lines.append(
        "note: the README's Small rows (66/2.9, 44/2.4, 65/2.0) cannot be reproduced by the "
        "released Small architecture under any counting convention; the code (and the final "
        "paper) give the figures above. MACs count every conv, depthwise, SE 1x1, the head 1x1 "
        "and the logits layer."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mobilenetv3 import list_models

    size = args.image_size
    print(format_table(summary_rows(args.model or list_models(), size), size))
    return 0
