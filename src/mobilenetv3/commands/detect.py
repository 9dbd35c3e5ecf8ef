"""`mobilenetv3 detect IMAGES (--weights W | --model NAME) [--json PATH] [--draw DIR]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mobilenetv3.commands._common import (
    add_json_output,
    add_model_arguments,
    load_task_model,
    probability,
)
from mobilenetv3.commands.predict import expand_images

HELP = "detect objects with SSDLite: boxes as JSON, optionally an annotated PNG per image"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    add_model_arguments(parser, weights_required=False)
    add_json_output(parser)
    parser.add_argument("--draw", type=Path, help="folder for one annotated PNG per image")
    parser.add_argument("--min-score", type=probability, default=0.5,
                        help="report boxes scoring at least this (default 0.5)")  # fmt: skip


def detect(model, path: Path, min_score: float) -> list[dict]:
    """Boxes in the image's pixels (xmin, ymin, xmax, ymax), 1-based class ids, scores.

    The image is resized to the model's input size as TF's fixed_shape_resizer does (TF1
    bilinear) and scaled to [-1, 1]."""
    import numpy as np
    import torch

    from mobilenetv3.data.preprocess import load_image, to_model_range
    from mobilenetv3.data.resize import tf_resize_bilinear_hwc
    from mobilenetv3.heads.boxes import detections_in_pixels

    image = load_image(path)
    size = model.spec.input_size
    resized = tf_resize_bilinear_hwc(np.asarray(image), (size, size), half_pixel=False)
    with torch.inference_mode():
        out = model(to_model_range(resized)[None])
    return [{"class": d["class"], "score": round(d["score"], 5),
             "box": [round(v, 2) for v in d["box"]]}
            for d in detections_in_pixels(out, 0, image.height, image.width)
            if d["score"] >= min_score]  # fmt: skip


def draw(path: Path, found: list[dict], folder: Path) -> Path:
    """The image with each box and its class id and score, as PNG (written atomically)."""
    from PIL import ImageDraw

    from mobilenetv3.atomic import atomic_output
    from mobilenetv3.data.preprocess import load_image

    image = load_image(path)
    pen = ImageDraw.Draw(image)
    for d in found:
        pen.rectangle(d["box"], outline=(255, 64, 0), width=2)
        pen.text((d["box"][0] + 3, d["box"][1] + 2), f"{d['class']} {d['score']:.2f}",
                 fill=(255, 64, 0))  # fmt: skip
    target = folder / f"{path.stem}.png"
    with atomic_output(target) as tmp:
        image.save(tmp, format="PNG")
    return target


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.atomic import write_json
    from mobilenetv3.heads import SSDLite

    model = load_task_model(args, SSDLite, "detection", "ssdlite_v3_large")
    results = []
    for path in expand_images(args.images):
        found = detect(model, path, args.min_score)
        results.append({"image": str(path), "detections": found})
        if args.draw:
            draw(path, found, args.draw)
    if args.json in (None, "-"):  # stdout unless a PATH is given
        print(json.dumps(results, indent=2))
    else:
        write_json(args.json, results)
    return 0
