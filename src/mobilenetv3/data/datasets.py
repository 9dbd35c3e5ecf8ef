"""Listing and loading evaluation images, with bad files counted instead of fatal.

`list_samples` understands the layouts evaluation data comes in (see its docstring) and
returns `(path, class_index)` pairs in the model's index convention (1001 = slim, with
background at 0). `ImageDataset` decodes and preprocesses one sample, for evaluation and for
training (with a `transform` drawing its augmentation from a per-sample generator); with
`skip_bad` a file that cannot be decoded becomes a `BadSample` marker, which
`collate_skip_none` drops and reports in `Batch.skipped`, so an evaluator can count and name
them. `image_files` is the one listing of image files (`IMAGE_SUFFIXES`) in the package.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mobilenetv3.data.labels import synset_to_index
from mobilenetv3.data.preprocess import (
    SLIM_EVAL,
    ImageError,
    Preprocess,
    load_image,
    preprocess_image,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "BadSample",
    "Batch",
    "DatasetError",
    "ImageDataset",
    "ThreadLoader",
    "collate_skip_none",
    "image_files",
    "list_samples",
    "make_loader",
]

IMAGE_SUFFIXES = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)
_WNID = re.compile(r"^n\d{8}$")
_FLAT_WNID = re.compile(r"^(n\d{8})_")


class DatasetError(ValueError):
    """Image data that cannot be listed or used (missing, empty, unknown class)."""


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in sorted order (deterministic listings)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [p for p in (Path(root) / f for f in sorted(files)) if _is_image(p)]
    return out


def _synset_index(wnid: str, num_classes: int, where: str) -> int:
    try:
        return synset_to_index(wnid, num_classes)
    except ValueError as e:
        raise DatasetError(f"{where}: unknown ImageNet synset {wnid!r}") from e


def _label_lookup(labels: Sequence[str]) -> dict[str, int | None]:
    """Name -> index; names that occur twice (ImageNet has two "crane"s) map to None."""
    lookup: dict[str, int | None] = {}
    for i, name in enumerate(labels):
        lookup[name] = None if name in lookup else i
    return lookup


def _from_class_folders(
    root: Path, subdirs: list[Path], labels: Sequence[str] | None, num_classes: int
) -> list[tuple[Path, int]]:
    wnid_named = all(_WNID.match(d.name) for d in subdirs)
    lookup = _label_lookup(labels) if labels is not None else None
    samples: list[tuple[Path, int]] = []
    for d in subdirs:
        if wnid_named and (lookup is None or d.name not in lookup):
            index = _synset_index(d.name, num_classes, str(d))
        elif lookup is None:
            raise DatasetError(
                f"{d}: class folder {d.name!r} is not an ImageNet synset id; pass the model's "
                "labels to use folders named by class name"
            )
        elif d.name not in lookup:
            raise DatasetError(f"{d}: unknown class folder {d.name!r} (not one of the labels)")
        elif (found := lookup[d.name]) is None:
            raise DatasetError(f"{d}: class name {d.name!r} is ambiguous (several labels)")
        else:
            index = found
        samples += [(p, index) for p in image_files(d)]
    if not samples:
        raise DatasetError(f"{root}: class folders contain no images")
    return samples


def _from_flat_folder(root: Path, files: list[Path], num_classes: int) -> list[tuple[Path, int]]:
    samples = []
    for p in files:
        m = _FLAT_WNID.match(p.name)
        if m is None:
            raise DatasetError(
                f"{p}: cannot tell its class; flat folders need files named <synset>_<name>.JPEG "
                "(or use class sub-folders or a list file)"
            )
        samples.append((p, _synset_index(m.group(1), num_classes, str(p))))
    return samples


def _from_list_file(
    path: Path, labels: Sequence[str] | None, num_classes: int
) -> list[tuple[Path, int]]:
    n = len(labels) if labels is not None else num_classes
    samples = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        where = f"{path}:{lineno}"
        if len(parts) != 2:
            raise DatasetError(f"{where}: expected '<path> <label>', got {line!r}")
        rel, label = parts
        if re.fullmatch(r"-?\d+", label):
            index = int(label)
            if not 0 <= index < n:
                raise DatasetError(f"{where}: label {index} out of range for {n} classes")
        elif _WNID.match(label):
            index = _synset_index(label, num_classes, where)
        else:
            raise DatasetError(f"{where}: label {label!r} is neither an index nor a synset id")
        file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        samples.append((file, index))
    if not samples:
        raise DatasetError(f"{path}: list file has no samples")
    return samples


def list_samples(
    data: str | Path, labels: list[str] | None = None, num_classes: int = 1001
) -> list[tuple[Path, int]]:
    """(image path, class index) for evaluation data in any of these layouts:

    (a) ImageNet layout: sub-folders named by synset (`n01440764/xxx.JPEG`);
    (b) a flat folder of `<synset>_<name>.JPEG` files (e.g. the ImageNet samples);
    (c) ImageFolder: sub-folders named by the model's class names (pass `labels`; index =
        position in `labels`);
    (d) a list file, one `path label` per line (path relative to the file; label an integer
        index in the model's convention, or a synset id; `#` comments allowed).

    Synset ids map to the 1001 (slim, background = 0) or 1000 convention by `num_classes`.
    Raises `DatasetError` for a missing or empty location, an unknown synset or class folder.
    """
    root = Path(data)
    if root.is_file():
        return _from_list_file(root, labels, num_classes)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder or list file")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    subdirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if _is_image(p)]
    if subdirs:
        return _from_class_folders(root, subdirs, labels, num_classes)
    if files:
        return _from_flat_folder(root, files, num_classes)
    raise DatasetError(f"{root}: folder has no images or class sub-folders")


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class BadSample:
    """Marker for a sample that could not be decoded (picklable, for DataLoader workers)."""

    index: int
    path: str
    error: str


class Batch(NamedTuple):
    """Collated good samples plus the ones skipped."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[BadSample]


Item = tuple[torch.Tensor, int, int]
Transform = Callable[[Image.Image, random.Random], torch.Tensor]


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of one sample's augmentation in one epoch: the same whichever process,
    worker or resumed run draws it."""
    return random.Random(f"{seed}/{epoch}/{index}")


class ImageDataset(Dataset):
    """Decode + preprocess `samples[i]`, returning `(tensor, label, i)`.

    With `skip_bad`, an undecodable file yields a `BadSample` instead of raising, so a long
    evaluation counts bad files rather than dying on the 40,000th image. With `transform`
    (training augmentation), `transform(image, sample_rng(seed, epoch, i))` replaces
    `preprocess`; `set_epoch` moves to the next epoch's draws.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path | str, int]],
        preprocess: Preprocess = SLIM_EVAL,
        skip_bad: bool = False,
        transform: Transform | None = None,
        seed: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.preprocess = preprocess
        self.skip_bad = skip_bad
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.max_pixels = max_pixels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _tensor(self, image: Image.Image, i: int) -> torch.Tensor:
        if self.transform is None:
            return preprocess_image(image, self.preprocess)
        return self.transform(image, sample_rng(self.seed, self.epoch, i))

    def __getitem__(self, i: int) -> Item | BadSample:
        path, label = self.samples[i]
        try:
            return self._tensor(load_image(path, self.max_pixels), i), int(label), int(i)
        except ImageError as e:
            if not self.skip_bad:
                raise
            return BadSample(int(i), str(path), str(e))


def collate_skip_none(items: Sequence[Item | BadSample | None]) -> Batch:
    """Stack good items; BadSample (or None) items go to `Batch.skipped`, not the tensors.

    A batch of only bad items has `images` with 0 rows.
    """
    good = [it for it in items if it is not None and not isinstance(it, BadSample)]
    skipped = [
        it if isinstance(it, BadSample) else BadSample(-1, "", "None item")
        for it in items
        if it is None or isinstance(it, BadSample)
    ]
    if good:
        # numpy stack: single-threaded, so decode threads never wake torch's OpenMP pool
        images = torch.from_numpy(np.stack([g[0].numpy() for g in good]))
    else:
        images = torch.empty((0, 3, 0, 0), dtype=torch.float32)
    labels = torch.tensor([g[1] for g in good], dtype=torch.int64)
    indices = torch.tensor([g[2] for g in good], dtype=torch.int64)
    return Batch(images, labels, indices, skipped)


class ThreadLoader:
    """Ordered batches decoded by a thread pool (Pillow and torch release the GIL).

    Keeps at most `prefetch` batches in flight; `workers=0` decodes in the caller's thread.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, workers: int = 2, prefetch: int = 2
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers
        self.prefetch = max(1, prefetch)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def _chunks(self) -> Iterator[range]:
        n = len(self.dataset)
        for start in range(0, n, self.batch_size):
            yield range(start, min(start + self.batch_size, n))

    def __iter__(self) -> Iterator[Batch]:
        if self.workers <= 0:
            for chunk in self._chunks():
                yield collate_skip_none([self.dataset[i] for i in chunk])
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            pending: list[list] = []
            chunks = self._chunks()
            for chunk in chunks:
                pending.append([pool.submit(self.dataset.__getitem__, i) for i in chunk])
                if len(pending) > self.prefetch:
                    yield collate_skip_none([f.result() for f in pending.pop(0)])
            while pending:
                yield collate_skip_none([f.result() for f in pending.pop(0)])


def make_loader(
    dataset: Dataset, batch_size: int = 64, workers: int = 2, backend: str = "threads"
) -> Iterable[Batch]:
    """Batches of `dataset` in order, as `Batch` tuples, with bad samples reported.

    backend "threads" (default: measured fastest here, see benchmarks/decode.py, and no
    process start-up or pickling) or "processes" (a torch DataLoader with `workers` worker
    processes, persistent workers off).
    """
    if backend == "threads":
        return ThreadLoader(dataset, batch_size, workers)
    if backend == "processes":
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate_skip_none,
            persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,
        )
    raise ValueError(f"unknown loader backend {backend!r}; use 'threads' or 'processes'")
