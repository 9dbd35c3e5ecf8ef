"""`mobilenetv3 train`: train or fine-tune a classifier on an ImageFolder, or a detection /
segmentation head model (`--task`); under torchrun, DDP."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenetv3.commands._common import (
    ImageSize,
    add_option,
    device_arg,
    nonnegative_int,
    positive_float,
    positive_int,
    weights_arg,
    writable_path,
)

HELP = ("train or fine-tune a classifier on an ImageFolder, or an SSDLite / LR-ASPP model "
        "(--task), torchrun for several processes")

# flag -> (config key, type, help) for the flags that take a value; a flag overrides --config,
# which overrides the defaults of `train.config.TrainConfig` (shown in --help)
VALUE_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--task": ("task", str, "classification, detection (an ssdlite_* --model) or segmentation "
                            "(an lraspp_* --model)"),
    "--model": ("model", str, "variant name (default: read from --weights)"),
    "--weights": ("weights", weights_arg,
                  "weights to start from: a file or a downloaded official release's name"),
    "--data": ("data", str, "training images: an ImageFolder (one sub-folder per class); for "
                            "detection/segmentation a folder of images labelled by "
                            "--annotations/--masks, or synthetic:N (N shape images on noise)"),
    "--val-data": ("val_data", str, "validation data as --data, evaluated after each epoch"),
    "--annotations": ("annotations", str, "detection: COCO annotations (instances_*.json) of "
                                          "--data, the folder of its images"),
    "--val-annotations": ("val_annotations", str, "detection: COCO annotations of --val-data"),
    "--masks": ("masks", str, "segmentation: folder of Cityscapes masks (<X>_gtFine_labelIds.png "
                              "for --data's <X>_leftImg8bit.png)"),
    "--val-masks": ("val_masks", str, "segmentation: folder of the masks of --val-data"),
    "--output": ("output", writable_path, "run folder: config, checkpoints, model.safetensors"),
    "--num-classes": ("num_classes", positive_int, "classes (default: the class folders)"),
    "--epochs": ("epochs", positive_int, "passes over --data"),
    "--batch-size": ("batch_size", positive_int, "images per step and process"),
    "--max-steps": ("max_steps", positive_int, "stop after this many steps"),
    "--checkpoint-every": ("checkpoint_every", nonnegative_int,
                           "steps between checkpoints (0: at each epoch end only)"),
    "--seed": ("seed", nonnegative_int, "random seed"),
    "--lr": ("lr", positive_float, "learning rate for a global batch of lr_reference_batch"),
    "--workers": ("num_workers", nonnegative_int, "data loading processes (0: in this one)"),
    "--device": ("device", device_arg, "where to train: auto (a GPU where there is one), cpu, "
                                       "cuda, cuda:N"),
}  # fmt: skip
OLD_SPELLINGS = {"--workers": ("--num-workers",)}
SWITCHES = {
    "--freeze-backbone": ("freeze_backbone", "train only the classifier"),
    "--sync-bn": ("sync_bn", "synchronise BatchNorm statistics across processes"),
    "--qat": ("qat", "quantization-aware fine-tuning; ends with model_int8.pt2"),
    "--train-ids": ("train_ids", "segmentation: the masks hold train ids "
                                 "(*_gtFine_labelTrainIds.png)"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    from mobilenetv3.train.config import AMP, TrainConfig

    defaults = TrainConfig()
    parser.add_argument("--config", help="YAML/TOML file with every hyperparameter, or a bundled "
                        "one: slim_original, finetune_modern, ssdlite_zoo, lraspp_deeplab "
                        "(flags override it)")  # fmt: skip
    for flag, (key, kind, text) in VALUE_FLAGS.items():
        add_option(parser, flag, old=OLD_SPELLINGS.get(flag, ()), dest=key, type=kind,
                   metavar=flag[2:].upper().replace("-", "_"),
                   help=_with_default(text, getattr(defaults, key)))  # fmt: skip
    parser.add_argument("--image-size", action=ImageSize,
                        help=_with_default("training crop N (square)", defaults.image_size))
    parser.add_argument("--amp", choices=AMP, help=_with_default("autocast", defaults.amp))
    for flag, (key, text) in SWITCHES.items():
        parser.add_argument(flag, dest=key, action="store_true", default=None, help=text)
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue the run in --output (or from CHECKPOINT)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (value parsed as YAML), repeatable")  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bar")  # fmt: skip


def _with_default(text: str, default: Any) -> str:
    return text if default is None else f"{text} (default: {default}, unless --config sets it)"


def _overrides(args: argparse.Namespace) -> dict:
    import yaml

    keys = [key for key, *_ in VALUE_FLAGS.values()] + [key for key, _ in SWITCHES.values()]
    values = {key: getattr(args, key) for key in [*keys, "amp", "progress"]
              if getattr(args, key) is not None}  # fmt: skip
    if args.image_size is not None:
        height, width = args.image_size
        if height != width:
            raise ValueError(f"train crops squares: --image-size {height} {width} must be one N")
        values["image_size"] = height
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = yaml.safe_load(text)
    return values


def _base_config(args: argparse.Namespace) -> tuple[dict, str]:
    """The config file, else (on --resume) the run's own config.yaml, else nothing."""
    from mobilenetv3.train import config as cfg

    if args.config:
        path = Path(args.config)
        if not path.exists() and not path.suffix:
            path = cfg.bundled_config(args.config)
        return cfg.read_file(path), str(path)
    saved = Path(args.output or "") / "config.yaml"
    if args.resume and args.output and saved.is_file():
        return cfg.read_file(saved), str(saved)
    return {}, "flags"


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.train import config as cfg
    from mobilenetv3.train.loop import train

    base, source = _base_config(args)
    config = cfg.merge(base, _overrides(args), source=source).validate()
    result = train(config, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if result.metrics.get("val_accuracy") is not None:
        kind = {"classification": "top1", "detection": "anchor accuracy",
                "segmentation": "pixel accuracy"}[config.task]  # fmt: skip
        print(f"val {kind} {100 * result.metrics['val_accuracy']:.2f}")
    for key, name in (("val_map", "COCO mAP"), ("val_miou", "mIoU")):
        if result.metrics.get(key) is not None:
            print(f"val {name} {result.metrics[key]:.2f}")
    if result.metrics.get("val_note"):
        print(f"note: {result.metrics['val_note']}")
    print(f"step {result.step}: wrote {result.model_path}")
    return 0
