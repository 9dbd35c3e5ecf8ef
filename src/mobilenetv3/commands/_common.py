"""What several commands share: building the model a user named, writing JSON atomically."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser, *, weights_required: bool) -> None:
    parser.add_argument("--weights", required=weights_required, type=weights_arg,
                        help="TF checkpoint, release .tgz, .tflite, .safetensors, or the name "
                             "of a downloaded official release (e.g. v3_large_1.0)")  # fmt: skip
    parser.add_argument("--model", help="variant name (default: read from the weights)")


def weights_arg(value: str) -> str:
    """A weights file as given, or the verified cached file of an official release name."""
    from mobilenetv3.weights import hub

    if value not in hub.RELEASES or Path(value).exists():
        return value
    try:
        return str(hub.cached(value))
    except (FileNotFoundError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_model(args: argparse.Namespace):  # -> MobileNet
    from mobilenetv3 import create_model

    if args.weights is None and args.model is None:
        raise ValueError("give --weights (or --model for random weights)")
    if args.weights is None:
        print(f"warning: {args.model} has random weights (no --weights given)", file=sys.stderr)
    return create_model(args.model, weights=args.weights).eval()
