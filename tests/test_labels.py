from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenetv3.data.labels import (
    from_slim_index,
    imagenet_labels,
    synset_to_index,
    synsets,
    to_slim_index,
    top_k,
)


def _generator():
    """tools/labels/make_imagenet_labels.py, which derives the shipped names file."""
    path = Path(__file__).resolve().parents[1] / "tools" / "labels" / "make_imagenet_labels.py"
    spec = importlib.util.spec_from_file_location("make_imagenet_labels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_labels_agree_with_slim_for_every_synset(shared: Path) -> None:
    """The shipped names come from the public WordNet lemma table (timm's copy); slim's file
    comes from the same table (tensorflow/models' imagenet_metadata.txt): all 1001 agree."""
    text = (shared / "pretrained" / "labels_1001.txt").read_text()
    reference = {int(i): name for i, name in (line.split(":", 1) for line in text.splitlines())}
    ours = imagenet_labels(1001)
    differ = [s for s in synsets() if ours[synset_to_index(s)] != reference[synset_to_index(s)]]
    assert len(reference) == 1001 and ours[0] == reference[0] == "background"
    assert differ == []


def test_generator_writes_slims_label_file_format(tmp_path: Path) -> None:
    """Background at 0, the 1000 synsets sorted from 1, whatever the table's order or extras."""
    make = _generator()
    wanted = list(synsets())
    rows = [f"{s}\tname of {s}\n" for s in reversed(wanted)] + ["n00004475\torganism, being\n"]
    text = make.labels_1001("".join(rows), list(reversed(wanted)))
    lines = text.splitlines()
    assert lines[0] == "0:background" and len(lines) == 1001 and text.endswith("\n")
    assert lines[1] == f"1:name of {wanted[0]}" and lines[1000] == f"1000:name of {wanted[-1]}"
    with pytest.raises(ValueError, match=wanted[3]):
        make.labels_1001("".join(rows[:996] + rows[997:]), wanted)


def test_shipped_synsets_equal_sample_folder(shared: Path) -> None:
    names = sorted(p.name.split("_")[0] for p in (shared / "images" / "imagenet-samples").iterdir())
    assert synsets() == names


def test_label_conventions() -> None:
    l1001, l1000 = imagenet_labels(1001), imagenet_labels(1000)
    assert len(l1001) == 1001 and len(l1000) == 1000
    assert l1001[0] == "background" and l1001[1:] == l1000
    assert l1001[1].startswith("tench")
    assert l1000[-1].startswith("toilet tissue")
    with pytest.raises(ValueError):
        imagenet_labels(10)


def test_synsets() -> None:
    s = synsets()
    assert len(s) == 1000 and s == sorted(s) and len(set(s)) == 1000
    assert s[0] == "n01440764"
    assert synset_to_index("n01440764") == 1
    assert synset_to_index("n01440764", 1000) == 0
    assert synset_to_index("n15075141", 1001) == 1000
    with pytest.raises(ValueError, match="n99999999"):
        synset_to_index("n99999999")


def test_index_mapping() -> None:
    assert to_slim_index(0) == 1 and to_slim_index(999) == 1000
    assert from_slim_index(1) == 0 and from_slim_index(1000) == 999
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            from_slim_index(bad)
    with pytest.raises(ValueError):
        to_slim_index(1000)
    l1001, l1000 = imagenet_labels(1001), imagenet_labels(1000)
    assert all(l1001[to_slim_index(i)] == l1000[i] for i in range(1000))


def test_top_k_skips_background() -> None:
    p = np.zeros(1001)
    p[0], p[5], p[7], p[3] = 0.9, 0.05, 0.04, 0.01
    got = top_k(p, 2)
    assert [i for i, _, _ in got] == [5, 7]
    assert got[0][1] == imagenet_labels()[5] and got[0][2] == pytest.approx(0.05)
    assert top_k(p, 1, include_background=True)[0][:2] == (0, "background")
    # 1000-class scores: index 0 is tench, a real class
    q = torch.zeros(1, 1000)
    q[0, 0] = 1.0
    assert top_k(q, 1)[0][:2] == (0, imagenet_labels(1000)[0])
    assert top_k([0.1, 0.7, 0.2], 2, labels=["a", "b", "c"]) == [(1, "b", 0.7), (2, "c", 0.2)]
    assert top_k([0.1, 0.7], 5)[1][1] == "0"  # custom class count: index names
    with pytest.raises(ValueError):
        top_k(np.zeros((2, 1001)))
    with pytest.raises(ValueError):
        top_k([0.1, 0.2], labels=["a"])
