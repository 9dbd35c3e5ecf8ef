"""What several commands share: one spelling and one type per idea (weights, engine, image
size, counts, JSON output), and building the model a user named."""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

ENGINES = ("torch", "torch_compile", "onnxruntime", "litert", "executorch", "openvino")
# --format -> file extension
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "pt2": ".pt2", "pte": ".pte"}
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def positive_int(text: str) -> int:
    """A count: 1 or more."""
    return _number(text, int, 1, "a whole number >= 1")


def nonnegative_int(text: str) -> int:
    """A count where 0 means none (workers in-process, no warm-up, checkpoint only per epoch)."""
    return _number(text, int, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, 0.0, "a number > 0", strict=True)


def probability(text: str) -> float:
    """A score threshold: 0 (keep everything) to 1."""
    return _number(text, float, 0.0, "a number from 0 to 1", high=1.0)


def _number(text: str, kind: type, low: float, wanted: str, strict: bool = False,
            high: float = math.inf) -> Any:  # fmt: skip
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not math.isfinite(value) or value < low or value > high or (strict and value == low):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
    return value


class ImageSize(argparse.Action):
    """`--image-size N` (square) or `--image-size H W`, stored as (H, W)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("metavar", "N")
        super().__init__(option_strings, dest, nargs="+", type=positive_int, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        if len(values) > 2:
            parser.error(f"{option_string} takes N or H W, got {len(values)} values")
        setattr(namespace, self.dest, (values[0], values[-1]))


def add_option(parser: argparse.ArgumentParser, flag: str, *, old: tuple[str, ...] = (),
               **kwargs: Any) -> argparse.Action:  # fmt: skip
    """`flag`, plus its earlier spellings `old`: still accepted for one release, not shown."""
    action = parser.add_argument(flag, **kwargs)
    hidden = {**kwargs, "dest": action.dest, "help": argparse.SUPPRESS,
              "default": argparse.SUPPRESS, "required": False}  # fmt: skip
    for spelling in old:
        parser.add_argument(spelling, **hidden)
    return action


def add_model_arguments(parser: argparse.ArgumentParser, *, weights_required: bool) -> None:
    parser.add_argument("--weights", required=weights_required, type=weights_arg,
                        help="TF checkpoint, release .tgz, .tflite, .safetensors, or the name "
                             "of a downloaded official release (e.g. v3_large_1.0)")  # fmt: skip
    parser.add_argument("--model", help="variant name (default: read from the weights)")


def add_image_size(parser: argparse.ArgumentParser, default: tuple[int, int] | None) -> None:
    parser.add_argument("--image-size", action=ImageSize, default=default,
                        help="input size: N for N x N, or H W")  # fmt: skip


def add_json_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", nargs="?", const="-", type=json_path, metavar="PATH",
                        help="write the results as JSON to PATH (atomically), or to stdout "
                             "when no PATH is given")  # fmt: skip


def weights_arg(value: str) -> str:
    """A weights file as given, or the verified cached file of an official release name."""
    from mobilenetv3.weights import hub

    if value not in hub.RELEASES or Path(value).exists():
        return value
    try:
        return str(hub.cached(value))
    except (FileNotFoundError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def json_path(value: str) -> str:
    if value == "-":
        return value
    if not value.endswith(".json"):
        raise argparse.ArgumentTypeError(f"{value}: a JSON output file must end in .json")
    return writable_path(value)


def writable_path(value: str) -> str:
    """Checked before any work: the file's folder is made now (the run would make it anyway)
    and must be writable, so a long run never ends in an unwritable output."""
    folder = Path(value).absolute().parent
    if folder.exists() and not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {value}: cannot make {folder} "
                                         f"({e.strerror})") from e  # fmt: skip
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value}: {folder} is not a writable folder")
    return value


def check_suffix(path: str, file_format: str) -> None:
    """An output's extension must say what it holds (`q.tflite` is never an ONNX file)."""
    wanted = SUFFIXES[file_format]
    if Path(path).suffix.lower() != wanted:
        raise ValueError(f"--output {path}: --format {file_format} writes a {wanted} file; "
                         f"give the output that extension")  # fmt: skip


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="auto", choices=("auto", *ENGINES),
                        help="what runs the model; auto: the fastest installed for the file "
                             "that agrees with torch (see README)")  # fmt: skip
    add_device(parser, "where torch runs")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="engine threads (default: half the cores; decoding uses the rest)")
    parser.add_argument("--workers", type=nonnegative_int, default=2,
                        help="decoding threads (0: decode in the main thread)")  # fmt: skip


def add_device(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--device", default="auto", type=device_arg,
                        help=f"{what}: auto (a GPU if there is one), cpu, cuda, cuda:N")


def device_arg(value: str) -> str:
    if not DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def add_dequantize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dequantize", action="store_true",
                        help="run an 8-bit .tflite's weights as a float model (default: the "
                             "int8 model the file is, on every engine)")  # fmt: skip


def runs_as_file(args: argparse.Namespace) -> bool:
    """.onnx, .pt2 and .pte files (float or int8) run as the files they are, in their engine; so
    does an 8-bit .tflite (an int8 model) unless --dequantize asks for its float weights."""
    suffix = Path(args.weights).suffix.lower() if args.weights else ""
    if suffix in (".onnx", ".pt2", ".pte"):
        return True
    return suffix == ".tflite" and not args.dequantize and _quantized(args.weights)


def precision(args: argparse.Namespace) -> str:
    int8 = args.weights is not None and runs_as_file(args) and _quantized(args.weights)
    return "int8" if int8 else "float32"


@functools.cache
def _quantized(path: str) -> bool:
    from mobilenetv3.quantize import is_quantized_file

    return is_quantized_file(path)


def load_for_engine(args: argparse.Namespace):  # -> MobileNet | quantize.Int8Model
    """The model named by the arguments; a file that runs as it is: its note (variant, classes,
    preprocessing, labels) where we wrote one, else slim's defaults with 1001 classes."""
    from mobilenetv3.quantize import int8_model_info

    return int8_model_info(args.weights) if runs_as_file(args) else load_model(args)


def engine_runner(args: argparse.Namespace, model, batch: int):  # -> engines.Runner
    """The model in `args.engine` on `args.device` (torch: the BN-folded deployment graph);
    LiteRT runs a float .tflite as it is; files that run as they are do so in their engine."""
    from mobilenetv3.export import export_runner
    from mobilenetv3.quantize import int8_runner
    from mobilenetv3.runtime.auto import (
        auto_runner,
        resolve_device,
        tflite_int8_runner,
        torch_runner,
    )
    from mobilenetv3.runtime.evaluate import model_preprocess

    weights, size = args.weights, tuple(model_preprocess(model).image_size)
    threads = args.threads or max(1, (os.cpu_count() or 2) // 2)
    device = resolve_device(args.device)
    as_file = runs_as_file(args)
    if as_file and device.type != "cpu" and args.device != "auto":
        raise ValueError(f"{weights} runs as the file it is, on the CPU: give --device cpu")
    if args.engine == "auto":
        return auto_runner(model, weights if as_file else None, threads=threads,
                           batch_size=batch, image_size=size, device=device)  # fmt: skip
    if as_file and Path(weights).suffix.lower() == ".tflite":
        return tflite_int8_runner(weights, args.engine, threads=threads, batch_size=batch)
    if as_file:
        return int8_runner(weights, args.engine, threads=threads, batch_size=batch,
                           image_size=size)  # fmt: skip
    if args.engine == "torch":
        return torch_runner(model, device, threads, size)
    if device.type != "cpu":
        raise ValueError(f"--engine {args.engine} runs on the CPU: give --device cpu, or "
                         "--engine torch (or auto) for the GPU")  # fmt: skip
    float_tflite = Path(weights or "").suffix.lower() == ".tflite"
    source = weights if args.engine == "litert" and float_tflite else model
    return export_runner(args.engine, source, threads=threads, batch_size=batch, image_size=size)


def add_image_limit_argument(parser: argparse.ArgumentParser) -> None:
    """--max-pixels: images declaring more pixels are refused before decoding (see
    `data.preprocess.load_image`); default Pillow's 89,478,485."""
    parser.add_argument("--max-pixels", type=positive_int, metavar="N",
                        help="refuse images declaring more pixels (default 89478485)")  # fmt: skip


def what_ran(args: argparse.Namespace, runner) -> dict[str, str | None]:  # runner: engines.Runner
    """Engine, precision and file of a run: what every result line and JSON says."""
    return {"engine": runner.kind, "precision": precision(args),
            "weights": args.weights,
            "engine_chosen_by": "auto" if args.engine == "auto" else "user"}  # fmt: skip


def describe(ran: dict[str, str | None]) -> str:
    """`litert (auto), int8, v3-small_224_1.0_uint8.tflite`"""
    by = " (auto)" if ran["engine_chosen_by"] == "auto" else ""
    name = Path(ran["weights"]).name if ran["weights"] else "random weights"
    return f"{ran['engine']}{by}, {ran['precision']}, {name}"


def load_model(args: argparse.Namespace):  # -> MobileNet
    from mobilenetv3 import create_model

    if args.weights is None and args.model is None:
        raise ValueError("give --weights (or --model for random weights)")
    if args.weights is None:
        print(f"warning: {args.model} has random weights (no --weights given)", file=sys.stderr)
    dequantize = getattr(args, "dequantize", False)  # commands without the flag: float weights
    return create_model(args.model, weights=args.weights, dequantize=dequantize).eval()



def load_task_model(args: argparse.Namespace, kind: type, task: str, example: str):
    """The model named by the arguments, refused in one line unless it is a `kind` model (a
    classification checkpoint given to `detect`, a detection one to `segment`)."""
    model = load_model(args)
    if not isinstance(model, kind):
        raise ValueError(f"{args.weights or args.model} is not a {task} model (it builds "
                         f"{type(model).__name__}); give a {task} checkpoint or --model "
                         f"{example}")  # fmt: skip
    return model
