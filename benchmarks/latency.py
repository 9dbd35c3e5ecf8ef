"""CPU latency of every engine on the deployed variants, in one run, with the official uint8
.tflite files through LiteRT as the anchor.

Batch 1 at 224x224, 1 and 2 threads, median and p90 per engine (torch eager, torch.compile,
ONNX Runtime, LiteRT on our float export; ExecuTorch and OpenVINO where their extras are
installed), the ratio to the fastest engine per row; then batch 32 at the same thread counts;
per model and setting, the winning engine, its lead over the runner-up, and how far it is from
the compute limit (MACs x 2 / (threads x 64 FLOP/cycle x clock): fp32 FMA on two AVX-512
units); a torch.profiler note on eager; JSON, a latency-vs-top-1 PNG (published top-1,
labelled so) and a PNG of every engine relative to the fastest with the compute limit
(`engines_chart`; machine and date in both titles) in benchmarks/results/. Every engine,
ExecuTorch included (its runner sizes XNNPACK's pool before loading a method), is measured
round-robin in this one process.

Run: `.venv/bin/python benchmarks/latency.py [--quick]` (full ~10 min on 2 cores, quick ~2).
torch.compile compiles once per model (~15-60 s on 2 cores), so the full run compiles only
V2 1.0 and V3 Large/Small 1.0 (Small only with --quick) unless `--compile-all`; the batch-32
table covers those three. Engines are timed round-robin so they share the background load.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # before anything imports torch: sets OMP_WAIT_POLICY
    OFFICIAL_UINT8,
    OMP_WAIT_POLICY,
    RESULTS,
    family_of,
    new_figure,
    published_top1,
    save_figure,
    shared_dir,
    write_json,
)

import mobilenetv3
from mobilenetv3.export import engine_sources
from mobilenetv3.runtime.auto import installed
from mobilenetv3.runtime.engines import EXTRA_KINDS, KINDS
from mobilenetv3.runtime.latency import benchmark, format_table

MULTIPLIERS = ("0.35", "0.5", "0.75", "1.0")
# The released models with published top-1 are finegrain (last layer kept wide) at V3 0.75
# and V2 < 1 (their published MACs match only so); V3 0.35/0.5 have no published figure.
FULL_MODELS = [f"v2_{m}{'_finegrain' if m != '1.0' else ''}" for m in MULTIPLIERS] + [
    f"v3_{size}_{m}{'_finegrain' if m == '0.75' else ''}"
    for size in ("large", "small") for m in MULTIPLIERS
] + ["v3_large_minimalistic_1.0", "v3_small_minimalistic_1.0"]  # fmt: skip
QUICK_MODELS = ["v2_1.0", "v3_large_1.0", "v3_small_1.0"]
ENGINES = KINDS + tuple(e for e in EXTRA_KINDS if installed(e))
FLOP_PER_CYCLE = 64  # fp32 per core: 2 AVX-512 FMA units x 16 lanes x 2 FLOP


def run_latency(models: list[str], engines: list[str], threads: list[int], *, warmup: int,
                iters: int, compile_models: set[str]) -> list[dict]:  # fmt: skip
    """Batch-1 rows for our models, then the official files through LiteRT."""
    rows = []
    for name in models:
        model = mobilenetv3.create_model(name).eval()
        chosen = [e for e in engines if e != "torch_compile" or name in compile_models]
        with tempfile.TemporaryDirectory(prefix="mobilenetv3-bench-") as tmp:
            sources = engine_sources(model, chosen, Path(tmp), (224, 224))
            for row in benchmark(sources, threads=threads, warmup=warmup, iters=iters):
                rows.append({"model": name, **row})
        print(f"  measured {name}", flush=True)
    rows += official_rows(threads, batch=1, warmup=warmup, iters=iters)
    return rows


def official_rows(threads: list[int], *, batch: int, warmup: int, iters: int) -> list[dict]:
    """The anchor: the official uint8 files in LiteRT (XNNPACK), same inputs and threads."""
    shared = shared_dir()
    if shared is None:
        return []
    rows = []
    for filename, (variant, _) in OFFICIAL_UINT8.items():
        path = shared / "pretrained" / filename
        for row in benchmark({"litert": path}, threads=threads, batch_size=batch, warmup=warmup,
                             iters=iters):  # fmt: skip
            rows.append({"model": f"{variant} (official uint8)", **row, "engine": "litert uint8"})
    return rows


def run_throughput(models: list[str], engines: list[str], threads: list[int], *, iters: int,
                   compile_models: set[str]) -> list[dict]:  # fmt: skip
    """Batch 32: images per second at each thread count."""
    rows = []
    for name in models:
        model = mobilenetv3.create_model(name).eval()
        chosen = [e for e in engines if e != "torch_compile" or name in compile_models]
        with tempfile.TemporaryDirectory(prefix="mobilenetv3-bench-") as tmp:
            sources = engine_sources(model, chosen, Path(tmp), (224, 224))
            for row in benchmark(sources, threads=threads, batch_size=32, warmup=2,
                                 iters=iters):  # fmt: skip
                rows.append({"model": name, **row})
    rows += official_rows(threads, batch=32, warmup=1, iters=max(2, iters // 2))
    return rows


def clock_hz() -> float:
    """The highest core clock /proc/cpuinfo reports (the nominal clock on most VMs)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return float("nan")
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    return max(mhz) * 1e6 if mhz else float("nan")


@functools.cache
def _macs(name: str) -> int:
    return mobilenetv3.count_macs(mobilenetv3.create_model(name))


def compute_limit_ms(name: str, batch: int, threads: int, clock: float) -> float:
    """The fp32 compute limit: MACs x 2 x batch / (threads x FLOP_PER_CYCLE x clock)."""
    return 2 * _macs(name) * batch / (threads * FLOP_PER_CYCLE * clock) * 1e3


def machine() -> str:
    """The CPU's model name and core count, as captions state them."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())  # fmt: skip
    return f"{name}, {os.cpu_count()} cores"


def winners(rows: list[dict], clock: float) -> list[str]:
    """Per model, threads and batch: the fastest engine, its lead over the runner-up, and its
    time over the compute limit (MACs x 2 x batch / (threads x FLOP_PER_CYCLE x clock))."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "official" not in r["model"]:
            groups.setdefault((r["model"], r["threads"], r["batch"]), []).append(r)
    lines = []
    for (name, threads, batch), pool in groups.items():
        ranked = sorted(pool, key=lambda r: r["median_ms"])
        best = ranked[0]
        limit_ms = compute_limit_ms(name, batch, threads, clock)
        lead = (f"{ranked[1]['median_ms'] / best['median_ms']:.2f}x ahead of {ranked[1]['engine']}"
                if len(ranked) > 1 else "alone")  # fmt: skip
        lines.append(f"{name:<28} thr {threads} batch {batch:>2}: {best['engine']:<13} "
                     f"{best['median_ms']:8.2f} ms, {lead}; compute limit {limit_ms:.2f} ms, "
                     f"winner at {best['median_ms'] / limit_ms:.1f}x it")  # fmt: skip
    return lines


def profile_eager(name: str = "v3_large_1.0", top: int = 8) -> dict[str, Any]:
    """Where eager time goes: torch.profiler self-CPU top ops, training graph (BatchNorm ops,
    F.pad from x.shape) vs the deployment graph the torch runner uses (folded, static pads)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mobilenetv3.core.deploy import deploy_graph

    model = mobilenetv3.create_model(name).eval()
    torch.set_num_threads(1)
    x = torch.rand(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    out = {}
    graphs = {"training graph": model, "deployment graph": deploy_graph(model, (224, 224))}
    for label, graph in graphs.items():
        graph = graph.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            for _ in range(3):
                graph(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(10):
                    graph(x)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        out[label] = {
            "ms_per_image": total / 10 / 1e3,
            "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total,
                         "calls_per_image": e.count / 10} for e in events[:top]],
        }  # fmt: skip
    return out


def fastest(rows: list[dict], model: str, threads: int, engines: set[str]) -> dict | None:
    pool = [r for r in rows if r["model"] == model and r["threads"] == threads
            and r["engine"] in engines]  # fmt: skip
    return min(pool, key=lambda r: r["median_ms"]) if pool else None


def checks(rows: list[dict], models: list[str], threads: list[int]) -> list[str]:
    """The two questions of the issue, answered per model at each thread count."""
    lines = []
    for n in threads:
        wins = slow = 0
        for name in models:
            best = fastest(rows, name, n, {"torch", "torch_compile", "onnxruntime"})
            ours = fastest(rows, name, n, {"litert"})
            eager, ort = fastest(rows, name, n, {"torch"}), fastest(rows, name, n, {"onnxruntime"})
            if best and ours:
                wins += best["median_ms"] <= ours["median_ms"]
            if eager and ort:
                slow += eager["median_ms"] > 1.5 * ort["median_ms"]
        lines.append(f"{n} thread(s): fastest non-LiteRT engine at least as fast as LiteRT on our "
                     f"float export for {wins}/{len(models)} models; torch eager more than 1.5x "
                     f"ONNX Runtime for {slow}/{len(models)} models")  # fmt: skip
    return lines


def _best_point(rows: list[dict], name: str, threads: int, published: dict) -> tuple | None:
    best = fastest(rows, name, threads, set(ENGINES))
    return (best["median_ms"], published[name]["top1"]) if best and name in published else None


def latency_chart(rows: list[dict], published: dict[str, dict], path: Path, threads: int = 1,
                  note: str = "") -> Path:  # fmt: skip
    """Latency (fastest engine per model, batch 1) vs published top-1: a line per family in
    depth-multiplier order, minimalistic models and the official uint8 files as markers;
    `note` (the machine and date) under the title."""
    from mobilenetv3.core.specs import parse_variant

    fig, ax = new_figure()
    names = sorted({r["model"] for r in rows if r["engine"] != "litert uint8"})
    for family in ("V2", "V3-Large", "V3-Small"):
        members = sorted((n for n in names if family_of(n) == family),
                         key=lambda n: parse_variant(n).depth_multiplier)  # fmt: skip
        points = [(p, n) for n in members if (p := _best_point(rows, n, threads, published))]
        if points:
            ax.plot([p[0] for p, _ in points], [p[1] for p, _ in points], "o-", label=family)
        for (ms, top1), name in points:
            ax.annotate(f"{parse_variant(name).depth_multiplier:g}", (ms, top1), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))  # fmt: skip
    for name in (n for n in names if "minimalistic" in n):
        if point := _best_point(rows, name, threads, published):
            ax.plot(*point, "D", color="gray", markerfacecolor="none")
            ax.annotate(name, point, fontsize=7, textcoords="offset points", xytext=(5, 3))
    for r in rows:
        base = r["model"].removesuffix(" (official uint8)")
        if r["threads"] == threads and r["engine"] == "litert uint8":
            top1 = next(t for _, (v, t) in OFFICIAL_UINT8.items() if v == base)
            ax.plot(r["median_ms"], top1, "k*", markersize=10)
            ax.annotate(f"{base} uint8 (official file, LiteRT)", (r["median_ms"], top1),
                        fontsize=7, textcoords="offset points", xytext=(5, 3))  # fmt: skip
    ax.set_xlabel(f"latency, ms (batch 1, 224x224, {threads} CPU thread(s), fastest engine)")
    ax.set_ylabel("ImageNet top-1, % (published figures)")
    ax.set_title("MobileNet CPU latency vs published top-1" + (f"\n({note})" if note else ""),
                 fontsize=10)  # fmt: skip
    ax.legend(loc="lower right")
    return save_figure(fig, path)


PANELS = ((1, 1), (1, 2), (32, 1), (32, 2))  # (batch, threads)


def engines_chart(rows: list[dict], clock: float, path: Path, note: str = "") -> Path:
    """Every engine's median over the fastest engine's, per model, a panel per batch size and
    thread count (log scale), with each model's compute limit on the same scale (a black dash
    below 1: how far the winner is from it). `note`: the machine and date."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ours = [r for r in rows if "official" not in r["model"]]
    engines = list(dict.fromkeys(r["engine"] for r in ours))
    fig, axes = new_figure((14.0, 9.0), panels=(2, 2))
    for ax, (batch, threads) in zip(axes.flat, PANELS, strict=True):
        panel = [r for r in ours if r["batch"] == batch and r["threads"] == threads]
        models = list(dict.fromkeys(r["model"] for r in panel))
        width = 0.8 / max(len(engines), 1)
        for i, name in enumerate(models):
            times = {r["engine"]: r["median_ms"] for r in panel if r["model"] == name}
            best = min(times.values())
            for j, engine in enumerate(engines):
                if engine in times:
                    ax.bar(i - 0.4 + (j + 0.5) * width, times[engine] / best, width,
                           color=f"C{j}", label=engine)  # fmt: skip
            limit = compute_limit_ms(name, batch, threads, clock) / best
            ax.hlines(limit, i - 0.4, i + 0.4, colors="black", label="compute limit")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter("{x:g}x")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"batch {batch}, {threads} thread(s)", fontsize=9)
        ax.set_ylabel("median / fastest engine's")
    handles: dict[str, Any] = {}  # one legend entry per engine, from every panel
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes.flat[0].legend(handles.values(), handles.keys(), fontsize=7, ncol=2)
    fig.suptitle(f"CPU latency per engine, relative to the fastest per model ({note})", fontsize=10)
    return save_figure(fig, path)


def engines_png(output: Path) -> Path:
    return output.with_name(f"{output.stem}_engines.png")


def caption(document: dict) -> str:
    """Machine, date and run length of a latency.py run, as its charts state them."""
    run = "--quick" if document.get("quick") else "full run"
    return f"{document.get('machine', 'unknown machine')}, {document.get('date', '?')}, {run}"


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 models, fewer iterations")
    parser.add_argument("--compile-all", action="store_true",
                        help="torch.compile every model (slow), not only the 1.0 ones")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=KINDS + EXTRA_KINDS)
    parser.add_argument("--models", nargs="+", help="instead of the full or --quick set")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS / "latency.json")
    parser.add_argument("--chart-only", action="store_true",
                        help="redraw the PNG from an existing --output JSON, measure nothing")
    args = parser.parse_args(argv)
    if args.chart_only:
        saved = json.loads(args.output.read_text())
        print(latency_chart(saved["latency_batch1"], saved["published_top1"],
                            args.output.with_suffix(".png"), min(args.threads), caption(saved)),
              engines_chart(saved["latency_batch1"] + saved["throughput_batch32"],
                            saved["clock_hz"], engines_png(args.output), caption(saved)))
        return 0

    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    warmup, iters = (3, 15) if args.quick else (5, 30)
    compile_models = set(models) if args.compile_all else (
        {"v3_small_1.0"} if args.quick else set(QUICK_MODELS)
    )
    print(f"latency: {len(models)} models, engines {args.engines}, threads {args.threads}, "
          f"{iters} timed runs after {warmup} warm-up; torch.compile for {sorted(compile_models)}; "
          f"OMP_WAIT_POLICY={OMP_WAIT_POLICY}; load average {os.getloadavg()}")
    rows = run_latency(models, args.engines, args.threads, warmup=warmup, iters=iters,
                       compile_models=compile_models)  # fmt: skip
    throughput = run_throughput(args.models or QUICK_MODELS, args.engines, args.threads,
                                iters=3 if args.quick else 6, compile_models=compile_models)
    print("\nBatch 1, 224x224 (x fastest = median over the fastest engine of that model/threads)")
    print(format_table(rows))
    print(f"\nBatch 32 throughput, {args.threads} thread(s)")
    print(format_table(throughput))
    answers = checks(rows, models, args.threads)
    print("\n" + "\n".join(answers))
    clock = clock_hz()
    won = winners(rows + throughput, clock)
    print(f"\nWinners (compute limit at {clock / 1e9:.2f} GHz, {FLOP_PER_CYCLE} FLOP/cycle/core):")
    print("\n".join(won))
    prof = profile_eager()
    print("\nEager profile, v3_large_1.0, batch 1, channels_last, 1 thread:")
    for label, entry in prof.items():
        ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in entry["top_ops"][:6])
        print(f"  {label}: {entry['ms_per_image']:.1f} ms self-CPU/image; {ops}")
    published = published_top1()
    document = {
        "machine": machine(), "date": datetime.date.today().isoformat(),
        "quick": args.quick, "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "load_average": os.getloadavg(),
        "omp_wait_policy": OMP_WAIT_POLICY,
        "latency_batch1": rows, "throughput_batch32": throughput, "checks": answers,
        "winners": won, "clock_hz": clock,
        "profile": prof, "published_top1": published,
    }  # fmt: skip
    write_json(args.output, document)
    chart = latency_chart(rows, published, args.output.with_suffix(".png"), min(args.threads),
                          caption(document))  # fmt: skip
    engines = engines_chart(rows + throughput, clock, engines_png(args.output), caption(document))
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(f"wrote {args.output}, {chart} and {engines}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
