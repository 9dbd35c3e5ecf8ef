"""One runner interface over the inference engines, for benchmarks and `evaluate --engine`.

    runner = make_runner(kind, model_or_path, threads=2, batch_size=1, image_size=(224, 224))
    out = runner(x)   # x: np.ndarray NCHW float32 in [-1, 1] -> np.ndarray [N, classes]

`kind` is one of `KINDS`:

- `torch`: eager PyTorch, `torch.inference_mode`, channels_last memory format, on the
  deployment graph (BatchNorm folded, TF padding fixed for `image_size`, native hard-swish:
  the graph the ONNX export writes), so inputs must have `image_size`.
- `torch_compile`: the same through `torch.compile` (inductor); compiled and warmed up for
  `batch_size` x `image_size` when the runner is made, so calls time only inference.
- `onnxruntime`: ONNX Runtime, CPU execution provider, `threads` intra-op threads.
- `litert`: the LiteRT interpreter (XNNPACK delegate by default) with `num_threads=threads`.
  Takes our float export or an official .tflite; uint8 files get the input quantized with the
  file's scale/zero point and the output dequantized. Input is transposed to NHWC inside.

`model_or_path` is an `nn.Module` (a `mobilenetv3` model), or a path: `.onnx` for
onnxruntime, `.tflite` for litert, any weights file `create_model` reads for the torch kinds.
Given a module, the onnxruntime and litert runners export it to a temporary file first.

`runner.output` says what the rows are: "logits", or "probabilities" where the file ends in a
softmax (the official .tflite files). Argmax (top-1) is the same either way; official files
and our exports of 1001-class models both put background at index 0.
`runner.threads` is the thread count; torch's is process-wide, so torch runners set it on
every call where it differs.

Latency: `benchmark(model_or_path, engines, threads=[1, 2], batch_size=1)` returns one row per
(engine, threads) with median/p90 ms and images/s, timing the engines round-robin so they
share the same background load; `format_table(rows)` prints them with the ratio to the fastest
engine of each model and thread count (`mobilenetv3 benchmark`, benchmarks/latency.py).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

KINDS = ("torch", "torch_compile", "onnxruntime", "litert")

ModelOrPath = nn.Module | str | os.PathLike


class Runner:
    """Call with an NCHW float32 batch; get [N, classes] float32."""

    kind = ""
    output = "logits"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threads={self.threads}, output={self.output!r})"


class TorchRunner(Runner):
    """PyTorch in channels_last on the deployment graph of the model: BatchNorm folded, TF
    padding fixed for `image_size`, native hard-swish (25% faster than the training graph at
    batch 1); `compile=True` runs that graph through torch.compile (inductor)."""

    kind = "torch"

    def __init__(self, model: nn.Module, threads: int, image_size: tuple[int, int],
                 batch_size: int = 1, compile: bool = False) -> None:  # fmt: skip
        from mobilenetv3.core.model import MobileNet
        from mobilenetv3.export.onnx import export_graph

        super().__init__(threads)
        self.image_size = tuple(image_size)
        graph = export_graph(model, self.image_size) if isinstance(model, MobileNet) else model
        self.model = graph.eval().to(memory_format=torch.channels_last)
        if compile:
            self.kind = "torch_compile"
            # Every MobileNet shares one forward code object, and dynamo caches per code
            # object: after 8 models it stops compiling (recompile_limit) and runs eager.
            torch._dynamo.reset()
            self.model = torch.compile(self.model, dynamic=False)
            # compile now, not in the first timed call
            self(np.zeros((batch_size, 3, *self.image_size), np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"this runner was made for {self.image_size} images, got "
                             f"{tuple(x.shape[-2:])}")  # fmt: skip
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        batch = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.inference_mode():
            return self.model(batch.contiguous(memory_format=torch.channels_last)).numpy()


class OnnxRuntimeRunner(Runner):
    kind = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        super().__init__(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: not a line per constant its optimizer folds
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = "probabilities" if "prob" in self.session.get_outputs()[0].name else "logits"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]


class LiteRTRunner(Runner):
    kind = "litert"

    def __init__(self, path: Path, threads: int, xnnpack: bool = True) -> None:
        """`xnnpack=False`: LiteRT's builtin kernels only (how the file runs where the
        delegate is absent; its rounding differs from XNNPACK's)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        super().__init__(threads)
        builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        resolver = OpResolverType.AUTO if xnnpack else builtin
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                       experimental_op_resolver_type=resolver)  # fmt: skip
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.output = "probabilities" if "Softmax" in self.out["name"] else "logits"
        self.fixed_batch = False

    def _resize(self, batch: int) -> bool:
        """Resize the input batch; False where the file fixes it (the official files reshape
        to [1, 1001]), after restoring the original shape."""
        shape = list(self.input["shape"])
        if shape[0] == batch:
            return True
        if self.fixed_batch:
            return False
        try:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *shape[1:]])
            self.interpreter.allocate_tensors()
        except RuntimeError:
            self.fixed_batch = True
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            return False
        self.input = self.interpreter.get_input_details()[0]
        return True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self._resize(x.shape[0]):
            return np.concatenate([self(x[i : i + 1]) for i in range(x.shape[0])])
        nhwc = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))
        self.interpreter.set_tensor(self.input["index"], _quantize(nhwc, self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.out["index"]), self.out)


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float input into a quantized file's input type, rounded as the LiteRT kernels this
    runner runs round it in a QUANTIZE (halves to even, then the zero point added)."""
    if detail["dtype"] == np.float32:
        return x
    from mobilenetv3.tflite.interpreter.fixedpoint import quantize

    scale, zero = detail["quantization"]
    return quantize(x, scale, zero, detail["dtype"], rounding="even")


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def _as_model(model_or_path: ModelOrPath) -> nn.Module:
    if isinstance(model_or_path, nn.Module):
        return model_or_path
    from mobilenetv3.factory import create_model

    return create_model(weights=model_or_path)


def _as_file(model_or_path: ModelOrPath, fmt: str, image_size: tuple[int, int]) -> Path:
    """The path itself, or the module exported (unchecked) to a temp file kept for the runner."""
    if not isinstance(model_or_path, nn.Module):
        return Path(model_or_path)
    from mobilenetv3.export import export

    folder = Path(tempfile.mkdtemp(prefix="mobilenetv3-runner-"))
    options = {"dynamic_batch": True} if fmt == "onnx" else {}
    path = folder / f"model.{fmt}"
    export(model_or_path, path, fmt, image_size=image_size, check=False, **options)
    return path


def make_runner(
    kind: str,
    model_or_path: ModelOrPath,
    *,
    threads: int | None = None,
    batch_size: int = 1,
    image_size: tuple[int, int] = (224, 224),
) -> Runner:
    """A runner of `kind` (see the module docstring); `threads` defaults to all cores."""
    threads = threads or os.cpu_count() or 1
    image_size = tuple(image_size)
    if kind in ("torch", "torch_compile"):
        return TorchRunner(_as_model(model_or_path), threads, image_size, batch_size,
                           compile=kind == "torch_compile")  # fmt: skip
    if kind == "onnxruntime":
        return OnnxRuntimeRunner(_as_file(model_or_path, "onnx", image_size), threads)
    if kind == "litert":
        return LiteRTRunner(_as_file(model_or_path, "tflite", image_size), threads)
    raise ValueError(f"unknown engine {kind!r}: expected one of {', '.join(KINDS)}")


# -- latency ------------------------------------------------------------------------------------


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
            start = time.perf_counter()
            runner(x)
            samples.append((time.perf_counter() - start) * 1e3)
    return [{"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
             "iters": iters} for t in times]  # fmt: skip


def _files_for(model: nn.Module, engines: list[str], image_size: tuple, folder: Path) -> dict:
    """Export once per model (dynamic batch), shared by every thread count."""
    from mobilenetv3.export import export

    formats = {"onnxruntime": "onnx", "litert": "tflite"}
    files = {}
    for engine in engines:
        if engine in formats:
            path = folder / f"model.{formats[engine]}"
            export(model, path, formats[engine], image_size=image_size, dynamic_batch=True,
                   check=False)  # fmt: skip
            files[engine] = path
    return files


def _runners(source: dict[str, ModelOrPath], engines: list[str], threads: list[int],
             batch_size: int, image_size: tuple) -> list[Runner]:  # fmt: skip
    """A runner per (engine, threads); torch runners share one model (and one compile)."""
    runners = []
    for engine in engines:
        base = None
        for n in threads:
            if base is not None and engine in ("torch", "torch_compile"):
                runner = copy.copy(base)  # torch sets its thread count per call
                runner.threads = n
            else:
                runner = make_runner(engine, source[engine], threads=n, batch_size=batch_size,
                                     image_size=image_size)  # fmt: skip
            base = base or runner
            runners.append(runner)
    return runners


def benchmark(
    model_or_path: ModelOrPath,
    engines: list[str] | tuple[str, ...] = KINDS,
    *,
    threads: list[int] | tuple[int, ...] = (1,),
    batch_size: int = 1,
    image_size: tuple[int, int] = (224, 224),
    warmup: int = 5,
    iters: int = 30,
) -> list[dict]:
    """One row per (engine, threads): median/p90 ms of a `batch_size` batch, images/s."""
    image_size, engines, threads = tuple(image_size), list(engines), list(threads)
    x = np.random.default_rng(0).uniform(-1, 1, (batch_size, 3, *image_size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-bench-") as tmp:
        source = dict.fromkeys(engines, model_or_path)
        if isinstance(model_or_path, nn.Module):
            source |= _files_for(model_or_path, engines, image_size, Path(tmp))
        runners = _runners(source, engines, threads, batch_size, image_size)
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
