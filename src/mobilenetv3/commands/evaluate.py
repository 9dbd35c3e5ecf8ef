"""`mobilenetv3 evaluate DATA --weights W`: top-1/top-5 through the chosen engine."""

from __future__ import annotations

import argparse
import json
import sys

from mobilenetv3.atomic import write_json
from mobilenetv3.commands._common import (
    add_dequantize,
    add_engine_arguments,
    add_image_limit_argument,
    add_json_output,
    add_model_arguments,
    add_option,
    describe,
    engine_runner,
    load_for_engine,
    positive_int,
    what_ran,
)

HELP = "accuracy on an ImageNet-layout folder, a flat <synset>_x.JPEG folder or a list file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="image folder (synset or class sub-folders, or flat) or list")
    add_model_arguments(parser, weights_required=True)
    add_dequantize(parser)
    parser.add_argument("--batch-size", type=positive_int, default=50,
                        help="images per engine call")  # fmt: skip
    add_engine_arguments(parser)
    add_option(parser, "--num-images", old=("--limit",), type=positive_int,
               help="evaluate only the first N images")  # fmt: skip
    parser.add_argument("--skip-bad", action="store_true",
                        help="count and skip unreadable images instead of stopping")  # fmt: skip
    add_json_output(parser)
    add_image_limit_argument(parser)


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.data.datasets import list_samples
    from mobilenetv3.runtime.evaluate import evaluate, model_labels, model_preprocess

    model = load_for_engine(args)
    labels = model_labels(model)
    samples = list_samples(args.data, labels=labels, num_classes=model.num_classes)
    samples = samples[: args.num_images] if args.num_images else samples
    runner = engine_runner(args, model, args.batch_size)
    result = evaluate(lambda images: runner(images.numpy()), samples,
                      preprocess=model_preprocess(model), labels=labels,
                      batch_size=args.batch_size, workers=args.workers,
                      skip_bad=args.skip_bad, max_pixels=args.max_pixels)  # fmt: skip
    ran = what_ran(args, runner)
    result |= {"model": model.variant.name, **ran, "data": args.data}
    report = sys.stderr if args.json == "-" else sys.stdout  # stdout carries the JSON then
    if result["partial"]:
        print(f"interrupted after {result['images']} images (results below are partial)",
              file=sys.stderr)  # fmt: skip
    print(f"{model.variant.name} on {args.data} via {describe(ran)}: top1 {result['top1']:.2f}  "
          f"top5 {result['top5']:.2f}  ({result['images']} images, "
          f"{result['images_per_s']:.1f} img/s)", file=report)  # fmt: skip
    for bad in result["skipped"]:
        print(f"skipped {bad['path']}: {bad['error']}", file=sys.stderr)
    for c in result["top_confusions"][:5]:
        print(f"  confused {c['true']} -> {c['predicted']} ({c['count']}x)", file=report)
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        write_json(args.json, result)
    return 130 if result["partial"] else 0
