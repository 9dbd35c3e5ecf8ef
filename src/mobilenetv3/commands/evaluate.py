"""`mobilenetv3 evaluate DATA --weights W`: top-1/top-5 through the chosen engine."""

from __future__ import annotations

import argparse
import os
import sys

from mobilenetv3.atomic import write_json
from mobilenetv3.commands._common import add_image_limit_argument, add_model_arguments, load_model

HELP = "accuracy on an ImageNet-layout folder, a flat <synset>_x.JPEG folder or a list file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="image folder (synset or class sub-folders, or flat) or list")
    add_model_arguments(parser, weights_required=True)
    parser.add_argument("--engine", default="torch",
                        choices=("torch", "torch_compile", "onnxruntime", "litert"))  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    parser.add_argument("--threads", type=int, default=None,
                        help="engine threads (default: half the cores; decoding uses the rest)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count and skip unreadable images instead of stopping")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="write the full results here (atomically)")
    add_image_limit_argument(parser)


def engine_forward(engine: str, model, weights: str | None, threads: int | None, batch: int):
    """A forward function for the chosen engine (torch: the BN-folded deployment graph);
    LiteRT runs a .tflite as it is."""
    from mobilenetv3.quantize import int8_forward, runs_only_in_engine
    from mobilenetv3.runtime.engines import make_runner

    if weights is not None and runs_only_in_engine(weights):  # an int8 .onnx/.pt2 as it is
        return int8_forward(engine, weights, threads, batch, model_image_size(model))

    source = weights if engine == "litert" and str(weights).endswith(".tflite") else model
    size = model_image_size(model)
    threads = threads or max(1, (os.cpu_count() or 2) // 2)
    runner = make_runner(engine, source, threads=threads, batch_size=batch, image_size=size)
    return lambda images: runner(images.numpy())


def model_image_size(model) -> tuple[int, int]:
    from mobilenetv3.runtime.evaluate import model_preprocess

    return tuple(model_preprocess(model).image_size)


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.data.datasets import list_samples
    from mobilenetv3.quantize import load_int8, runs_only_in_engine
    from mobilenetv3.runtime.evaluate import evaluate, model_labels, model_preprocess

    int8 = args.weights is not None and runs_only_in_engine(args.weights)
    model = load_int8(args.weights) if int8 else load_model(args)
    labels = model_labels(model)
    samples = list_samples(args.data, labels=labels, num_classes=model.num_classes)
    samples = samples[: args.limit] if args.limit else samples
    forward = engine_forward(args.engine, model, args.weights, args.threads, args.batch_size)
    result = evaluate(forward, samples, preprocess=model_preprocess(model), labels=labels,
                      batch_size=args.batch_size, workers=args.workers,
                      skip_bad=args.skip_bad, max_pixels=args.max_pixels)  # fmt: skip
    result |= {"model": model.variant.name, "weights": args.weights, "engine": args.engine,
               "data": args.data}  # fmt: skip
    print(f"{model.variant.name} on {args.data} via {args.engine}: top1 {result['top1']:.2f}  "
          f"top5 {result['top5']:.2f}  ({result['images']} images, "
          f"{result['images_per_s']:.1f} img/s)")  # fmt: skip
    for bad in result["skipped"]:
        print(f"skipped {bad['path']}: {bad['error']}", file=sys.stderr)
    for c in result["top_confusions"][:5]:
        print(f"  confused {c['true']} -> {c['predicted']} ({c['count']}x)")
    if args.json:
        write_json(args.json, result)
    return 0
