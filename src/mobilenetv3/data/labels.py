"""ImageNet class names and synset ids, in both index conventions.

Two conventions exist and both occur in released files:
- 1001 classes (TF-slim, the official MobileNet checkpoints and .tflite files): index 0 is
  "background", the ImageNet classes follow in sorted-synset order.
- 1000 classes (torchvision, timm): the same classes without background.
So `slim_index = index_1000 + 1` (`to_slim_index` / `from_slim_index`).

The names (`data/imagenet_1001.txt`, lines `i:name`; derived from the public WordNet lemma
table by `tools/labels/make_imagenet_labels.py`) and the 1000 sorted WordNet ids
(`data/imagenet_synsets.txt`) ship with the package; class index = position in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

__all__ = [
    "BACKGROUND",
    "from_slim_index",
    "imagenet_labels",
    "synset_to_index",
    "synsets",
    "to_slim_index",
    "top_k",
]

BACKGROUND = "background"


def _read_data(name: str) -> str:
    return resources.files("mobilenetv3").joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _labels_1001() -> tuple[str, ...]:
    names = []
    for i, line in enumerate(_read_data("imagenet_1001.txt").splitlines()):
        idx, _, name = line.partition(":")
        if int(idx) != i:
            raise RuntimeError(f"imagenet_1001.txt: line {i + 1} has index {idx}")
        names.append(name)
    return tuple(names)


@lru_cache(maxsize=1)
def _synsets() -> tuple[str, ...]:
    return tuple(line.strip() for line in _read_data("imagenet_synsets.txt").splitlines())


@lru_cache(maxsize=1)
def _synset_pos() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(_synsets())}


def _check_num_classes(num_classes: int) -> None:
    if num_classes not in (1000, 1001):
        raise ValueError(f"ImageNet labels exist for 1000 or 1001 classes, not {num_classes}")


def imagenet_labels(num_classes: int = 1001) -> list[str]:
    """Class names: 1001 with index 0 "background" (slim), or the 1000 without it."""
    _check_num_classes(num_classes)
    names = _labels_1001()
    return list(names if num_classes == 1001 else names[1:])


def synsets() -> list[str]:
    """The 1000 ImageNet WordNet ids, sorted (= 1000-class index order)."""
    return list(_synsets())


def synset_to_index(wnid: str, num_classes: int = 1001) -> int:
    """Class index of a WordNet id in the 1001 (slim, +1) or 1000 convention."""
    _check_num_classes(num_classes)
    pos = _synset_pos().get(wnid)
    if pos is None:
        raise ValueError(f"unknown ImageNet synset {wnid!r} (not one of the 1000 ImageNet-1k ids)")
    return pos + 1 if num_classes == 1001 else pos


def to_slim_index(index_1000: int) -> int:
    """1000-class index -> 1001-class (slim) index: +1, as 0 is background there."""
    if not 0 <= index_1000 < 1000:
        raise ValueError(f"1000-class index out of range: {index_1000}")
    return index_1000 + 1


def from_slim_index(slim_index: int) -> int:
    """1001-class (slim) index -> 1000-class index; background (0) has none."""
    if not 1 <= slim_index <= 1000:
        raise ValueError(f"slim index {slim_index} has no 1000-class equivalent (0 = background)")
    return slim_index - 1


def top_k(
    probabilities: torch.Tensor | np.ndarray | Sequence[float],
    k: int = 5,
    labels: Sequence[str] | None = None,
    include_background: bool = False,
) -> list[tuple[int, str, float]]:
    """The k best classes of one score vector as (index, name, score), best first.

    With 1001 scores, index 0 is background and is never returned unless
    `include_background`. Labels default to the ImageNet names for 1000/1001 scores and
    to the index as text otherwise. Works on probabilities or logits (order is the same).
    """
    if isinstance(probabilities, torch.Tensor):
        scores = probabilities.detach().to(torch.float64).cpu().numpy()
    else:
        scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim != 1:
        raise ValueError(f"top_k takes one score vector, got shape {scores.shape}")
    n = scores.shape[0]
    if labels is None:
        labels = imagenet_labels(n) if n in (1000, 1001) else [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} scores")
    candidates = np.arange(n)
    if n == 1001 and not include_background:
        candidates = candidates[1:]
    # stable sort on -score: ties keep the lower index first
    order = candidates[np.argsort(-scores[candidates], kind="stable")][: max(k, 0)]
    return [(int(i), labels[i], float(scores[i])) for i in order]
