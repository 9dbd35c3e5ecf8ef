"""`mobilenetv3 evaluate DATA --weights W`: top-1/top-5 through the chosen engine;
`--task detection` COCO mAP (pycocotools), `--task segmentation` Cityscapes mIoU, in torch."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

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
    json_path,
    load_for_engine,
    load_task_model,
    positive_int,
    what_ran,
)

HELP = ("accuracy on an ImageNet-layout folder, a flat <synset>_x.JPEG folder or a list file; "
        "COCO mAP (--task detection) or Cityscapes mIoU (--task segmentation)")
TASKS = ("classification", "detection", "segmentation")
TASK_INPUT = {"detection": ("annotations", "a COCO instances_*.json"),
              "segmentation": ("masks", "the folder of Cityscapes masks")}  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="image folder (synset or class sub-folders, or flat) or list")
    parser.add_argument("--task", choices=TASKS, default="classification",
                        help="what the model does; detection and segmentation run in torch")
    add_model_arguments(parser, weights_required=False)
    parser.add_argument("--annotations", help="detection: COCO annotations (instances_*.json); "
                        "DATA is the folder of its images")  # fmt: skip
    parser.add_argument("--detections", type=json_path, metavar="PATH",
                        help="detection: also write the detections in COCO's results format")
    parser.add_argument("--masks", help="segmentation: folder of Cityscapes masks "
                        "(<X>_gtFine_labelIds.png for DATA's <X>_leftImg8bit.png)")  # fmt: skip
    parser.add_argument("--train-ids", action="store_true",
                        help="segmentation: the masks hold train ids (*_gtFine_labelTrainIds.png)")
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
    if args.task != "classification":
        return evaluate_task(args)
    if args.weights is None:
        raise ValueError("give --weights: classification evaluates trained weights")
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
    scores = f"top1 {result['top1']:.2f}  top5 {result['top5']:.2f}"
    report = _report(args, result, f"{model.variant.name} on {args.data} via {describe(ran)}",
                     scores)  # fmt: skip
    for c in result["top_confusions"][:5]:
        print(f"  confused {c['true']} -> {c['predicted']} ({c['count']}x)", file=report)
    return _write(args, result)


def evaluate_task(args: argparse.Namespace) -> int:
    """Detection or segmentation: the per-image function of `detect` / `segment`, in torch."""
    from mobilenetv3.heads import LRASPP, SSDLite

    if args.engine not in ("auto", "torch") or args.device not in ("auto", "cpu"):
        raise ValueError(f"--task {args.task} runs in torch on the CPU; drop --engine/--device")
    flag, what = TASK_INPUT[args.task]
    if not getattr(args, flag):
        raise ValueError(f"--task {args.task} needs --{flag} ({what})")
    if args.task == "detection":
        model = load_task_model(args, SSDLite, "detection", "ssdlite_v3_large")
        result = _detection(args, model)
        scores = " ".join(f"{k} {_shown(result['metrics'][k])}" for k in ("AP", "AP50", "AP75"))
    else:
        model = load_task_model(args, LRASPP, "segmentation", "lraspp_v3_large")
        result = _segmentation(args, model)
        scores = f"mIoU {_shown(result['miou'])}  pixel accuracy {_shown(result['pixel_accuracy'])}"
    result |= {"model": model.variant.name, "weights": args.weights, "data": args.data}
    name = Path(args.weights).name if args.weights else "random weights"
    _report(args, result, f"{type(model).__name__} {model.variant.name} ({name}) on {args.data}",
            scores)  # fmt: skip
    return _write(args, result)


def _detection(args: argparse.Namespace, model) -> dict:  # model: heads.SSDLite
    from mobilenetv3.commands.detect import detect
    from mobilenetv3.data.coco import read_coco
    from mobilenetv3.runtime.evaluate_tasks import evaluate_detection

    coco = read_coco(args.annotations, args.data, model.num_classes)
    coco = replace(coco, images=coco.images[: args.num_images or None])
    result, found = evaluate_detection(lambda path: detect(model, path, 0.0), coco,
                                       skip_bad=args.skip_bad)  # fmt: skip
    if args.detections:
        write_json(args.detections, found)
    return result | {"annotations": args.annotations}


def _segmentation(args: argparse.Namespace, model) -> dict:  # model: heads.LRASPP
    from mobilenetv3.commands.segment import segment
    from mobilenetv3.data.cityscapes import TRAIN_NAMES, pair_masks
    from mobilenetv3.runtime.evaluate_tasks import evaluate_segmentation

    if model.num_classes != len(TRAIN_NAMES):
        raise ValueError(f"{args.weights or args.model} predicts {model.num_classes} classes; "
                         f"Cityscapes masks need {len(TRAIN_NAMES)} (its train ids)")  # fmt: skip
    pairs = pair_masks(args.data, args.masks, args.train_ids)[: args.num_images or None]
    return evaluate_segmentation(lambda path: segment(model, path)[1], pairs,
                                 train_ids=args.train_ids, skip_bad=args.skip_bad)  # fmt: skip


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _report(args: argparse.Namespace, result: dict, what: str, scores: str):  # -> a text file
    """The result line (stderr when the JSON goes to stdout), the partial and skipped notes."""
    report = sys.stderr if args.json == "-" else sys.stdout  # stdout carries the JSON then
    if result["partial"]:
        print(f"interrupted after {result['images']} images (results below are partial)",
              file=sys.stderr)  # fmt: skip
    print(f"{what}: {scores}  ({result['images']} images, {result['images_per_s']:.1f} img/s)",
          file=report)  # fmt: skip
    for bad in result["skipped"]:
        print(f"skipped {bad['path']}: {bad['error']}", file=sys.stderr)
    return report


def _write(args: argparse.Namespace, result: dict) -> int:
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        write_json(args.json, result)
    return 130 if result["partial"] else 0
