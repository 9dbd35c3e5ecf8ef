"""Float vs int8 per engine: latency (batch 1 and 32, 1 and 2 threads) and top-1, in one run.

Models (V3-Small 1.0 from the official uint8 file's weights unless --weights): float and
ONNX Runtime int8 (QDQ, percentile calibration) in onnxruntime; our float export and our int8
TFLite (percentile calibration) in LiteRT (XNNPACK); float and int8 .pt2 (FX x86 Q/DQ
program) in torch eager, and with --inductor both through torch.compile (compiling the int8
program takes minutes on 2 cores). Weights read from an official 8-bit .tflite add that file
in LiteRT (XNNPACK, and builtin kernels only: their rounding differs, which bounds how alike
two int8 runs of one network can be) and our int8 TFLite with the file's learned ranges.
Where the [openvino] extra is installed: the float ONNX export and the ORT int8 (QDQ) file in
OpenVINO (its int8 kernels: `runtime.openvino_graph`). (ExecuTorch sizes
its thread pool once per process, so its 1- and 2-thread rows cannot share this run.)
Top-1 and agreement with the official file: all 1000 sample photos in two folds (calibrate on
the odd-label half, evaluate the even-label half, and back), so no photo is evaluated by a
model calibrated on it. Engines are timed round-robin (`latency.time_runners`) so they
share the load.

Run: `.venv/bin/python benchmarks/int8.py [--weights W] [--quick] [--inductor]`; writes
benchmarks/results/int8_<variant>.{json,png} and prints the tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np  # (does not start torch's thread pool)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # sets OMP_WAIT_POLICY first
    RESULTS,
    new_figure,
    save_figure,
    shared_dir,
    write_json,
)

import mobilenetv3
from mobilenetv3.data.datasets import list_samples
from mobilenetv3.quantize import int8_runner, load_batch, quantize_model, split_samples
from mobilenetv3.quantize.tflite_int8 import LEARNED, default_method
from mobilenetv3.runtime.auto import installed
from mobilenetv3.runtime.engines import LiteRTRunner, Runner, make_runner
from mobilenetv3.runtime.latency import time_runners

OFFICIAL = "v3-small_224_1.0_uint8.tflite"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help=f"float weights (default: shared/pretrained/{OFFICIAL})")
    parser.add_argument("--quick", action="store_true", help="64 + 64 photos, fewer runs")
    parser.add_argument("--inductor", action="store_true", help="also time torch.compile")
    return parser.parse_args()


Fold = tuple[np.ndarray, np.ndarray, np.ndarray]  # calibration images, eval images, labels


def photos(quick: bool) -> tuple[list[Fold], dict]:
    """Two folds over the sample photos: calibrate on the odd-label ones and evaluate on the
    even-label ones, then the other way round, so every photo is evaluated once by a model
    calibrated without it."""
    samples = list_samples(shared_dir() / "images" / "imagenet-samples")
    halves = [split_samples(samples, "odd"), split_samples(samples, "even")]
    if quick:
        halves = [half[::5][:64] for half in halves]
    images = [load_batch([p for p, _ in half]) for half in halves]
    labels = [np.array([y for _, y in half]) for half in halves]
    folds = [(images[0], images[1], labels[1]), (images[1], images[0], labels[0])]
    split = {"folds": "calibrate on odd-label photos, evaluate the even-label ones; and back",
             "evaluation": f"{sum(len(y) for y in labels)} photos"}  # fmt: skip
    return folds, split


def build_files(model: Any, calibration: np.ndarray, folder: Path) -> dict[str, Path]:
    from mobilenetv3.export import export

    files = {}
    if default_method(model) == LEARNED:  # weights read from an 8-bit file: run it too
        files["official"] = Path(model.pretrained_info["source"])
    for fmt in ("onnx", "tflite"):
        files[f"float_{fmt}"] = folder / f"float.{fmt}"
        export(model, files[f"float_{fmt}"], fmt, dynamic_batch=True, check=False)
    files["int8_onnx"] = quantize_model(model, calibration, folder / "int8.onnx", "onnx")
    files["int8_pt2"] = quantize_model(model, calibration, folder / "int8.pt2", "pt2")
    files["int8_tflite"] = quantize_model(model, calibration, folder / "int8.tflite", "tflite",
                                          method="percentile")  # fmt: skip
    if "official" in files:  # and its learned activation ranges
        files["int8_tflite_learned"] = quantize_model(model, calibration, folder / "learned.tflite",
                                                      "tflite", method=LEARNED)  # fmt: skip
    return files


def runners(model: Any, files: dict[str, Path], threads: int, batch: int,
            inductor: bool) -> dict[tuple[str, str], Runner]:  # fmt: skip
    """(engine, precision) -> runner."""
    out = {
        ("onnxruntime", "float"): make_runner("onnxruntime", files["float_onnx"], threads=threads),
        ("onnxruntime", "int8"): int8_runner(files["int8_onnx"], threads=threads),
        ("litert", "float"): make_runner("litert", files["float_tflite"], threads=threads),
        ("litert", "int8"): make_runner("litert", files["int8_tflite"], threads=threads),
    }
    if "official" in files:
        learned, official = files["int8_tflite_learned"], files["official"]
        out[("litert", "int8 learned")] = make_runner("litert", learned, threads=threads)
        out[("litert", "official uint8")] = make_runner("litert", official, threads=threads)
        out[("litert", "official uint8 builtin")] = LiteRTRunner(official, threads, False)
    if installed("openvino"):
        out[("openvino", "float")] = make_runner("openvino", files["float_onnx"], threads=threads)
        out[("openvino", "int8")] = int8_runner(files["int8_onnx"], "openvino", threads=threads)
    out[("torch", "float")] = make_runner("torch", model, threads=threads)
    out[("torch", "int8")] = int8_runner(files["int8_pt2"], "torch", threads=threads)
    if inductor:
        out[("torch_compile", "float")] = make_runner("torch_compile", model, threads=threads,
                                                      batch_size=batch)  # fmt: skip
        out[("torch_compile", "int8")] = int8_runner(files["int8_pt2"], "torch_compile",
                                                     threads=threads, batch_size=batch)  # fmt: skip
    return out


def predict(runner: Runner, images: np.ndarray) -> np.ndarray:
    return np.concatenate([runner(images[i : i + 50]).argmax(1) for i in range(0, len(images), 50)])


def accuracy(preds: dict[str, np.ndarray],
             labels: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
    """Top-1 per "engine/precision", and agreement of its top-1 class with the official file
    run by LiteRT's default (XNNPACK) resolver."""
    official = preds.get("litert/official uint8")
    top1 = {k: 100.0 * float((v == labels).mean()) for k, v in preds.items()}
    if official is None:
        return top1, {}
    return top1, {k: 100.0 * float((v == official).mean()) for k, v in preds.items()}


def fold_predictions(model: Any, fold: Fold, folder: Path) -> tuple[dict[str, Path], dict]:
    """The files of one fold (calibrated on its first half) and their top-1 classes on its
    second half."""
    folder.mkdir()
    files = build_files(model, fold[0], folder)
    made = runners(model, files, 2, 50, False)
    return files, {f"{e}/{p}": predict(r, fold[1]) for (e, p), r in made.items()}


def latency_rows(model: Any, files: dict, args: argparse.Namespace) -> list[dict]:
    rows = []
    for batch in (1, 32):
        x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
        iters = (3 if args.quick else 10) if batch == 32 else (10 if args.quick else 30)
        for threads in (1, 2):
            made = runners(model, files, threads, batch, args.inductor)
            timed = time_runners(list(made.values()), x, warmup=2, iters=iters)
            rows += [{"engine": e, "precision": p, "threads": threads, "batch": batch, **t}
                     for (e, p), t in zip(made, timed, strict=True)]  # fmt: skip
            print(f"timed batch {batch}, {threads} thread(s)", flush=True)
    return rows


def speedups(rows: list[dict]) -> None:
    """Each row's speed-up over the float model of its engine at the same batch and threads."""
    base = {(r["engine"], r["threads"], r["batch"]): r["median_ms"]
            for r in rows if r["precision"] == "float"}  # fmt: skip
    for r in rows:
        r["speedup_vs_float"] = base[(r["engine"], r["threads"], r["batch"])] / r["median_ms"]


def table(rows: list[dict], top1: dict[str, float], agreement: dict[str, float]) -> str:
    head = (f"{'engine':<14} {'precision':<23} {'thr':>3} {'batch':>5} {'median':>10} "
            f"{'p90':>10} {'vs float':>8} {'top-1':>6} {'agree':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        key = f"{r['engine']}/{r['precision']}"
        acc, agree = top1.get(key, float("nan")), agreement.get(key, float("nan"))
        lines.append(f"{r['engine']:<14} {r['precision']:<23} {r['threads']:>3} {r['batch']:>5} "
                     f"{r['median_ms']:>8.2f}ms {r['p90_ms']:>8.2f}ms "
                     f"{r['speedup_vs_float']:>7.2f}x {acc:>6.1f} {agree:>6.1f}")  # fmt: skip
    return "\n".join(lines)


def chart(rows: list[dict], path: Path, name: str) -> Path:
    """Batch-1 median latency per engine and precision, one bar group per thread count."""
    fig, ax = new_figure((9.0, 5.0))
    keys = list(dict.fromkeys((r["engine"], r["precision"]) for r in rows))
    for offset, threads in enumerate((1, 2)):
        ms = [next(r["median_ms"] for r in rows if (r["engine"], r["precision"]) == k
                   and r["threads"] == threads and r["batch"] == 1) for k in keys]  # fmt: skip
        ax.bar(np.arange(len(keys)) + 0.4 * offset, ms, 0.4, label=f"{threads} thread(s)")
    ax.set_xticks(np.arange(len(keys)) + 0.2, [f"{e}\n{p}" for e, p in keys], fontsize=7)
    ax.set_ylabel("batch-1 median latency (ms)")
    ax.set_title(f"{name}: float vs int8 per engine (CPU)")
    ax.legend()
    return save_figure(fig, path)


def main() -> int:
    args = parse_args()
    weights = args.weights or shared_dir() / "pretrained" / OFFICIAL
    model = mobilenetv3.create_model(weights=weights, dequantize=True)  # float of the 8-bit file
    folds, split = photos(args.quick)
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-int8-") as tmp:
        built = [fold_predictions(model, fold, Path(tmp) / str(k)) for k, fold in enumerate(folds)]
        preds = {key: np.concatenate([p[key] for _, p in built]) for key in built[0][1]}
        top1, agreement = accuracy(preds, np.concatenate([labels for *_, labels in folds]))
        print("top-1:", {k: round(v, 1) for k, v in top1.items()}, flush=True)
        rows = latency_rows(model, built[0][0], args)
    speedups(rows)
    for key in [k for k in top1 if k.startswith("torch/")] if args.inductor else []:
        same = key.replace("torch/", "torch_compile/")  # the same program
        top1[same], agreement[same] = top1[key], agreement[key]
    print(f"\n{split['folds']}: {split['evaluation']} (top-1 %; agree: % same top class as "
          "the official file in LiteRT)\n")
    print(table(rows, top1, agreement))
    document = {"weights": str(weights), "split": split, "top1": top1, "agreement": agreement,
                "rows": rows, "quick": args.quick}  # fmt: skip
    name = model.variant.name
    print(f"\nwrote {write_json(RESULTS / f'int8_{name}.json', document)}, "
          f"{chart(rows, RESULTS / f'int8_{name}.png', name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
