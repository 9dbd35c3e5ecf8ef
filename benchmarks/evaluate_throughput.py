"""Where evaluation time goes: decode, preprocess and model images/s measured separately, then
`evaluate` end to end on the 1000 samples (the goal: under 30 s for Small on 2 cores).

    python benchmarks/evaluate_throughput.py [--weights W] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _common import RESULTS, shared_dir, write_json

from mobilenetv3 import create_model
from mobilenetv3.data.datasets import list_samples
from mobilenetv3.data.preprocess import load_image, preprocess_image
from mobilenetv3.runtime.engines import make_runner
from mobilenetv3.runtime.evaluate import evaluate, model_preprocess


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def timed(fn, items):
    start = time.perf_counter()
    out = [fn(item) for item in items]
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = shared_dir()
    default = shared / "pretrained" / "v3-small_224_1.0_uint8.tflite" if shared else None
    parser.add_argument("--weights", type=Path, default=default)
    samples_dir = shared / "images" / "imagenet-samples" if shared else None
    parser.add_argument("--data", type=Path, default=samples_dir)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    model = create_model(weights=args.weights, dequantize=True)  # the float model of 8-bit files
    preprocess = model_preprocess(model)
    samples = list_samples(args.data)[: args.limit]
    threads = max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)

    images, decode_s = timed(lambda s: load_image(s[0]), samples)
    tensors, preprocess_s = timed(lambda im: preprocess_image(im, preprocess), images)
    runner = make_runner("torch", model, threads=threads, batch_size=args.batch_size,
                         image_size=preprocess.image_size)  # fmt: skip
    batches = [torch.stack(tensors[i : i + args.batch_size]).numpy()
               for i in range(0, len(tensors), args.batch_size)]  # fmt: skip
    runner(batches[0])  # warm-up
    _, model_s = timed(runner, batches)
    start = time.perf_counter()
    result = evaluate(lambda x: runner(x.numpy()), samples, preprocess=preprocess, progress=False,
                      batch_size=args.batch_size)  # fmt: skip
    end_to_end_s = time.perf_counter() - start

    n = len(samples)
    rows = [
        ("decode (1 thread)", rate(n, decode_s), decode_s),
        ("preprocess (1 thread)", rate(n, preprocess_s), preprocess_s),
        (f"model ({threads} thread, batch {args.batch_size})", rate(n, model_s), model_s),
        ("evaluate end to end", rate(n, end_to_end_s), end_to_end_s),
    ]
    print(f"{model.variant.name} on {n} images (load average {os.getloadavg()[0]:.1f})")
    print(f"{'stage':36s} {'images/s':>10s} {'seconds':>9s}")
    for stage, per_s, seconds in rows:
        print(f"{stage:36s} {per_s:>10.1f} {seconds:>9.2f}")
    print(f"top1 {result['top1']:.2f}  top5 {result['top5']:.2f}")
    document = {
        "model": model.variant.name, "weights": str(args.weights), "images": n,
        "stages": [{"stage": s, "images_per_s": r, "seconds": t} for s, r, t in rows],
        "top1": result["top1"], "top5": result["top5"],
        "load_average": os.getloadavg()[0], "threads": threads,
    }  # fmt: skip
    print(f"wrote {write_json(RESULTS / 'evaluate_throughput.json', document)}")


if __name__ == "__main__":
    main()
