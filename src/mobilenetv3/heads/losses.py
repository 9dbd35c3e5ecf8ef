"""Training losses of the heads, as TF defines them.

SSDLite (TF Object Detection's `ssd` meta-architecture with the zoo configs'
`ssdlite_mobilenet_v3_{large,small}_320x320_coco.config`): every anchor is matched to a
groundtruth box by IoU (`ArgMaxMatcher`), matched anchors regress the box's code
(`FasterRcnnBoxCoder`, scales 10, 10, 5, 5) with a smooth L1 loss, every anchor classifies
with a sigmoid focal loss over background + classes (background encoded as zeros), and both are
normalized by the number of matched anchors (the localization loss also by the code size 4).
LR-ASPP (DeepLab's `train.py`): softmax cross-entropy on logits upsampled to the label size,
averaged over the pixels whose label is not the ignore label.

Each loss returns `LossTerms`: a sum and what it is divided by. The trainer sums the divisor
over processes, so N processes compute the loss of one process with N times the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mobilenetv3.heads import boxes

UNMATCHED, IGNORED = -1, -2  # ArgMaxMatcher's codes for anchors without a box


@dataclass(frozen=True)
class SSDLoss:
    """The configs' `matcher`, `loss` and normalization (no hard example miner: focal loss)."""

    matched_threshold: float = 0.5
    unmatched_threshold: float = 0.5
    force_match_for_each_row: bool = True
    focal_alpha: float = 0.75  # weighted_sigmoid_focal
    focal_gamma: float = 2.0
    smooth_l1_delta: float = 1.0  # weighted_smooth_l1
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    code_size: int = 4  # normalize_loc_loss_by_codesize (normalize_loss_by_num_matches: always)


@dataclass
class LossTerms:
    """`total / normalizer` is the loss; `correct / count` the accuracy shown with it."""

    total: torch.Tensor
    normalizer: float
    correct: float
    count: float


def argmax_match(similarity: torch.Tensor, loss: SSDLoss) -> torch.Tensor:
    """[G, A] IoU of G boxes with A anchors -> [A] the matched box per anchor, or UNMATCHED
    (best IoU below unmatched_threshold) or IGNORED (between the thresholds), as TF's
    `ArgMaxMatcher._match` (negatives_lower_than_unmatched); with force_match_for_each_row
    each box also takes its best anchor (ties: the first anchor, the first box)."""
    anchors = similarity.shape[1]
    if similarity.shape[0] == 0:
        return torch.full((anchors,), UNMATCHED, dtype=torch.long, device=similarity.device)
    best, matches = similarity.max(0)
    matches = torch.where(best < loss.unmatched_threshold, UNMATCHED, matches)
    between = (best >= loss.unmatched_threshold) & (best < loss.matched_threshold)
    matches = torch.where(between, IGNORED, matches)
    if not loss.force_match_for_each_row:
        return matches
    forced = F.one_hot(similarity.argmax(1), anchors)  # [G, A]: each box's best anchor
    return torch.where(forced.amax(0) > 0, forced.argmax(0), matches)


def assign_targets(anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_classes: torch.Tensor,
                   num_classes: int, scales: tuple[float, float, float, float],
                   loss: SSDLoss) -> dict[str, torch.Tensor]:  # fmt: skip
    """TF's `TargetAssigner.assign` for one image. gt_boxes [M, 4] normalized corners,
    gt_classes [M] 1-based (0: padding, dropped). Returns `classes` [A, num_classes + 1]
    one-hot (all zero for background: encode_background_as_zeros), `class_weights` [A] (0 for
    ignored anchors), `codes` [A, 4] (0 where unmatched) and `matched` [A] bool."""
    keep = gt_classes > 0
    gt_boxes, gt_classes = gt_boxes[keep], gt_classes[keep].long()
    match = argmax_match(boxes.pairwise_iou(gt_boxes, anchors), loss)
    matched = match >= 0
    # unmatched anchors gather an extra all-zero box of class 0, then their targets are zeroed
    index = torch.where(matched, match, len(gt_boxes))
    padded_boxes = torch.cat([gt_boxes, gt_boxes.new_zeros(1, 4)])
    codes = boxes.encode(padded_boxes[index], anchors, scales)
    classes = F.one_hot(F.pad(gt_classes, (0, 1))[index], num_classes + 1).to(anchors.dtype)
    return {
        "classes": classes * matched[:, None],
        "class_weights": (match != IGNORED).to(anchors.dtype),
        "codes": codes * matched[:, None],
        "matched": matched,
    }


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float,
                       gamma: float) -> torch.Tensor:  # fmt: skip
    """Per entry, as TF's `SigmoidFocalClassificationLoss`:
    (1 - p_t)^gamma * (t alpha + (1 - t)(1 - alpha)) * sigmoid_cross_entropy."""
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = targets * p + (1 - targets) * (1 - p)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    return (1 - p_t).pow(gamma) * alpha_t * cross_entropy


def smooth_l1(prediction: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Per entry, TF's `huber_loss`: 0.5 x^2 where |x| <= delta, else delta (|x| - delta / 2)."""
    error = (prediction - target).abs()
    return torch.where(error <= delta, 0.5 * error**2, delta * (error - 0.5 * delta))


def ssd_loss(raw: dict[str, torch.Tensor], gt_boxes: torch.Tensor, gt_classes: torch.Tensor,
             scales: tuple[float, float, float, float], loss: SSDLoss) -> LossTerms:  # fmt: skip
    """The SSD loss of a batch: `raw` is `SSDLite.forward_raw`'s output, gt_boxes [N, M, 4],
    gt_classes [N, M] (1-based, 0 = padding). Accuracy: matched anchors whose best class
    logit is their box's class."""
    logits, codes = raw["class_logits"], raw["box_encodings"]
    per_image = [assign_targets(raw["anchors"], b, c, logits.shape[-1] - 1, scales, loss)
                 for b, c in zip(gt_boxes, gt_classes, strict=True)]  # fmt: skip
    target = {key: torch.stack([t[key] for t in per_image]) for key in per_image[0]}
    matched = target["matched"]
    focal = sigmoid_focal_loss(logits, target["classes"], loss.focal_alpha, loss.focal_gamma)
    classification = (focal * target["class_weights"][..., None]).sum()
    location = smooth_l1(codes, target["codes"], loss.smooth_l1_delta).sum(-1)
    localization = (location * matched).sum()
    total = (loss.localization_weight / loss.code_size * localization
             + loss.classification_weight * classification)  # fmt: skip
    right = logits[..., 1:].argmax(-1) + 1 == target["classes"].argmax(-1)
    matches = float(matched.sum())
    return LossTerms(total, matches, float((right & matched).sum()), matches)


def segmentation_loss(decoder_logits: torch.Tensor, labels: torch.Tensor,
                      ignore_label: int) -> LossTerms:  # fmt: skip
    """Softmax cross-entropy of [N, C, h, w] logits, upsampled (bilinear, align_corners, as
    DeepLab) to the [N, H, W] labels; pixels labelled `ignore_label` count for nothing.
    Accuracy: the labelled pixels' argmax."""
    logits = F.interpolate(decoder_logits, size=labels.shape[-2:], mode="bilinear",
                           align_corners=True)  # fmt: skip
    labels = labels.long()
    total = F.cross_entropy(logits, labels, ignore_index=ignore_label, reduction="sum")
    labelled = labels != ignore_label
    correct = ((logits.argmax(1) == labels) & labelled).sum()
    count = float(labelled.sum())
    return LossTerms(total, count, float(correct), count)
