"""Training data: ImageFolder listing (loaded by `data.datasets.ImageDataset`), Inception-style
and RandAugment-lite augmentation, a sampler that can resume mid-epoch.

Why every random choice comes from a per-sample generator seeded by (seed, epoch, index): the
augmentation of a sample is then the same whichever process, worker or resumed run draws it,
which is what makes 1-process vs N-process runs comparable and resume bitwise identical.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch.utils.data import Dataset, DistributedSampler

from mobilenetv3.data import preprocess as pp
from mobilenetv3.data.datasets import IMAGE_SUFFIXES, DatasetError, image_files
from mobilenetv3.train.config import TrainConfig

Sample = tuple[str, int]


def list_image_folder(root: str | Path) -> tuple[list[Sample], list[str]]:
    """(path, label) for every image under `root/<class>/`, labels = sorted class folder names."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root} has no class sub-folders (expected ImageFolder: "
                           "root/<class>/*)")  # fmt: skip
    samples = [(str(path), label) for label, name in enumerate(classes)
               for path in image_files(root / name)]  # fmt: skip
    if not samples:
        raise DatasetError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                           f"{classes[:5]}")  # fmt: skip
    return samples, classes


def val_samples(root: str, classes: list[str]) -> list[tuple[str, int]]:
    """Validation images labelled by the training class of their folder name."""
    samples, val_classes = list_image_folder(root)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise DatasetError(f"validation classes not in the training data: {unknown[:5]}")
    index = {name: classes.index(name) for name in val_classes}
    return [(path, index[val_classes[label]]) for path, label in samples]


def to_device(target: Any, device: torch.device) -> Any:
    """A batch's targets (a tensor, or a dict of them) on `device`."""
    if isinstance(target, dict):
        return {k: to_device(v, device) for k, v in target.items()}
    return target.to(device, non_blocking=True)


def to_unit_float(arr: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [0, 1] (times float32(1/255), as TF's convert_image_dtype)."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).to(torch.float32)
    return t.mul_(np.float32(1.0 / 255.0).item())


# -- Inception-style (slim inception_preprocessing.preprocess_for_train) -------------------------


def distorted_box(
    rng: random.Random, height: int, width: int, area: tuple[float, float],
    aspect: tuple[float, float], attempts: int = 10,
) -> tuple[int, int, int, int]:  # fmt: skip
    """(top, left, h, w): a crop covering `area` of the image with aspect in `aspect` (as
    `tf.image.sample_distorted_bounding_box` draws it); the whole image when no draw fits."""
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return 0, 0, height, width


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> HSV with hue in [0, 1), as `tf.image.rgb_to_hsv`."""
    r, g, b = x
    maxc, minc = x.max(0).values, x.min(0).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, (g - b) / safe,
                      torch.where(maxc == g, 2 + (b - r) / safe, 4 + (r - g) / safe))  # fmt: skip
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), 0.0)
    return torch.stack([hue, sat, maxc])


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = sector.long() % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, rgb in enumerate(table):
        out = torch.where(i == k, torch.stack(rgb), out)
    return out


def _brightness(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    return x + rng.uniform(-32 / 255, 32 / 255)


def _contrast(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    mean = x.mean((1, 2), keepdim=True)
    return (x - mean) * rng.uniform(0.5, 1.5) + mean


def _saturation(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    hsv = rgb_to_hsv(x.clamp(0, 1))
    hsv[1] = (hsv[1] * rng.uniform(0.5, 1.5)).clamp(0, 1)
    return hsv_to_rgb(hsv)


def _hue(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    hsv = rgb_to_hsv(x.clamp(0, 1))
    hsv[0] = (hsv[0] + rng.uniform(-0.2, 0.2)) % 1.0
    return hsv_to_rgb(hsv)


# slim's distort_color orderings (fast_mode=False): one is drawn per image.
_ORDERINGS = (
    (_brightness, _saturation, _hue, _contrast),
    (_saturation, _brightness, _contrast, _hue),
    (_contrast, _hue, _brightness, _saturation),
    (_hue, _saturation, _contrast, _brightness),
)


def distort_color(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Slim's `distort_color`: brightness +-32/255, saturation and contrast x[0.5, 1.5], hue
    +-0.2, in one of four orders, clipped to [0, 1]."""
    for op in rng.choice(_ORDERINGS):
        x = op(x, rng)
    return x.clamp(0.0, 1.0)


# -- RandAugment-lite (PIL) ----------------------------------------------------------------------


def _signed(rng: random.Random, value: float) -> float:
    return value if rng.random() < 0.5 else -value


def _affine(img: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                         fillcolor=(128, 128, 128))  # fmt: skip


def _enhance(kind: type) -> Callable[[Image.Image, float, random.Random], Image.Image]:
    return lambda img, m, rng: kind(img).enhance(1.0 + _signed(rng, 0.9 * m))


RAND_OPS: dict[str, Callable[[Image.Image, float, random.Random], Image.Image]] = {
    "identity": lambda img, m, rng: img,
    "autocontrast": lambda img, m, rng: ImageOps.autocontrast(img),
    "equalize": lambda img, m, rng: ImageOps.equalize(img),
    "rotate": lambda img, m, rng: img.rotate(_signed(rng, 30 * m), fillcolor=(128, 128, 128)),
    "solarize": lambda img, m, rng: ImageOps.solarize(img, int(256 - 256 * m)),
    "posterize": lambda img, m, rng: ImageOps.posterize(img, max(1, 8 - int(4 * m))),
    "color": _enhance(ImageEnhance.Color),
    "contrast": _enhance(ImageEnhance.Contrast),
    "brightness": _enhance(ImageEnhance.Brightness),
    "sharpness": _enhance(ImageEnhance.Sharpness),
    "shear_x": lambda img, m, rng: _affine(img, (1, _signed(rng, 0.3 * m), 0, 0, 1, 0)),
    "shear_y": lambda img, m, rng: _affine(img, (1, 0, 0, _signed(rng, 0.3 * m), 1, 0)),
    "translate_x": lambda img, m, rng: _affine(
        img, (1, 0, _signed(rng, 0.3 * m * img.width), 0, 1, 0)),
    "translate_y": lambda img, m, rng: _affine(
        img, (1, 0, 0, 0, 1, _signed(rng, 0.3 * m * img.height))),
}  # fmt: skip


def rand_augment(img: Image.Image, rng: random.Random, ops: int, magnitude: int) -> Image.Image:
    """`ops` uniformly drawn operations at magnitude `magnitude` out of 10 (RandAugment)."""
    names = sorted(RAND_OPS)
    for _ in range(ops):
        img = RAND_OPS[rng.choice(names)](img, magnitude / 10.0, rng)
    return img


# -- transforms ----------------------------------------------------------------------------------


def eval_preset(config: TrainConfig) -> pp.Preprocess:
    """The evaluation preprocessing stored with the trained weights."""
    presets = {"slim_eval": pp.SLIM_EVAL, "slim_eval_tf1": pp.SLIM_EVAL_TF1,
               "timm_imagenet": pp.TIMM_IMAGENET}  # fmt: skip
    if config.eval_preprocess not in presets:
        raise DatasetError(f"eval_preprocess {config.eval_preprocess!r}: not one of "
                           f"{list(presets)}")  # fmt: skip
    size = config.image_size
    return presets[config.eval_preprocess].replace(image_size=(size, size))


class TrainTransform:
    """PIL image + per-sample generator -> normalised float (3, S, S)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.preset = eval_preset(config)
        self.mean = torch.tensor(self.preset.mean).view(3, 1, 1)
        self.std = torch.tensor(self.preset.std).view(3, 1, 1)

    def __call__(self, img: Image.Image, rng: random.Random) -> torch.Tensor:
        c = self.config
        if c.augment == "none":
            return pp.preprocess_image(img, self.preset)
        top, left, h, w = distorted_box(rng, img.height, img.width, tuple(c.crop_area),
                                        tuple(c.crop_aspect))  # fmt: skip
        flip = c.flip and rng.random() < 0.5
        size = (c.image_size, c.image_size)
        if c.augment == "inception":
            x = to_unit_float(np.asarray(img)[top : top + h, left : left + w])
            x = pp.resize_bilinear_tf(x, size)
            x = x.flip(-1) if flip else x
            x = distort_color(x, rng) if c.color_distortion else x
        else:
            crop = img.crop((left, top, left + w, top + h)).resize(size[::-1],
                                                                   Image.Resampling.BICUBIC)
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop
            crop = rand_augment(crop, rng, c.randaugment_ops, c.randaugment_magnitude)
            x = to_unit_float(np.asarray(crop))
        return (x - self.mean) / self.std


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (per-epoch shuffle from seed + epoch, one shard per rank) that can
    skip the first `skip` samples of this rank's shard: the batches a resumed run consumed."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int,
                 shuffle: bool = True) -> None:  # fmt: skip
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)  # fmt: skip
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip
