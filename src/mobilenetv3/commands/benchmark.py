"""`mobilenetv3 benchmark --model NAME | --weights W [--engines ...] [--threads ...]`."""

from __future__ import annotations

import argparse

from mobilenetv3.commands._common import add_model_arguments

HELP = "CPU latency of one model on each inference engine (median, p90, ratio to fastest)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, weights_required=False)
    parser.add_argument("--engines", nargs="+", default=["torch", "onnxruntime", "litert"],
                        help="of torch, torch_compile (adds a one-off compile), onnxruntime, "
                             "litert")
    parser.add_argument("--threads", nargs="+", type=int, default=[1],
                        help="thread counts to time, e.g. 1 2")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", nargs=2, type=int, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=30, help="timed runs per engine")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from mobilenetv3.commands._common import load_model
    from mobilenetv3.export import engine_sources
    from mobilenetv3.runtime.latency import benchmark, format_table

    model = load_model(args)
    size = tuple(args.image_size)
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-bench-") as tmp:
        sources = engine_sources(model, args.engines, Path(tmp), size)
        rows = benchmark(sources, threads=args.threads, batch_size=args.batch_size,
                         image_size=size, warmup=args.warmup, iters=args.iters)  # fmt: skip
    name = model.variant.name
    print(format_table([{"model": name, **row} for row in rows]))
    return 0
