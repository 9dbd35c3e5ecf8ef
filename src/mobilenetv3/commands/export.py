"""`mobilenetv3 export --weights W --format onnx|tflite|pt2 --output PATH`."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import add_model_arguments

HELP = "export to ONNX, float TFLite or torch.export (.pt2), checked against PyTorch"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, weights_required=False)
    parser.add_argument("--format", required=True, choices=("onnx", "tflite", "pt2"))
    parser.add_argument("--output", required=True, help="file to write (atomically)")
    parser.add_argument("--image-size", nargs=2, type=int, default=(224, 224),
                        metavar=("H", "W"), help="input height and width (default 224 224)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch dimension free (ONNX, pt2; TFLite input signature)")
    parser.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the file against PyTorch after writing it")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.commands._common import load_model
    from mobilenetv3.export import export, randomize

    model = load_model(args)
    if args.weights is None:
        randomize(model)  # non-trivial BatchNorm, so the check below means something
    result = export(model, args.output, args.format, image_size=tuple(args.image_size),
                    dynamic_batch=args.dynamic_batch, softmax=args.softmax,
                    check=not args.no_check)  # fmt: skip
    print(f"wrote {result}")
    return 0
