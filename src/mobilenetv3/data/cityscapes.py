"""Cityscapes masks: label ids to the 19 train ids DeepLab predicts, and images paired with
their masks (`X_leftImg8bit.png` with `X_gtFine_labelIds.png`, the dataset's own layout).

The table is cityscapesScripts' `helpers/labels.py` (name, id, trainId); ids without a train id
(void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer) are 255,
ignored in evaluation as the official script ignores them. License plate (id -1) never appears
in a labelIds image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mobilenetv3.data.datasets import DatasetError, image_files

IGNORE = 255
# (name, label id, train id): cityscapesScripts' table, ids 0..33
LABELS: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8),
    ("terrain", 22, 9), ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12),
    ("car", 26, 13), ("truck", 27, 14), ("bus", 28, 15), ("caravan", 29, 255),
    ("trailer", 30, 255), ("train", 31, 16), ("motorcycle", 32, 17), ("bicycle", 33, 18),
)  # fmt: skip
TRAIN_NAMES: tuple[str, ...] = tuple(n for n, _, t in sorted(LABELS, key=lambda r: r[2]) if t < 19)
_UNKNOWN = 256  # marks a value that is no label id (train ids are 0..255)
LABEL_TO_TRAIN = np.full(256, _UNKNOWN, dtype=np.int32)
LABEL_TO_TRAIN[[i for _, i, _ in LABELS]] = [t for _, _, t in LABELS]
TRAIN_TO_TRAIN = np.full(256, _UNKNOWN, dtype=np.int32)  # masks already in train ids
TRAIN_TO_TRAIN[[*range(len(TRAIN_NAMES)), IGNORE]] = [*range(len(TRAIN_NAMES)), IGNORE]

_IMAGE_SUFFIX = "_leftImg8bit"
_MASK_SUFFIX = {False: "_gtFine_labelIds.png", True: "_gtFine_labelTrainIds.png"}


def pair_masks(images_dir: str | Path, masks_dir: str | Path,
               train_ids: bool = False) -> list[tuple[Path, Path]]:  # fmt: skip
    """(image, mask) for every image under `images_dir`: the mask at the same relative place
    under `masks_dir`, named `<X>_gtFine_labelIds.png` (`..._labelTrainIds.png` with
    `train_ids`) for `<X>_leftImg8bit.png`, else `<X>.png` for `<X>.<any image suffix>`."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, flag in ((images_dir, "DATA"), (masks_dir, "--masks")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder ({flag} is a folder of images/masks)")
    images = image_files(images_dir)
    if not images:
        raise DatasetError(f"{images_dir}: folder has no images")
    pairs = []
    for image in images:
        rel = image.relative_to(images_dir)
        stem = rel.stem.removesuffix(_IMAGE_SUFFIX)
        named = masks_dir / rel.parent / f"{stem}{_MASK_SUFFIX[train_ids]}"
        plain = masks_dir / rel.parent / f"{stem}.png"
        mask = next((m for m in (named, plain) if m.is_file()), None)
        if mask is None:
            raise DatasetError(f"{image}: its mask is absent (looked for {named} and {plain})")
        pairs.append((image, mask))
    return pairs


def read_train_ids(path: Path, train_ids: bool = False) -> np.ndarray:
    """[H, W] uint8 train ids (255 ignored) of an 8-bit mask of label ids (or of train ids)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise DatasetError(f"{path}: a {img.mode} image, not an 8-bit single-channel mask "
                                   "of class ids (the colour masks are not evaluated)")  # fmt: skip
            ids = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot decode the mask ({e})") from None
    mapped = (TRAIN_TO_TRAIN if train_ids else LABEL_TO_TRAIN)[ids]
    if (mapped == _UNKNOWN).any():
        value = int(ids[mapped == _UNKNOWN][0])
        kind = "train id (0..18, 255)" if train_ids else "Cityscapes label id (0..33)"
        hint = "" if train_ids else "; masks of train ids need --train-ids"
        raise DatasetError(f"{path}: value {value} is no {kind}{hint}")
    return mapped.astype(np.uint8)
