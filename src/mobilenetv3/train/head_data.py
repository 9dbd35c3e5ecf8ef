"""Real training data for the heads: COCO boxes for SSDLite, image/mask folders for LR-ASPP.

The files are read and checked by `data.coco.read_coco` and `data.cityscapes.pair_masks` /
`read_train_ids` (what `evaluate --task` reads); this module turns them into training items
augmented as the original trainers do:

- detection (the zoo configs): TF1 bilinear resize to the fixed square input
  (`fixed_shape_resizer`) and `random_horizontal_flip`;
- segmentation (DeepLab's `input_preprocess`): a random scale in `scale_range` (steps of 0.25),
  padding to the crop (image with the mean pixel, labels with 255), a random crop and a random
  left-right flip; validation images are whole, padded to the largest one (DeepLab's eval pad).

Every draw comes from `sample_rng(seed, epoch, index)`, as classification's augmentation does,
so a sample is augmented alike in any process, worker or resumed run. Images are in [-1, 1]
(TF's (2 / 255) x - 1; the mean pixel 127.5 is 0).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from mobilenetv3.data.cityscapes import IGNORE, read_train_ids
from mobilenetv3.data.coco import CocoSet
from mobilenetv3.data.datasets import DatasetError, sample_rng
from mobilenetv3.data.images import load_image
from mobilenetv3.data.preprocess import to_model_range
from mobilenetv3.data.resize import tf_resize_bilinear_hwc
from mobilenetv3.train.synthetic import MAX_BOXES, padded_boxes

SCALE_STEP = 0.25  # DeepLab's scale_factor_step_size


def coco_boxes(coco: CocoSet) -> dict[int, np.ndarray]:
    """Per image id, [K, 5] rows (class, ymin, xmin, ymax, xmax normalized): the file's boxes
    without crowd regions (COCO's evaluation ignores them) and without empty boxes (TF's
    create_coco_tf_record skips those), at most MAX_BOXES (the configs' max_number_of_boxes)."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in coco.dataset["images"]}
    rows: dict[int, list] = {image_id: [] for image_id in sizes}
    for ann in coco.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        if ann["iscrowd"] or w <= 0 or h <= 0:
            continue
        height, width = sizes[ann["image_id"]]
        box = np.clip([y / height, x / width, (y + h) / height, (x + w) / width], 0.0, 1.0)
        rows[ann["image_id"]].append([ann["category_id"], *box])
    return {k: np.array(v[:MAX_BOXES], np.float32).reshape(-1, 5) for k, v in rows.items()}


class CocoDetection(Dataset):
    """Items (image [3, S, S], {"boxes" [MAX_BOXES, 4], "classes" [MAX_BOXES] (0: padding),
    "image_id", "size" (height, width)}, index), as `SyntheticShapes` gives them."""

    def __init__(self, coco: CocoSet, size: int, seed: int, flip: bool) -> None:
        self.coco, self.size, self.seed, self.flip, self.epoch = coco, size, seed, flip, 0
        self.boxes = coco_boxes(coco)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.coco.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict, int]:
        image_id, path = self.coco.images[index]
        image = np.asarray(load_image(path))
        resized = tf_resize_bilinear_hwc(image, (self.size, self.size), half_pixel=False)
        found = self.boxes[image_id].copy()
        x = to_model_range(resized)
        if self.flip and sample_rng(self.seed, self.epoch, index).random() < 0.5:
            x = x.flip(-1)
            found[:, [2, 4]] = 1 - found[:, [4, 2]]
        target = padded_boxes(found) | {"image_id": image_id, "size": torch.tensor(image.shape[:2])}
        return x, target, index


def draw_scale(rng: random.Random, scale_range: tuple[float, float]) -> float:
    """DeepLab's random scale: one of the steps of 0.25 from low to high."""
    low, high = scale_range
    return low + SCALE_STEP * rng.randrange(int(round((high - low) / SCALE_STEP)) + 1)


def _window(size: int, scaled: int, start: int, count: int) -> tuple[np.ndarray, ...]:
    """For the positions start.. (at most count, within `scaled`) of an axis resized from
    `size` to `scaled` with align_corners (source = position (size - 1) / (scaled - 1)): the
    bilinear neighbours and weight, and the nearest source (TF: round half up)."""
    source = np.arange(start, min(start + count, scaled)) * ((size - 1) / max(scaled - 1, 1))
    low = np.floor(source).astype(np.int64)
    nearest = np.minimum(np.floor(source + 0.5).astype(np.int64), size - 1)
    return low, np.minimum(low + 1, size - 1), (source - low).astype(np.float32), nearest


def scaled_crop(pixels: np.ndarray, labels: np.ndarray, scale: float, crop: int,
                rng: random.Random) -> tuple[torch.Tensor, np.ndarray]:  # fmt: skip
    """DeepLab's training crop: the image scaled by `scale` (pixels bilinear, labels nearest,
    align_corners), padded at the bottom/right to at least crop x crop (pixels with the mean,
    labels 255), a crop x crop window at a random place. Only the window is interpolated."""
    scaled = [int(n * scale) for n in labels.shape]
    top, left = (rng.randint(0, max(n, crop) - crop) for n in scaled)
    starts = (top, left)
    (r0, r1, wr, near_r), (c0, c1, wc, near_c) = (
        _window(labels.shape[axis], scaled[axis], starts[axis], crop) for axis in range(2))

    def corners(rows: np.ndarray) -> np.ndarray:  # the window's rows, bilinear along x
        left_of, right_of = (pixels[rows][:, c].astype(np.float32) for c in (c0, c1))
        return left_of + (right_of - left_of) * wc[None, :, None]

    upper, lower = corners(r0), corners(r1)
    x = torch.zeros(3, crop, crop)
    x[:, : len(near_r), : len(near_c)] = to_model_range(upper + (lower - upper) * wr[:, None, None])
    cropped = np.full((crop, crop), IGNORE, np.uint8)
    cropped[: len(near_r), : len(near_c)] = labels[near_r[:, None], near_c[None, :]]
    return x, cropped


def pad_to(x: torch.Tensor, labels: np.ndarray,
           size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:  # fmt: skip
    """Bottom/right padding to at least `size`: the image with 0 (the mean pixel), labels 255."""
    height, width = max(size[0], labels.shape[0]), max(size[1], labels.shape[1])
    bottom, right = height - labels.shape[0], width - labels.shape[1]
    x = F.pad(x, (0, right, 0, bottom), value=0.0)
    return x, np.pad(labels, ((0, bottom), (0, right)), constant_values=IGNORE)


class MaskFolder(Dataset):
    """Items (image [3, H, W], train ids [H, W] (255 ignored), index) of (image, mask) pairs:
    with `crop`, DeepLab's training crops of crop x crop; without, whole images padded to the
    largest of the set."""

    def __init__(self, pairs: list[tuple[Path, Path]], train_ids: bool, seed: int,
                 crop: int | None = None, scale_range: tuple[float, float] = (1.0, 1.0),
                 flip: bool = False) -> None:  # fmt: skip
        self.pairs, self.train_ids, self.seed, self.epoch = pairs, train_ids, seed, 0
        self.crop, self.scale_range, self.flip = crop, scale_range, flip
        self.pad = None if crop else _largest(pairs)  # validation: one size for batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image_path, mask_path = self.pairs[index]
        pixels = np.asarray(load_image(image_path))
        labels = read_train_ids(mask_path, self.train_ids)
        if pixels.shape[:2] != labels.shape:
            raise DatasetError(f"{mask_path}: the mask is {labels.shape[1]}x{labels.shape[0]} "
                               f"pixels, its image {image_path} {pixels.shape[1]}x"
                               f"{pixels.shape[0]}")  # fmt: skip
        rng = sample_rng(self.seed, self.epoch, index)
        if self.crop:
            scale = draw_scale(rng, self.scale_range)
            x, labels = scaled_crop(pixels, labels, scale, self.crop, rng)
        else:
            x, labels = pad_to(to_model_range(pixels), labels, self.pad)
        if self.flip and rng.random() < 0.5:
            x, labels = x.flip(-1), labels[:, ::-1]
        return x.contiguous(), torch.from_numpy(labels.astype(np.int64)), index


def _largest(pairs: list[tuple[Path, Path]]) -> tuple[int, int]:
    """(height, width) covering every image of `pairs` (read from the headers)."""
    sizes = []
    for image, _ in pairs:
        with Image.open(image) as img:
            sizes.append(img.size[::-1])
    return max(h for h, _ in sizes), max(w for _, w in sizes)
