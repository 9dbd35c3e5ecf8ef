"""A synthetic detection / segmentation set: rectangles and ellipses drawn on noise.

Why: the training mechanics of the heads (loss going down, DDP equal to one process, resume)
need data that a few steps can learn, and tests need it without files. Each image is drawn from
a generator seeded by (seed, split, index), so it is the same in every epoch, process and
resumed run. `--data synthetic:N` trains on N such images, `--val-data synthetic:M` validates on
M others.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mobilenetv3.data.datasets import DatasetError
from mobilenetv3.data.preprocess import to_model_range

PREFIX = "synthetic:"
SHAPES = ("rectangle", "ellipse")  # class ids 1, 2 (0: background / padding)
MAX_BOXES = 100  # the zoo configs' max_number_of_boxes: box lists are padded to this
_MAX_SHAPES = 3


def synthetic_count(data: str) -> int | None:
    """N of `synthetic:N`; None for a path."""
    if not data.startswith(PREFIX):
        return None
    count = data[len(PREFIX) :]
    if not count.isdigit() or int(count) < 1:
        raise DatasetError(f"{data!r}: write synthetic:N with N >= 1 images")
    return int(count)


def draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HWC uint8, mask HW uint8 of class ids, boxes [K, 5]: class, ymin, xmin, ymax,
    xmax normalized) of one to three shapes, later ones drawn over earlier ones."""
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    rows, cols = np.mgrid[:size, :size] + 0.5
    boxes = []
    for _ in range(rng.integers(1, _MAX_SHAPES + 1)):
        kind = int(rng.integers(len(SHAPES)))
        height, width = (int(s) for s in rng.integers(size // 5, size * 3 // 5, 2))
        top, left = (int(rng.integers(0, size - s + 1)) for s in (height, width))
        if SHAPES[kind] == "rectangle":
            inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
        else:
            dy = (rows - top - height / 2) / (height / 2)
            dx = (cols - left - width / 2) / (width / 2)
            inside = dy**2 + dx**2 <= 1
        image[inside] = rng.integers(0, 256, 3, dtype=np.uint8)
        mask[inside] = kind + 1
        boxes.append([kind + 1, top / size, left / size, (top + height) / size,
                      (left + width) / size])  # fmt: skip
    return image, mask, np.array(boxes, np.float32)


class SyntheticShapes(Dataset):
    """Items (image [3, S, S] in [-1, 1] as TF's (2 / 255) x - 1, target, index); target:
    detection {"boxes" [MAX_BOXES, 4], "classes" [MAX_BOXES] (0: padding)}, segmentation
    the mask [S, S] of class ids."""

    def __init__(self, task: str, count: int, size: int, seed: int, split: int = 0) -> None:
        self.task, self.count, self.size, self.seed, self.split = task, count, size, seed, split

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: no augmentation, the same images every epoch."""

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, object, int]:
        rng = np.random.default_rng([self.seed, self.split, index])
        image, mask, found = draw(rng, self.size)
        x = to_model_range(image)
        if self.task == "segmentation":
            return x, torch.from_numpy(mask).long(), index
        return x, padded_boxes(found), index


def padded_boxes(found: np.ndarray) -> dict[str, torch.Tensor]:
    """[K, 5] rows (class, ymin, xmin, ymax, xmax) -> {"boxes" [MAX_BOXES, 4], "classes"
    [MAX_BOXES]}, zero-padded (class 0: no box), so items of any box count batch together."""
    boxes, classes = torch.zeros(MAX_BOXES, 4), torch.zeros(MAX_BOXES, dtype=torch.long)
    boxes[: len(found)] = torch.from_numpy(found[:, 1:])
    classes[: len(found)] = torch.from_numpy(found[:, 0]).long()
    return {"boxes": boxes, "classes": classes}
