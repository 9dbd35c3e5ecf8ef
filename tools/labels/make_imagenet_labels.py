"""Regenerates `src/mobilenetv3/data/imagenet_1001.txt`, the 1001 class names of slim's ImageNet
convention, from a public synset -> names table.

Source: the WordNet lemmas of every ImageNet synset, one `synset<TAB>names` line each. timm
ships it as `timm/data/_info/imagenet_synset_to_lemma.txt` (PyPI; `pip download timm --no-deps`
gives the wheel, which this script reads directly); TF-slim's own labels come from the same
table in the same format, `research/inception/inception/data/imagenet_metadata.txt` of
tensorflow/models, which this script also takes. The output follows slim's
`datasets/imagenet.py: create_readable_names_for_imagenet_labels` and
`dataset_utils.write_label_file`: 0 is "background", then the 1000 ILSVRC-2012 synsets in
sorted order (`data/imagenet_synsets.txt`) numbered from 1, one `index:names` line each.

    PYTHONPATH=src .venv/bin/python tools/labels/make_imagenet_labels.py \
        timm-1.0.31-py3-none-any.whl
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from mobilenetv3.atomic import atomic_output

PACKAGE_DATA = Path(__file__).resolve().parents[2] / "src" / "mobilenetv3" / "data"
WHEEL_MEMBER = "timm/data/_info/imagenet_synset_to_lemma.txt"


def read_table(path: Path) -> str:
    """The synset -> names table from a timm wheel or a plain text file."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(WHEEL_MEMBER).decode("utf-8")
    return path.read_text(encoding="utf-8")


def labels_1001(table: str, synsets: list[str]) -> str:
    """slim's label file: background, then each synset's names in sorted-synset order."""
    names = dict(line.split("\t", 1) for line in table.splitlines() if line.strip())
    missing = [s for s in synsets if s not in names]
    if len(synsets) != 1000 or missing:
        raise ValueError(f"expected 1000 synsets, all in the table; missing: {missing[:5]}")
    lines = ["background", *(names[s].strip() for s in sorted(synsets))]
    return "".join(f"{i}:{name}\n" for i, name in enumerate(lines))


def main(source: str, output: str = str(PACKAGE_DATA / "imagenet_1001.txt")) -> None:
    synsets = (PACKAGE_DATA / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    text = labels_1001(read_table(Path(source)), synsets)
    with atomic_output(output) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    print(f"wrote {output} ({len(text.splitlines())} labels)")


if __name__ == "__main__":
    main(*sys.argv[1:])
