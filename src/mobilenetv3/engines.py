"""One runner interface over the inference engines, for benchmarks and `evaluate --engine`.

    runner = make_runner(kind, model_or_path, threads=2, batch_size=1, image_size=(224, 224))
    out = runner(x)   # x: np.ndarray NCHW float32 in [-1, 1] -> np.ndarray [N, classes]

`kind` is one of `KINDS`:

- `torch`: eager PyTorch, `torch.inference_mode`, channels_last memory format.
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
"""

from __future__ import annotations

import os
import tempfile
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
    """Eager (or compiled) PyTorch in channels_last."""

    kind = "torch"

    def __init__(self, model: nn.Module, threads: int, compile_for: tuple | None = None) -> None:
        super().__init__(threads)
        self.model = model.eval().to(memory_format=torch.channels_last)
        if compile_for is not None:
            self.kind = "torch_compile"
            self.model = torch.compile(self.model, dynamic=False)
            self(np.zeros(compile_for, np.float32))  # compile now, not in the first timed call

    def __call__(self, x: np.ndarray) -> np.ndarray:
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
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = "probabilities" if "prob" in self.session.get_outputs()[0].name else "logits"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]


class LiteRTRunner(Runner):
    kind = "litert"

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(threads)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
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
    """Float input into a quantized file's input type (real = (q - zero_point) * scale)."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def _as_model(model_or_path: ModelOrPath) -> nn.Module:
    if isinstance(model_or_path, nn.Module):
        return model_or_path
    from .factory import create_model

    return create_model(weights=model_or_path)


def _as_file(model_or_path: ModelOrPath, fmt: str, image_size: tuple[int, int]) -> Path:
    """The path itself, or the module exported (unchecked) to a temp file kept for the runner."""
    if not isinstance(model_or_path, nn.Module):
        return Path(model_or_path)
    from .export import export

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
    if kind == "torch":
        return TorchRunner(_as_model(model_or_path), threads)
    if kind == "torch_compile":
        return TorchRunner(_as_model(model_or_path), threads, (batch_size, 3, *image_size))
    if kind == "onnxruntime":
        return OnnxRuntimeRunner(_as_file(model_or_path, "onnx", image_size), threads)
    if kind == "litert":
        return LiteRTRunner(_as_file(model_or_path, "tflite", image_size), threads)
    raise ValueError(f"unknown engine {kind!r}: expected one of {', '.join(KINDS)}")
