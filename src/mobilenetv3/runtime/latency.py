"""CPU latency of runners, timed round-robin so every engine shares the same background load.

    rows = benchmark(engine_sources(model, engines, folder, image_size), threads=[1, 2])
    print(format_table([{"model": name, **row} for row in rows]))

`benchmark` takes what each engine runs (a path, or a module for the torch engines; see
`mobilenetv3.export.engine_sources`) and returns one row per (engine, threads) with median/p90
ms and images/s; `format_table` prints them with the ratio to the fastest engine of each model
and thread count (`mobilenetv3 benchmark`, benchmarks/latency.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping

import numpy as np

from mobilenetv3.runtime.engines import ModelOrPath, Runner, make_runner


def time_runners(runners: list[Runner], x: np.ndarray, *, warmup: int = 5,
                 iters: int = 30) -> list[dict]:  # fmt: skip
    """Median and p90 wall time (ms) per runner, timed round-robin (one call of each in turn)
    after `warmup` untimed calls each, so every engine sees the same background load."""
    for runner in runners:
        for _ in range(warmup):
            runner(x)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(iters):
        for runner, samples in zip(runners, times, strict=True):
            runner.activate()
            start = time.perf_counter()
            runner(x)
            samples.append((time.perf_counter() - start) * 1e3)
    return [{"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
             "min_ms": float(np.min(t)), "iters": iters} for t in times]  # fmt: skip


def _runners(sources: Mapping[str, ModelOrPath], threads: list[int], batch_size: int,
             image_size: tuple) -> list[Runner]:  # fmt: skip
    """A runner per (engine, threads); torch runners share one model (and one compile). A source
    may be a torch runner made by the caller (on a GPU: `runtime.auto.torch_runner`)."""
    runners = []
    for engine, source in sources.items():
        base = source if isinstance(source, Runner) else None
        for n in threads:
            if base is not None and engine in ("torch", "torch_compile"):
                runner = copy.copy(base)  # torch sets its thread count per call
                runner.threads = n
            else:
                runner = make_runner(engine, source, threads=n, batch_size=batch_size,
                                     image_size=image_size)  # fmt: skip
            base = base or runner
            runners.append(runner)
    return runners


def benchmark(
    sources: Mapping[str, ModelOrPath],
    *,
    threads: list[int] | tuple[int, ...] = (1,),
    batch_size: int = 1,
    image_size: tuple[int, int] = (224, 224),
    warmup: int = 5,
    iters: int = 30,
) -> list[dict]:
    """One row per (engine, threads) of `sources` (engine -> what it runs): median/p90 ms of a
    `batch_size` batch, images/s."""
    image_size, threads = tuple(image_size), list(threads)
    x = np.random.default_rng(0).uniform(-1, 1, (batch_size, 3, *image_size)).astype(np.float32)
    runners = _runners(sources, threads, batch_size, image_size)
    timings = time_runners(runners, x, warmup=warmup, iters=iters)
    return [{"engine": r.kind, "threads": r.threads, "batch": batch_size, **t,
             "images_per_s": batch_size * 1e3 / t["median_ms"]}
            for r, t in zip(runners, timings, strict=True)]  # fmt: skip


def format_table(rows: list[dict], group: tuple[str, ...] = ("model", "threads")) -> str:
    """Rows as text: median and p90 ms, and each row's median over the fastest of its group."""
    best: dict[tuple, float] = {}
    for r in rows:
        key = tuple(r.get(k) for k in group)
        best[key] = min(best.get(key, float("inf")), r["median_ms"])
    head = f"{'model':<30} {'engine':<22} {'thr':>3} {'batch':>5} {'median':>9} {'p90':>9} " \
           f"{'img/s':>8} {'x fastest':>9}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r["median_ms"] / best[tuple(r.get(k) for k in group)]
        lines.append(f"{r.get('model', ''):<30} {r['engine']:<22} {r['threads']:>3} "
                     f"{r['batch']:>5} {r['median_ms']:>8.2f}ms {r['p90_ms']:>7.2f}ms "
                     f"{r['images_per_s']:>8.1f} {ratio:>8.2f}x")  # fmt: skip
    return "\n".join(lines)
