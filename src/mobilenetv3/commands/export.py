"""`mobilenetv3 export --weights W --format onnx|tflite|pt2|pte --output PATH`."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import (
    SUFFIXES,
    add_dequantize,
    add_device,
    add_image_size,
    add_model_arguments,
    check_suffix,
    writable_path,
)

HELP = ("export to ONNX, float TFLite, torch.export (.pt2) or ExecuTorch (.pte), checked "
        "against PyTorch")


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, weights_required=False)
    add_dequantize(parser)
    parser.add_argument("--format", required=True, choices=tuple(SUFFIXES),
                        help="ONNX, float TFLite, torch.export program or ExecuTorch program "
                             "(XNNPACK-delegated; needs the [executorch] extra)")  # fmt: skip
    parser.add_argument("--output", required=True, type=writable_path,
                        help="file to write (atomically), ending in .onnx, .tflite, .pt2 or .pte")
    add_image_size(parser, None)  # None: 224, SSDLite's 320, LR-ASPP's 1024 x 2048
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="leave the batch dimension free (ONNX, pt2, pte; TFLite "
                             "input signature)")
    parser.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the file against PyTorch after writing it")  # fmt: skip
    add_device(parser, "where PyTorch's side of the check runs (the file runs on the CPU)")


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.commands._common import load_model
    from mobilenetv3.export import export, randomize
    from mobilenetv3.export.check import reference_device
    from mobilenetv3.export.heads import default_image_size
    from mobilenetv3.heads import SSDLite
    from mobilenetv3.runtime.auto import resolve_device

    check_suffix(args.output, args.format)
    device = resolve_device(args.device)
    model = load_model(args)
    if args.weights is None:  # non-trivial BatchNorm, so the check below means something;
        # on SSDLite's 1x1 maps, 2 images would give BatchNorm the variance of 2 numbers
        randomize(model, batch=8 if isinstance(model, SSDLite) else 2)
    image_size = args.image_size or default_image_size(model)
    with reference_device(device):
        result = export(model, args.output, args.format, image_size=image_size,
                        dynamic_batch=args.dynamic_batch, softmax=args.softmax,
                        check=not args.no_check)  # fmt: skip
    print(f"wrote {result}")
    return 0
