"""`mobilenetv3 convert SRC DST.safetensors`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilenetv3.commands._common import weights_arg, writable_path

HELP = "convert a TF checkpoint, release .tgz or .tflite into a .safetensors file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=weights_arg,
                        help="checkpoint prefix/.index/folder, .tgz, .tflite, .safetensors or "
                             "a downloaded official release's name")  # fmt: skip
    parser.add_argument("output", type=writable_path,
                        help="the .safetensors file to write (atomically)")  # fmt: skip
    parser.add_argument("--model", help="variant name, checked against the weights")
    parser.add_argument("--no-ema", action="store_true",
                        help="load the raw variables instead of the EMA shadows")  # fmt: skip
    parser.add_argument("--dequantize", action="store_true",
                        help="store an 8-bit .tflite's weights dequantized, as a float model")


def run_convert(source: str | Path, output: str | Path, model_name: str | None = None,
                use_ema: bool = True, dequantize: bool = False) -> Path:  # fmt: skip
    """Read any weights and write them with their variant, preprocessing and labels."""
    from mobilenetv3 import create_model
    from mobilenetv3.data.preprocess import SLIM_EVAL
    from mobilenetv3.weights.safetensors_io import save_safetensors

    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"the output must end in .safetensors, got {output.name}")
    model = create_model(model_name, weights=source, use_ema=use_ema, dequantize=dequantize)
    info = getattr(model, "pretrained_info", {})
    extra = {"preprocess": info.get("preprocess", SLIM_EVAL.to_dict()), "source": str(source)}
    if "labels" in info:
        extra["labels"] = info["labels"]
    return save_safetensors(model, output, extra=extra)


def run(args: argparse.Namespace) -> int:
    path = run_convert(args.source, args.output, args.model, use_ema=not args.no_ema,
                       dequantize=args.dequantize)  # fmt: skip
    print(f"wrote {path}")
    return 0
