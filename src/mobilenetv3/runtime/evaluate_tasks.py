"""COCO mAP of a detector and Cityscapes mIoU of a segmenter: what `evaluate --task` prints.

Each takes the per-image function of its command (`detect`, `segment`), so evaluation sees the
same preprocessing, boxes and masks a user sees; the loop, its progress bar and Ctrl-C (the
images done so far, marked partial) are classification's `run_steps`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.data.cityscapes import IGNORE, TRAIN_NAMES, read_train_ids
from mobilenetv3.data.coco import CocoSet
from mobilenetv3.data.datasets import DatasetError
from mobilenetv3.data.images import ImageError
from mobilenetv3.runtime.evaluate import percent, run_steps

Detect = Callable[[Path], list[dict]]  # {"class", "score", "box": [xmin, ymin, xmax, ymax] px}
Segment = Callable[[Path], np.ndarray]  # [H, W] train ids at the image's size
# COCOeval.stats in its order: AP at IoU .50:.95 (the COCO mAP), .50, .75, by area; AR at 1,
# 10, 100 detections per image, by area
COCO_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")  # fmt: skip


def evaluate_detection(detect: Detect, coco: CocoSet, *, skip_bad: bool = False,
                       progress: bool = True) -> tuple[dict[str, Any], list[dict]]:  # fmt: skip
    """(result, detections in COCO's results format) over `coco.images`; detections of classes
    that are no category of the file (COCO's 10 unused ids) are dropped."""
    detections: list[dict] = []
    done: list[int] = []
    skipped: list[dict] = []

    def step(item: tuple[int, Path]) -> None:
        image_id, path = item
        found = _guarded(detect, path, skip_bad, skipped)
        if found is not None:
            done.append(image_id)
            detections.extend(coco_result(image_id, d) for d in found if d["class"] in coco.names)

    interrupted, seconds = run_steps(coco.images, step, unit="image", progress=progress)
    metrics, per_category = coco_metrics(coco.dataset, detections, _some(done))
    result = {"task": "detection", "metrics": metrics,
              "per_category_ap": {coco.names[k]: v for k, v in per_category.items()},
              "detections": len(detections)}  # fmt: skip
    return result | _counts(len(done), skipped, seconds, interrupted), detections


def coco_result(image_id: int, found: dict) -> dict:
    """One detection as COCO's results format: bbox [x, y, width, height] in pixels."""
    xmin, ymin, xmax, ymax = found["box"]
    box = [xmin, ymin, xmax - xmin, ymax - ymin]
    return {"image_id": image_id, "category_id": found["class"],
            "bbox": [round(v, 2) for v in box], "score": found["score"]}  # fmt: skip


Scores = dict[Any, float | None]


def coco_metrics(dataset: dict, detections: list[dict],
                 image_ids: Sequence[int]) -> tuple[Scores, Scores]:  # fmt: skip
    """pycocotools' bbox evaluation on `image_ids`: the 12 COCO metrics and AP per category, in
    percent (None where the file has no box of that kind). The detections are indexed as
    `COCO.loadRes` indexes them (area w*h, iscrowd 0), which fails on an empty list."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ValueError("COCO mAP needs pycocotools: pip install 'mobilenetv3[coco]'") from None
    found = [d | {"id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
             for i, d in enumerate(detections, 1)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        truth, results = COCO(), COCO()
        truth.dataset = dataset
        results.dataset = {k: dataset[k] for k in ("images", "categories")} | {"annotations": found}
        truth.createIndex()
        results.createIndex()
        evaluation = COCOeval(truth, results, "bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU, recall, category, area, max detections]
    per_category = {}
    for k, category in enumerate(evaluation.params.catIds):
        values = precision[:, :, k, 0, -1]
        per_category[category] = _share(values[values > -1].mean() if (values > -1).any() else -1)
    return dict(zip(COCO_METRICS, map(_share, evaluation.stats), strict=True)), per_category


def evaluate_segmentation(segment: Segment, pairs: Sequence[tuple[Path, Path]], *,
                          train_ids: bool = False, skip_bad: bool = False,
                          progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """mIoU over Cityscapes' 19 train ids, from one confusion matrix over every pixel of every
    image (pixels whose truth is 255 ignored), as cityscapesScripts and DeepLab count."""
    matrix = np.zeros((len(TRAIN_NAMES), len(TRAIN_NAMES)), dtype=np.int64)
    done: list[Path] = []
    skipped: list[dict] = []

    def step(pair: tuple[Path, Path]) -> None:
        image, mask = pair
        predicted = _guarded(segment, image, skip_bad, skipped)
        if predicted is None:
            return
        truth = read_train_ids(mask, train_ids)
        if truth.shape != predicted.shape:
            (h, w), (image_h, image_w) = truth.shape, predicted.shape
            raise DatasetError(f"{mask}: the mask is {w}x{h} pixels, its image {image} "
                               f"{image_w}x{image_h}")  # fmt: skip
        matrix[...] += confusion(truth, predicted, len(TRAIN_NAMES))
        done.append(image)

    interrupted, seconds = run_steps(pairs, step, unit="image", progress=progress)
    _some(done)
    result = {"task": "segmentation", **iou_summary(matrix, TRAIN_NAMES)}
    return result | _counts(len(done), skipped, seconds, interrupted)


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """[truth, predicted] pixel counts; pixels whose truth is `IGNORE` are not counted."""
    keep = truth != IGNORE
    pairs = truth[keep].astype(np.int64) * classes + predicted[keep]
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def iou_summary(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """IoU = TP / (TP + FP + FN) per class; mIoU averages the classes that occur in the truth or
    the predictions (a class in neither has no IoU: None)."""
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    iou = [float(h / u) if u else None for h, u in zip(hits, union, strict=True)]
    present = [v for v in iou if v is not None]
    return {
        "miou": percent(sum(present) / len(present)) if present else None,
        "pixel_accuracy": percent(hits.sum() / matrix.sum()) if matrix.sum() else None,
        "per_class_iou": {
            name: None if v is None else percent(v) for name, v in zip(names, iou, strict=True)
        },
        "pixels": int(matrix.sum()),
    }


def _guarded(run: Callable[[Path], Any], path: Path, skip_bad: bool, skipped: list[dict]) -> Any:
    """`run(path)`, or None (the image recorded in `skipped`) for an undecodable image."""
    try:
        return run(path)
    except ImageError as e:
        if not skip_bad:
            raise
        skipped.append({"path": str(path), "error": str(e)})
        return None


def _some(done: list) -> list:
    if not done:
        raise ValueError("no image could be evaluated (all were skipped as unreadable)")
    return done


def _share(fraction: float) -> float | None:
    """pycocotools' fraction in percent; its -1 (nothing to measure) is None."""
    return None if fraction < 0 else percent(float(fraction))


def _counts(images: int, skipped: list[dict], seconds: float, interrupted: bool) -> dict:
    return {"images": images, "skipped": skipped, "seconds": seconds,
            "images_per_s": images / seconds if seconds else None,
            "partial": interrupted}  # fmt: skip
