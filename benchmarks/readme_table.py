"""Fill the README's table of official checkpoints: MACs, params, published top-1, and top-1
measured by this project on the 1000 sample photos wherever the weights are on this machine.

    python benchmarks/readme_table.py [--weights-dir DIR ...] [--no-write]

Looks for each release file (e.g. v3-large_224_1.0_float.tgz, or the 8-bit .tflite files in
../shared/pretrained) in the given folders and the download cache; rows whose weights are
absent say so instead of showing a number.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from _common import RESULTS, shared_dir, write_json

from mobilenetv3 import count_macs, count_params, create_model
from mobilenetv3.commands.summary import README_TABLE
from mobilenetv3.data.datasets import list_samples
from mobilenetv3.runtime.engines import make_runner
from mobilenetv3.runtime.evaluate import evaluate, model_preprocess
from mobilenetv3.weights.hub import RELEASES, cache_dir

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- official-table:start -->", "<!-- official-table:end -->"
# The 8-bit releases (published top-1 from the seed README's 8-bit table, via shared/README.md).
UINT8 = {
    "v3_small_1.0": ("v3-small_224_1.0_uint8.tflite", 64.9),
    "v3_large_minimalistic_1.0": ("v3-large-minimalistic_224_1.0_uint8.tflite", 71.3),
}


def find(filename: str, folders: list[Path]) -> Path | None:
    return next((f / filename for f in folders if (f / filename).is_file()), None)


def measure(weights: Path, samples: list, engine: str) -> float:
    model = create_model(weights=weights, dequantize=True)  # the official files, as float
    preprocess = model_preprocess(model)
    source = weights if engine == "litert" else model
    runner = make_runner(engine, source, threads=1, batch_size=50, image_size=preprocess.image_size)
    result = evaluate(lambda x: runner(x.numpy()), samples, preprocess=preprocess, progress=False)
    return result["top1"]


def rows(folders: list[Path], samples: list) -> list[dict]:
    out = []
    releases = [(n, f, README_TABLE[n][2], "float") for n, (f, _) in RELEASES.items()]
    releases += [(n, f, top1, "uint8") for n, (f, top1) in UINT8.items()]
    for name, filename, published, kind in releases:
        model = create_model(name)
        weights = find(filename, folders)
        measured = measure(weights, samples, "torch") if weights else None
        row = {"model": name, "file": filename, "kind": kind, "macs_m": count_macs(model) / 1e6,
               "params_m": count_params(model) / 1e6, "published_top1": published,
               "top1": measured}  # fmt: skip
        if weights and kind == "uint8":
            row["litert_top1"] = measure(weights, samples, "litert")
        out.append(row)
        print(row)
    return out


def markdown(table: list[dict]) -> str:
    lines = [
        "| checkpoint | MACs (M) | params (M) | published top-1 | top-1 here (float path) "
        "| top-1 here (LiteRT) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table:
        measured = f"{r['top1']:.1f}" if r['top1'] is not None else "not here"
        litert = f"{r['litert_top1']:.1f}" if "litert_top1" in r else ""
        lines.append(f"| `{r['file']}` | {r['macs_m']:.1f} | {r['params_m']:.2f} | "
                     f"{r['published_top1']:.1f} | {measured} | {litert} |")  # fmt: skip
    lines.append("")
    lines.append("Published top-1 is on the 50,000-image validation set; *here* means the 1000 "
                 "sample photos (one per class, easier), slim evaluation preprocessing (TF2 "
                 "bilinear). Written by `benchmarks/readme_table.py`.")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, action="append", default=[])
    parser.add_argument("--no-write", action="store_true", help="print, leave README.md as is")
    args = parser.parse_args()
    shared = shared_dir()
    folders = [*args.weights_dir, cache_dir()] + ([shared / "pretrained"] if shared else [])
    samples = list_samples(shared / "images" / "imagenet-samples") if shared else []
    table = rows(folders, samples)
    text = markdown(table)
    print(text)
    write_json(RESULTS / "readme_table.json", table)
    if not args.no_write:
        readme = README.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        README.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", readme))
        print(f"updated {README}")


if __name__ == "__main__":
    main()
