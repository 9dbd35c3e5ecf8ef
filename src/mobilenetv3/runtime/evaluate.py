"""Accuracy of a model (through any engine) on labelled images: what `evaluate` prints."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mobilenetv3.data.datasets import Batch, ImageDataset, make_loader
from mobilenetv3.data.labels import imagenet_labels
from mobilenetv3.data.preprocess import SLIM_EVAL, Preprocess

Forward = Callable[[torch.Tensor], torch.Tensor | np.ndarray]
T = TypeVar("T")


def model_preprocess(model: nn.Module) -> Preprocess:
    """The preprocessing stored with the weights, else slim's evaluation recipe."""
    info = getattr(model, "pretrained_info", {})
    try:
        return Preprocess.from_dict(info["preprocess"]) if info.get("preprocess") else SLIM_EVAL
    except (ValueError, TypeError, AttributeError) as e:  # metadata of a downloaded file
        source = info.get("source", "the weights")
        raise ValueError(f"{source}: bad preprocessing metadata ({e}); re-convert it") from e


def model_labels(model: nn.Module) -> list[str]:
    """Class names: stored with the weights, else ImageNet's for 1000/1001 classes."""
    stored = getattr(model, "pretrained_info", {}).get("labels")
    if stored:
        return list(stored)
    if model.num_classes in (1000, 1001):
        return imagenet_labels(model.num_classes)
    return [str(i) for i in range(model.num_classes)]


def evaluate(
    forward: Forward,
    samples: Sequence[tuple[Path, int]],
    *,
    preprocess: Preprocess = SLIM_EVAL,
    labels: Sequence[str] | None = None,
    batch_size: int = 50,
    workers: int = 2,
    skip_bad: bool = False,
    progress: bool = True,
    max_pixels: int | None = None,
) -> dict[str, Any]:
    """top-1/top-5 in percent, per-class accuracy and the most frequent confusions."""
    dataset = ImageDataset(samples, preprocess, skip_bad, max_pixels=max_pixels)
    loader = make_loader(dataset, batch_size, workers)
    predictions, targets, skipped = [], [], []

    def step(batch: Batch) -> None:
        skipped.extend({"path": bad.path, "error": bad.error} for bad in batch.skipped)
        if len(batch.labels):
            scores = torch.as_tensor(np.asarray(forward(batch.images)))
            predictions.append(scores.topk(min(5, scores.shape[1]), dim=1).indices)
            targets.append(batch.labels)

    interrupted, seconds = run_steps(loader, step, unit="batch", progress=progress)
    if not predictions:
        raise ValueError("no image could be evaluated (all were skipped as unreadable)")
    result = summarize(torch.cat(predictions), torch.cat(targets), labels, skipped, seconds)
    return result | {"partial": interrupted}


def run_steps(items: Iterable[T], step: Callable[[T], None], *, unit: str,
              progress: bool = True) -> tuple[bool, float]:  # fmt: skip
    """`step` on each item under a progress bar, until done or Ctrl-C: (interrupted, seconds).

    Ctrl-C ends the loop so that the caller reports what was done, marked partial; before the
    first step finished it is re-raised (nothing to report)."""
    start, done = time.perf_counter(), 0
    try:
        for item in tqdm(items, desc="evaluate", unit=unit, disable=not progress):
            step(item)
            done += 1
    except KeyboardInterrupt:
        if not done:
            raise
        return True, time.perf_counter() - start
    return False, time.perf_counter() - start


def summarize(
    top5: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str] | None,
    skipped: list[dict],
    seconds: float,
) -> dict[str, Any]:
    hit1 = top5[:, 0] == targets
    hit5 = (top5 == targets[:, None]).any(1)
    name = (lambda i: labels[i]) if labels else str
    per_class: dict[str, list[int]] = {}
    for target, hit in zip(targets.tolist(), hit1.tolist(), strict=True):
        per_class.setdefault(name(target), []).append(hit)
    confusions = Counter(
        (name(t), name(p)) for t, p in zip(targets.tolist(), top5[:, 0].tolist(), strict=True)
        if t != p
    )
    n = len(targets)
    return {
        "top1": percent(hit1.float().mean().item()),
        "top5": percent(hit5.float().mean().item()),
        "images": n,
        "skipped": skipped,
        "seconds": seconds,
        "images_per_s": n / seconds if seconds else None,
        "per_class_top1": {k: percent(sum(v) / len(v)) for k, v in sorted(per_class.items())},
        "top_confusions": [
            {"true": t, "predicted": p, "count": c} for (t, p), c in confusions.most_common(10)
        ],
        "predictions": top5[:, 0].tolist(),
        "targets": targets.tolist(),
    }


def percent(fraction: float) -> float:
    """Percent rounded to two decimals, the precision every output shows."""
    return round(100.0 * fraction, 2)
