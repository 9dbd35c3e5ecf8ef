"""TF's FasterRcnnBoxCoder (encode for training targets, decode for detections), IoU, and the
per-class non-maximum suppression of TF Object Detection's `batch_multiclass_non_max_suppression`.
"""

from __future__ import annotations

import torch


def decode(codes: torch.Tensor, anchors: torch.Tensor,
           scales: tuple[float, float, float, float]) -> torch.Tensor:  # fmt: skip
    """[N, A, 4] codes (ty, tx, th, tw) on [A, 4] anchors -> [N, A, 4] (ymin, xmin, ymax, xmax),
    in the anchors' (normalized) units, with TF's float32 order of operations."""
    ymin, xmin, ymax, xmax = anchors.unbind(-1)
    height_a, width_a = ymax - ymin, xmax - xmin
    y_a, x_a = ymin + height_a / 2.0, xmin + width_a / 2.0
    ty, tx, th, tw = (code / scale for code, scale in zip(codes.unbind(-1), scales, strict=True))
    width, height = torch.exp(tw) * width_a, torch.exp(th) * height_a
    y, x = ty * height_a + y_a, tx * width_a + x_a
    return torch.stack([y - height / 2.0, x - width / 2.0, y + height / 2.0, x + width / 2.0], -1)


# TF's box coder adds this to every height and width before dividing and taking logs
_EPSILON = 1e-8


def encode(boxes: torch.Tensor, anchors: torch.Tensor,
           scales: tuple[float, float, float, float]) -> torch.Tensor:  # fmt: skip
    """[..., A, 4] (ymin, xmin, ymax, xmax) boxes on [A, 4] anchors -> codes (ty, tx, th, tw):
    the inverse of `decode`, as TF's `FasterRcnnBoxCoder._encode` (sizes + 1e-8)."""
    y_a, x_a, height_a, width_a = _centers_and_sizes(anchors)
    y, x, height, width = _centers_and_sizes(boxes)
    height_a, width_a = height_a + _EPSILON, width_a + _EPSILON
    height, width = height + _EPSILON, width + _EPSILON
    codes = ((y - y_a) / height_a, (x - x_a) / width_a, torch.log(height / height_a),
             torch.log(width / width_a))  # fmt: skip
    return torch.stack([code * scale for code, scale in zip(codes, scales, strict=True)], -1)


def _centers_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """TF's `BoxList.get_center_coordinates_and_sizes`: (y, x, height, width)."""
    ymin, xmin, ymax, xmax = boxes.unbind(-1)
    height, width = ymax - ymin, xmax - xmin
    return ymin + height / 2.0, xmin + width / 2.0, height, width


def pairwise_iou(boxes: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """[A, 4] and [B, 4] corner boxes (B = A: `boxes` with themselves) -> [A, B] intersection
    over union (0 where there is no intersection, as TF's `box_list_ops.iou`)."""
    others = boxes if others is None else others
    ymin, xmin, ymax, xmax = boxes.unbind(-1)
    oymin, oxmin, oymax, oxmax = others.unbind(-1)
    area = (ymax - ymin).clamp(min=0) * (xmax - xmin).clamp(min=0)
    other_area = (oymax - oymin).clamp(min=0) * (oxmax - oxmin).clamp(min=0)
    inter_h = (torch.minimum(ymax[:, None], oymax) - torch.maximum(ymin[:, None], oymin)).clamp(
        min=0)  # fmt: skip
    inter_w = (torch.minimum(xmax[:, None], oxmax) - torch.maximum(xmin[:, None], oxmin)).clamp(
        min=0)  # fmt: skip
    inter = inter_h * inter_w
    union = area[:, None] + other_area - inter
    return torch.where(inter > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def detections_in_pixels(out: dict[str, torch.Tensor], index: int, height: int,
                         width: int) -> list[dict]:  # fmt: skip
    """Image `index`'s detections in `SSDLite.forward`'s output, best first: 1-based "class",
    "score" and "box" (xmin, ymin, xmax, ymax) in the pixels of a height x width image."""
    scale = torch.tensor([height, width] * 2, dtype=torch.float32)
    found = []
    for j in range(int(out["num_detections"][index])):
        ymin, xmin, ymax, xmax = (out["detection_boxes"][index, j] * scale).tolist()
        found.append({"class": int(out["detection_classes"][index, j]),
                      "score": float(out["detection_scores"][index, j]),
                      "box": [xmin, ymin, xmax, ymax]})  # fmt: skip
    return found


def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, *, score_threshold: float,
                   iou_threshold: float, max_per_class: int, max_total: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Greedy NMS per class on boxes shared by all classes; the survivors clipped to the image
    [0, 1] (TF's clip window of an unpadded input, dropping boxes left without area); the best
    `max_total` of them.

    boxes [A, 4], scores [A, C] -> (boxes [K, 4], scores [K], classes [K], 0-based), K <=
    max_total, by descending score. All classes advance together: step t selects each class's
    t-th box, so the loop runs `max_per_class` times whatever the class count.
    """
    iou = pairwise_iou(boxes)
    live = scores.t().clone()  # [C, A]
    live[live <= score_threshold] = float("-inf")
    picked_box, picked_score = [], []
    for _ in range(min(max_per_class, boxes.shape[0])):
        best_score, best = live.max(dim=1)
        if not torch.isfinite(best_score).any():
            break
        picked_box.append(torch.where(torch.isfinite(best_score), best, -1))
        picked_score.append(best_score)
        suppressed = iou[best] > iou_threshold  # [C, A]
        live.masked_fill_(suppressed, float("-inf"))
        live.scatter_(1, best[:, None], float("-inf"))
    if not picked_box:
        empty = boxes.new_zeros((0,))
        return boxes.new_zeros((0, 4)), empty, empty.long()
    index, score = torch.stack(picked_box, 1), torch.stack(picked_score, 1)  # [C, T]
    classes = torch.arange(scores.shape[1], device=scores.device)[:, None].expand_as(index)
    keep = index >= 0
    kept, score, classes = boxes[index[keep]].clamp(0.0, 1.0), score[keep], classes[keep]
    ymin, xmin, ymax, xmax = kept.unbind(-1)
    inside = (ymax - ymin) * (xmax - xmin) != 0
    kept, score, classes = kept[inside], score[inside], classes[inside]
    order = torch.argsort(score, descending=True, stable=True)[:max_total]
    return kept[order], score[order], classes[order]
