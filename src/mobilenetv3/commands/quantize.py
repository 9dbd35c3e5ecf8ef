"""`mobilenetv3 quantize --weights W --calibration DIR --format onnx|pt2|tflite|pte --output P`."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import (
    add_device,
    add_image_limit_argument,
    add_model_arguments,
    check_suffix,
    positive_int,
    writable_path,
)

HELP = ("int8 post-training quantization calibrated on real photos (ONNX Runtime .onnx, "
        "torch .pt2, LiteRT .tflite, ExecuTorch .pte)")


def configure(parser: argparse.ArgumentParser) -> None:
    from mobilenetv3.quantize import FORMATS, METHODS  # torch: only when this command runs
    from mobilenetv3.quantize.calibration import SUBSETS

    add_model_arguments(parser, weights_required=True)
    parser.add_argument("--calibration", required=True, metavar="DIR",
                        help="folder of calibration photos (keep them out of evaluation)")
    parser.add_argument("--num-images", type=positive_int, default=500,
                        help="calibration photos used, spread over the folder")  # fmt: skip
    parser.add_argument("--subset", choices=SUBSETS, default="all",
                        help="odd/even: only photos of odd/even class index (labelled folders), "
                             "so the other half stays unseen for evaluation")  # fmt: skip
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="onnx: ONNX Runtime QDQ; pt2: torch.export int8 Q/DQ program; "
                             "tflite: int8 TFLite, float in/out; pte: ExecuTorch XNNPACK int8 "
                             "(needs the [executorch] extra)")  # fmt: skip
    parser.add_argument("--method", choices=sorted({m for ms in METHODS.values() for m in ms}),
                        help="activation ranges. onnx: percentile (99.999, default), entropy, "
                             "minmax. pt2: percentile. pte: histogram (the XNNPACK quantizer's). "
                             "tflite: percentile (99.99), minmax, or "
                             "learned: the "
                             "ranges of the 8-bit .tflite given as --weights (learned by its "
                             "QAT; the default for such weights)")  # fmt: skip
    parser.add_argument("--output", required=True, type=writable_path,
                        help="int8 file to write (atomically), its extension the format's")
    add_image_limit_argument(parser)
    add_device(parser, "where PyTorch's side of the int8 TFLite check runs (the file runs on "
                       "the CPU)")


def run(args: argparse.Namespace) -> int:
    from mobilenetv3.commands._common import load_model
    from mobilenetv3.export.check import reference_device
    from mobilenetv3.quantize import default_method, quantize_folder
    from mobilenetv3.runtime.auto import resolve_device

    check_suffix(args.output, args.format)
    device = resolve_device(args.device)
    args.dequantize = True  # an 8-bit .tflite given here is float weights (and its ranges)
    model = load_model(args)
    method = args.method or default_method(model, args.format)
    with reference_device(device):
        path = quantize_folder(model, args.calibration, args.output, args.format,
                               num_images=args.num_images, subset=args.subset,
                               method=method, max_pixels=args.max_pixels)  # fmt: skip
    print(f"wrote int8 {args.format} ({method} activation ranges) -> {path}")
    return 0
