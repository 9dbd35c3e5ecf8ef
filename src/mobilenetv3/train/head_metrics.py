"""The real metric of a head model's validation: COCO mAP of a detector, mIoU of a segmenter.

Both are counted as `evaluate --task` counts them (`runtime.evaluate_tasks`: pycocotools'
bbox evaluation on detections in COCO's results format, one confusion matrix over every
labelled pixel), from the raw outputs the validation loss already computed, over every
process's share of the images. Values are percent with two decimals.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mobilenetv3.data.coco import CocoSet
from mobilenetv3.heads.boxes import detections_in_pixels
from mobilenetv3.runtime.evaluate_tasks import coco_metrics, coco_result, confusion, iou_summary
from mobilenetv3.train.distributed import DistInfo, all_reduce_sum, gather_objects

NO_PYCOCOTOOLS = ("pycocotools is not installed (pip install 'mobilenetv3[coco]'): no mAP; "
                  "val_accuracy is the share of matched anchors classified right")  # fmt: skip


class CocoMAP:
    """Detections (post-processed as `SSDLite.forward` does) of the validation images; their
    COCO mAP on the main process."""

    def __init__(self, postprocess: Any, coco: CocoSet) -> None:  # postprocess: SSDLite's
        self.postprocess, self.coco = postprocess, coco
        self.available = importlib.util.find_spec("pycocotools") is not None
        self.found: list[dict] = []
        self.image_ids: list[int] = []

    def add(self, raw: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
        if not self.available:
            return
        out = {k: v.cpu() for k, v in self.postprocess(raw).items()}
        for i, image_id in enumerate(target["image_id"].tolist()):
            height, width = target["size"][i].tolist()
            for found in detections_in_pixels(out, i, height, width):
                if found["class"] in self.coco.names:  # else a class the file has no category of
                    self.found.append(coco_result(image_id, found))
            self.image_ids.append(image_id)

    def result(self, info: DistInfo) -> dict[str, Any]:
        if not self.available:
            return {"val_map": None, "val_note": NO_PYCOCOTOOLS}
        found = [d for part in gather_objects(self.found, info) for d in part]
        image_ids = [i for part in gather_objects(self.image_ids, info) for i in part]
        if not info.is_main:
            return {}
        metrics, _ = coco_metrics(self.coco.dataset, found, image_ids)
        return {"val_map": metrics["AP"], "val_ap50": metrics["AP50"]}


class MeanIoU:
    """One confusion matrix of the validation pixels (255 ignored); the mIoU of its classes."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.matrix = np.zeros((len(names), len(names)), dtype=np.int64)

    def add(self, raw: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        """The prediction at the labels' size as `LRASPP.forward` upsamples (align_corners)."""
        logits = F.interpolate(raw["decoder_logits"].float(), size=labels.shape[-2:],
                               mode="bilinear", align_corners=True)  # fmt: skip
        predicted = logits.argmax(1).cpu().numpy()
        self.matrix += confusion(labels.cpu().numpy(), predicted, len(self.names))

    def result(self, info: DistInfo) -> dict[str, Any]:
        summed = all_reduce_sum(self.matrix.ravel().tolist(), info)
        matrix = np.array(summed, dtype=np.int64).reshape(self.matrix.shape)
        return {"val_miou": iou_summary(matrix, self.names)["miou"]}
