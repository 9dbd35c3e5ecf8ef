"""A COCO-format annotations file (`instances_*.json`) checked before any image is run, so a
bad file is one line naming what is wrong, not a KeyError deep inside pycocotools.

Category ids are the detector's 1-based class ids: TF's zoo detectors have 90 classes whose
label map (`mscoco_label_map.pbtxt`) gives COCO's ids 1..90 (80 used, 10 gaps), and the
exporter adds `label_id_offset = 1` to the 0-based class, so detection class k is category k.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenetv3.data.datasets import DatasetError

BOX_SLACK = 1.0  # pixels a box may pass the image's edge (rounding in the file)


class CocoError(DatasetError):
    """An annotations file that cannot be evaluated against (one line: the file, the record)."""


@dataclass(frozen=True)
class CocoSet:
    """The checked file: `dataset` as pycocotools' COCO wants it (`iscrowd` 0 and `area` w*h
    filled in where absent), the image files in the file's order, category names by id."""

    dataset: dict[str, Any]
    images: list[tuple[int, Path]]
    names: dict[int, str]


def read_coco(path: str | Path, images_dir: str | Path, num_classes: int) -> CocoSet:
    """Read and check `path`; images are `images_dir / file_name`; categories must be within
    the detector's classes 1..num_classes."""
    path, images_dir = Path(path), Path(images_dir)
    data = _load(path)
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    names = _categories(path, data["categories"], num_classes)
    seen: set[int] = set()
    for ann in data["annotations"]:
        _check_annotation(path, ann, seen, sizes, names)
    images = [(image["id"], images_dir / image["file_name"]) for image in data["images"]]
    absent = [file for _, file in images if not file.is_file()]
    if absent:
        raise CocoError(f"{path}: {len(absent)} of {len(images)} images are absent under "
                        f"{images_dir}, the first: {absent[0]}; give the folder holding the "
                        "file_name of each image")  # fmt: skip
    return CocoSet(data, images, names)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CocoError(f"{path}: no such annotations file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CocoError(f"{path}: not a JSON file ({e}); give a COCO instances_*.json") from None
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(data, dict) or not isinstance(data.get(k), list)]  # fmt: skip
    if missing:
        raise CocoError(f"{path}: no {' / '.join(missing)} list; a COCO annotations file has "
                        "'images', 'annotations' and 'categories'")  # fmt: skip
    ids: set[int] = set()
    for image in data["images"]:
        where = f"{path}: image {image.get('id') if isinstance(image, dict) else image!r}"
        _require(image, {"id": int, "file_name": str, "width": int, "height": int}, where)
        if image["id"] in ids or image["width"] < 1 or image["height"] < 1:
            raise CocoError(f"{where}: repeated id or a size below 1 pixel")
        ids.add(image["id"])
    return data


def _categories(path: Path, categories: list, num_classes: int) -> dict[int, str]:
    names: dict[int, str] = {}
    for category in categories:
        where = f"{path}: category {category.get('id') if isinstance(category, dict) else ''}"
        _require(category, {"id": int, "name": str}, where)
        if not 1 <= category["id"] <= num_classes or category["id"] in names:
            raise CocoError(f"{where}: a repeated id, or outside the detector's classes "
                            f"1..{num_classes} (category id = class id)")  # fmt: skip
        names[category["id"]] = category["name"]
    return names


def _check_annotation(path: Path, ann: Any, seen: set[int], sizes: dict[int, tuple[int, int]],
                      names: dict[int, str]) -> None:  # fmt: skip
    where = f"{path}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}"
    _require(ann, {"id": int, "image_id": int, "category_id": int, "bbox": list}, where)
    if ann["id"] in seen:
        raise CocoError(f"{where}: the id is repeated; annotation ids must be unique")
    seen.add(ann["id"])
    if ann["image_id"] not in sizes:
        raise CocoError(f"{where}: image_id {ann['image_id']} is not among the file's images")
    if ann["category_id"] not in names:
        raise CocoError(f"{where}: category_id {ann['category_id']} is not among the file's "
                        "categories")  # fmt: skip
    _check_box(where, ann["bbox"], sizes[ann["image_id"]])
    ann.setdefault("iscrowd", 0)
    ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])


def _check_box(where: str, box: list, size: tuple[int, int]) -> None:
    """[x, y, w, h] in pixels inside the image (`BOX_SLACK` allowed), w and h >= 0."""
    numbers = len(box) == 4 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
    )
    width, height = size
    if not numbers or not (
        box[2] >= 0 and box[3] >= 0 and box[0] >= -BOX_SLACK and box[1] >= -BOX_SLACK
        and box[0] + box[2] <= width + BOX_SLACK and box[1] + box[3] <= height + BOX_SLACK
    ):  # fmt: skip
        raise CocoError(f"{where}: bbox {box} is not [x, y, w, h] inside its {width}x{height} "
                        "image")  # fmt: skip


def _require(record: Any, fields: dict[str, type], where: str) -> None:
    """`record` is an object with each field of its type (bool is no int here)."""
    if not isinstance(record, dict):
        raise CocoError(f"{where}: not a JSON object")
    for key, kind in fields.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CocoError(f"{where}: no {kind.__name__} '{key}' (got {value!r})")
