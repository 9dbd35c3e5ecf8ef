"""`mobilenetv3 benchmark --model NAME | --weights W [--engines ...] [--threads ...]`."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import (
    ENGINES,
    add_dequantize,
    add_image_size,
    add_model_arguments,
    add_option,
    device_arg,
    nonnegative_int,
    positive_int,
)

HELP = "CPU latency of one model on each inference engine (median, p90, ratio to fastest)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, weights_required=False)
    add_dequantize(parser)
    add_option(parser, "--engine", old=("--engines",), nargs="+", choices=ENGINES,
               default=["torch", "onnxruntime", "litert"],
               help="engines to time (torch_compile adds a one-off compile)")  # fmt: skip
    parser.add_argument("--threads", nargs="+", type=positive_int, default=[1],
                        help="thread counts to time, e.g. 1 2")  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="images per timed call")  # fmt: skip
    add_image_size(parser, (224, 224))
    parser.add_argument("--iters", type=positive_int, default=30, help="timed runs per engine")
    parser.add_argument("--warmup", type=nonnegative_int, default=5, help="untimed runs first")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="where the torch engine runs: auto (a GPU where there is one), cpu, "
                             "cuda, cuda:N; the other engines run on the CPU")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from mobilenetv3.commands._common import load_model
    from mobilenetv3.export import engine_sources
    from mobilenetv3.runtime.auto import resolve_device, torch_runner
    from mobilenetv3.runtime.latency import benchmark, format_table

    model = load_model(args)
    size, device = tuple(args.image_size), resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-bench-") as tmp:
        sources = engine_sources(model, args.engine, Path(tmp), size)
        if "torch" in sources:
            sources["torch"] = torch_runner(model, device, args.threads[0], size)
        rows = benchmark(sources, threads=args.threads, batch_size=args.batch_size,
                         image_size=size, warmup=args.warmup, iters=args.iters)  # fmt: skip
    name = model.variant.name + (f" (torch on {device})" if device.type != "cpu" else "")
    print(format_table([{"model": name, **row} for row in rows]))
    return 0
