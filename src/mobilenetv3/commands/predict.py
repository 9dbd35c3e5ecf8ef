"""`mobilenetv3 predict IMAGE... --weights W`: the top-k classes of each image."""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from mobilenetv3.commands._common import add_image_limit_argument, add_model_arguments, load_model

HELP = "classify images (files, folders or globs): top-k class names and probabilities"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    add_model_arguments(parser, weights_required=True)
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_image_limit_argument(parser)
    parser.add_argument("--include-background", action="store_true",
                        help="let slim's class 0 (background) be shown")  # fmt: skip


def expand_images(items: list[str]) -> list[Path]:
    """Files as given, folders' images sorted, globs expanded; missing ones are an error."""
    from mobilenetv3.data.datasets import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            paths.append(path)
        elif matches := sorted(glob.glob(item, recursive=True)):
            paths += [Path(m) for m in matches]
        else:
            raise FileNotFoundError(f"{item}: no such image, folder or matching glob")
    if not paths:
        raise ValueError(f"no images found in {' '.join(items)}")
    return paths


def predict(model, paths: list[Path], topk: int = 5, batch_size: int = 32,
            include_background: bool = False,
            max_pixels: int | None = None) -> list[dict]:  # fmt: skip
    import torch

    from mobilenetv3.data.labels import top_k
    from mobilenetv3.data.preprocess import load_image, preprocess_image
    from mobilenetv3.runtime.evaluate import model_labels, model_preprocess

    preprocess, labels = model_preprocess(model), model_labels(model)
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = torch.stack([preprocess_image(load_image(p, max_pixels), preprocess)
                             for p in chunk])  # fmt: skip
        with torch.inference_mode():
            probabilities = model(batch).softmax(dim=1)
        for path, row in zip(chunk, probabilities, strict=True):
            best = top_k(row, topk, labels, include_background=include_background)
            results.append({"path": str(path), "top_k": [
                {"index": i, "name": name, "probability": p} for i, name, p in best
            ]})  # fmt: skip
    return results


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    paths = expand_images(args.images)
    results = predict(model, paths, args.topk, args.batch_size, args.include_background,
                      args.max_pixels)  # fmt: skip
    if args.json:
        print(json.dumps({"model": model.variant.name, "results": results}, indent=2))
        return 0
    for result in results:
        print(result["path"])
        for rank, entry in enumerate(result["top_k"], 1):
            print(f"  {rank}. {entry['probability']:6.1%}  {entry['name']}  ({entry['index']})")
    return 0
