"""`mobilenetv3 train`: train or fine-tune on an ImageFolder; under torchrun, DDP."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mobilenetv3.commands._common import weights_arg

HELP = "train or fine-tune a model on an ImageFolder dataset (torchrun for several processes)"

# flag -> config key, for the flags that take a value
VALUE_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--weights": ("weights", weights_arg),
    "--data": ("data", str),
    "--val-data": ("val_data", str),
    "--output": ("output", str),
    "--num-classes": ("num_classes", int),
    "--epochs": ("epochs", int),
    "--batch-size": ("batch_size", int),
    "--max-steps": ("max_steps", int),
    "--checkpoint-every": ("checkpoint_every", int),
    "--seed": ("seed", int),
    "--lr": ("lr", float),
    "--image-size": ("image_size", int),
    "--num-workers": ("num_workers", int),
    "--amp": ("amp", str),
}
SWITCHES = {"--freeze-backbone": "freeze_backbone", "--sync-bn": "sync_bn", "--qat": "qat"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML/TOML file with every hyperparameter, or a bundled "
                        "one: slim_original, finetune_modern (flags override it)")  # fmt: skip
    for flag, (key, kind) in VALUE_FLAGS.items():
        parser.add_argument(flag, dest=key, type=kind, default=None)
    for flag, key in SWITCHES.items():
        parser.add_argument(flag, dest=key, action="store_true", default=None)
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue the run in --output (or from CHECKPOINT)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (value parsed as YAML), repeatable")  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def _overrides(args: argparse.Namespace) -> dict:
    import yaml

    keys = [key for key, _ in VALUE_FLAGS.values()] + list(SWITCHES.values()) + ["progress"]
    values = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
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
        print(f"val accuracy {result.metrics['val_accuracy']:.4f}")
    print(f"step {result.step}: wrote {result.model_path}")
    return 0
