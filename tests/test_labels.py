from __future__ import annotations

from importlib import resources
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


def test_shipped_labels_equal_reference_file(shared: Path) -> None:
    shipped = resources.files("mobilenetv3").joinpath("data", "imagenet_1001.txt").read_bytes()
    assert shipped == (shared / "pretrained" / "labels_1001.txt").read_bytes()
    reference = [
        line.split(":", 1)[1]
        for line in (shared / "pretrained" / "labels_1001.txt").read_text().splitlines()
    ]
    assert imagenet_labels(1001) == reference


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
