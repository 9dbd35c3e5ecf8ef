"""What several commands share: building the model a user named, writing JSON atomically."""

from __future__ import annotations

import argparse
import sys


def add_model_arguments(parser: argparse.ArgumentParser, *, weights_required: bool) -> None:
    parser.add_argument("--weights", required=weights_required,
                        help="TF checkpoint, release .tgz, .tflite or .safetensors")  # fmt: skip
    parser.add_argument("--model", help="variant name (default: read from the weights)")


def add_image_limit_argument(parser: argparse.ArgumentParser) -> None:
    """--max-pixels: images declaring more pixels are refused before decoding (see
    `data.preprocess.load_image`); default Pillow's 89,478,485."""
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help="refuse images declaring more pixels (default 89478485)")  # fmt: skip


def load_model(args: argparse.Namespace):  # -> MobileNet
    from mobilenetv3 import create_model

    if args.weights is None and args.model is None:
        raise ValueError("give --weights (or --model for random weights)")
    if args.weights is None:
        print(f"warning: {args.model} has random weights (no --weights given)", file=sys.stderr)
    return create_model(args.model, weights=args.weights).eval()
