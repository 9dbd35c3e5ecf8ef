"""`mobilenetv3 predict IMAGE... --weights W`: the top-k classes of each image."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from mobilenetv3.atomic import write_json
from mobilenetv3.commands._common import (
    add_dequantize,
    add_engine_arguments,
    add_image_limit_argument,
    add_json_output,
    add_model_arguments,
    describe,
    engine_runner,
    load_for_engine,
    positive_int,
    what_ran,
)

HELP = "classify images (files, folders or globs): top-k class names and probabilities"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    add_model_arguments(parser, weights_required=True)
    add_dequantize(parser)
    parser.add_argument("--topk", type=positive_int, default=5, help="classes shown per image")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="images per engine call")  # fmt: skip
    add_engine_arguments(parser)
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and skip unreadable images instead of stopping")  # fmt: skip
    add_json_output(parser)
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


def predict(runner, paths: list[Path], *, preprocess, labels: list[str], topk: int = 5,
            batch_size: int = 32, workers: int = 2, skip_bad: bool = False,
            include_background: bool = False,
            max_pixels: int | None = None) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """(top-k of each readable image, the skipped ones); a progress bar past a few batches."""
    import torch
    from tqdm import tqdm

    from mobilenetv3.data.datasets import ImageDataset, make_loader
    from mobilenetv3.data.labels import top_k

    dataset = ImageDataset([(path, 0) for path in paths], preprocess, skip_bad,
                           max_pixels=max_pixels)
    loader = make_loader(dataset, batch_size, workers)
    results, skipped = [], []
    for batch in tqdm(loader, desc="predict", unit="batch", disable=len(loader) < 3):
        skipped += [{"path": bad.path, "error": bad.error} for bad in batch.skipped]
        if not len(batch.indices):
            continue
        scores = torch.as_tensor(runner(batch.images.numpy()))
        probabilities = scores if runner.output == "probabilities" else scores.softmax(dim=1)
        for index, row in zip(batch.indices.tolist(), probabilities, strict=True):
            best = top_k(row, topk, labels, include_background=include_background)
            results.append({"path": str(paths[index]), "top_k": [
                {"index": i, "name": name, "probability": round(p, 4)} for i, name, p in best
            ]})  # fmt: skip
    return results, skipped


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.runtime.evaluate import model_labels, model_preprocess

    paths = expand_images(args.images)
    model = load_for_engine(args)
    runner = engine_runner(args, model, args.batch_size)
    results, skipped = predict(runner, paths, preprocess=model_preprocess(model),
                               labels=model_labels(model), topk=args.topk,
                               batch_size=args.batch_size, workers=args.workers,
                               skip_bad=args.skip_bad,
                               include_background=args.include_background,
                               max_pixels=args.max_pixels)  # fmt: skip
    for bad in skipped:
        print(f"skipped {bad['path']}: {bad['error']}", file=sys.stderr)
    ran = what_ran(args, runner)
    if args.json:
        document = {"model": model.variant.name, **ran, "results": results, "skipped": skipped}
        if args.json == "-":
            print(json.dumps(document, indent=2))
        else:
            write_json(args.json, document)
        return 0
    print(f"{model.variant.name} via {describe(ran)}")
    for result in results:
        print(result["path"])
        for rank, entry in enumerate(result["top_k"], 1):
            print(f"  {rank}. {entry['probability']:6.2%}  {entry['name']}  ({entry['index']})")
    return 0
