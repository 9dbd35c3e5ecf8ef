"""`--engine auto` and `--device`: which engine runs a model, and where torch runs it.

auto takes the fastest engine installed for the file and its precision, measured (issue 17:
batch 1, 1 thread, Large 1.0, a 2-core EPYC; time relative to ONNX Runtime): ONNX Runtime 1.0,
LiteRT 1.05, OpenVINO 1.14, torch.compile 1.7, torch eager 2.3; ExecuTorch (XNNPACK) between
OpenVINO and eager (issue 15, benchmarks/latency.py). So float models run in ONNX Runtime, then
LiteRT, OpenVINO, ExecuTorch (the last two where their extras are installed), then torch; an
8-bit .tflite in LiteRT (its int8 graph, the file as it is), else in torch's bit-exact int8
interpreter; an int8 .onnx/.pt2 in the one engine that runs it; a float model on a GPU in
torch. A float engine is kept only if its output on a probe batch is within `TOLERANCE` of
torch's, else the next is tried.

One file is one model on every engine (`tflite_int8_runner`): an 8-bit .tflite runs as int8
in LiteRT and torch; its float weights only with `--dequantize`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenetv3.runtime.engines import Runner, TorchRunner, make_runner

FLOAT_ORDER = ("onnxruntime", "litert", "openvino", "executorch", "torch")
MODULE_OF = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert", "openvino": "openvino",
             "executorch": "executorch"}  # fmt: skip
TOLERANCE = 1e-4  # max abs difference from torch's output (logits, or probabilities)


def installed(engine: str) -> bool:
    module = MODULE_OF.get(engine)
    return module is None or importlib.util.find_spec(module) is not None


def resolve_device(text: str) -> torch.device:
    """`auto` (a GPU where there is one), `cpu`, `cuda` or `cuda:N`; an absent GPU is an error."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ValueError(f"--device {text}: this machine has {count} CUDA device(s); use "
                         "--device cpu (or auto)")  # fmt: skip
    return device


def float_candidates(device: torch.device) -> tuple[str, ...]:
    """Engines auto tries for a float model, fastest first (torch alone on a GPU)."""
    return tuple(e for e in FLOAT_ORDER if installed(e)) if device.type == "cpu" else ("torch",)


def auto_runner(model: Any, weights: str | None, *, threads: int, batch_size: int,
                image_size: tuple[int, int], device: torch.device) -> Runner:  # fmt: skip
    """An int8 file in its engine; a float model in the fastest engine agreeing with torch."""
    from mobilenetv3.export import export_runner  # exports the model for a file engine
    from mobilenetv3.quantize import int8_runner
    from mobilenetv3.quantize.files import ENGINE_OF

    options = {"threads": threads, "batch_size": batch_size, "image_size": image_size}
    if weights is not None and not isinstance(model, torch.nn.Module):  # an int8 file
        if Path(weights).suffix.lower() == ".tflite":
            engine = "litert" if installed("litert") else "torch"
            return tflite_int8_runner(weights, engine, threads=threads, batch_size=batch_size)
        engine = ENGINE_OF[Path(weights).suffix.lower()][0]
        if not installed(engine):
            raise ValueError(f"{weights} runs only in {engine}, which is not installed")
        return int8_runner(weights, engine, **options)
    for engine in float_candidates(device):
        if engine == "torch":
            return torch_runner(model, device, threads, image_size)
        runner = export_runner(engine, model, **options)
        if (difference := probe_difference(runner, model, image_size)) <= TOLERANCE:
            return runner
        print(f"auto: {engine} differs from torch by {difference:.1e} (> {TOLERANCE}); "
              "trying the next engine", file=sys.stderr)  # fmt: skip
    raise AssertionError("unreachable: torch is always a candidate")


def tflite_int8_runner(path: str | Path, engine: str, *, threads: int,
                       batch_size: int = 1) -> Runner:  # fmt: skip
    """An 8-bit .tflite as the int8 model it is: LiteRT runs the file (XNNPACK kernels), torch
    the int8 interpreter (bit-exact with LiteRT's reference kernels); no float engine runs it."""
    if engine == "litert":
        return make_runner("litert", path, threads=threads, batch_size=batch_size)
    if engine == "torch":
        return Int8InterpreterRunner(path, threads)
    raise ValueError(f"{Path(path).name} is an int8 model, which --engine {engine} does not run: "
                     "run it with --engine litert or torch, or pass --dequantize for its "
                     "weights as a float model")  # fmt: skip


class Int8InterpreterRunner(Runner):
    """`mobilenetv3.load_int8(path)` on the CPU: the file's integer graph, any batch size."""

    kind = "torch"

    def __init__(self, path: str | Path, threads: int) -> None:
        from mobilenetv3.factory import load_int8

        super().__init__(threads)
        self.module = load_int8(path)
        last = self.module.model.operators[-1].opcode
        self.output = "probabilities" if last == "SOFTMAX" else "logits"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def probe_difference(runner: Runner, model: torch.nn.Module, image_size: tuple[int, int]) -> float:
    """Max abs difference from torch on a fixed random batch in [-1, 1]."""
    generator = torch.Generator().manual_seed(0)
    probe = (torch.rand(2, 3, *image_size, generator=generator) * 2 - 1).numpy()
    with torch.inference_mode():
        reference = model.eval()(torch.from_numpy(probe))
    if runner.output == "probabilities":
        reference = reference.softmax(dim=1)
    return float(np.abs(runner(probe) - reference.numpy()).max())


def torch_runner(model: torch.nn.Module, device: torch.device, threads: int,
                 image_size: tuple[int, int]) -> Runner:  # fmt: skip
    if device.type == "cpu":
        return TorchRunner(model, threads, image_size)
    return DeviceRunner(model, device, image_size)


class DeviceRunner(Runner):
    """torch on a GPU: the deployment graph (BatchNorm folded) in channels_last, float32."""

    kind = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device,
                 image_size: tuple[int, int]) -> None:  # fmt: skip
        super().__init__(threads=1)
        self.device = device
        cpu = TorchRunner(model, 1, image_size)  # builds the deployment graph
        self.model = cpu.model.to(device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        with torch.inference_mode():
            return self.model(batch.contiguous(memory_format=torch.channels_last)).cpu().numpy()
