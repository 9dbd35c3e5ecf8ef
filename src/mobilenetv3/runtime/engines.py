"""One runner interface over the inference engines, for benchmarks and `evaluate --engine`.

    runner = make_runner(kind, model_or_path, threads=2, batch_size=1, image_size=(224, 224))
    out = runner(x)   # x: np.ndarray NCHW float32 in [-1, 1] -> np.ndarray [N, classes]
    outs = runner.outputs(x)  # every output by name (a detection file's several)

Size: seven engines' runners share this one interface, each class short; apart they would
repeat it.

`kind` is one of `KINDS`:

- `torch`: eager PyTorch, `torch.inference_mode`, channels_last memory format, on the
  deployment graph (BatchNorm folded, TF padding fixed for `image_size`, native hard-swish:
  the graph the ONNX export writes), so inputs must have `image_size`.
- `torch_compile`: the same through `torch.compile` (inductor); compiled and warmed up for
  `batch_size` x `image_size` when the runner is made, so calls time only inference.
- `onnxruntime`: ONNX Runtime, CPU execution provider, `threads` intra-op threads.
- `litert`: the LiteRT interpreter (XNNPACK delegate by default) with `num_threads=threads`.
  Takes our float export or an official .tflite; uint8 files get the input quantized with the
  file's scale/zero point (`quantize_input`: halves to even, as LiteRT's default QUANTIZE)
  and the output dequantized. Input is transposed to NHWC inside.
- `executorch` (extra `[executorch]`): an ExecuTorch program (.pte, XNNPACK delegate) in
  ExecuTorch's runtime, on its process-wide thread pool sized to `threads` (a method loaded
  before a resize is loaded again: `ExecuTorchRunner.activate`). Batches above the file's
  planned maximum run in slices.
- `openvino` (extra `[openvino]`): OpenVINO on the CPU, reading our ONNX export, reshaped to
  each batch size it is called with (compiled once per size), `threads` inference threads
  not pinned to cores, float32 (no bf16 down-conversion where the CPU has AMX/AVX-512 bf16).
  Our int8 (QDQ) .onnx runs in int8 kernels, its hard activations read as standard QDQ ops
  (`openvino_graph`); `OpenVINORunner.compute_precisions` says which layers run in 8 bits.

`model_or_path` is a path: `.onnx` for onnxruntime and openvino, `.tflite` for litert, `.pte`
for executorch, a `.pt2` program
(float or int8: `ExportedProgramRunner`) or any weights file `create_model` reads for the torch
kinds; or, for the torch kinds, an `nn.Module`. Engines run files and deployment graphs and
never import an exporter (the exporters check their files through them):
`mobilenetv3.export.export_runner` exports a module first for onnxruntime and litert.

`runner.output` says what the rows are: "logits", or "probabilities" where the file ends in a
softmax (the official .tflite files). Argmax (top-1) is the same either way; official files
and our exports of 1001-class models both put background at index 0.
`runner.threads` is the thread count; torch's is process-wide, so torch runners set it on
every call where it differs.

Latency (timing runners round-robin): `runtime.latency`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenetv3.core.deploy import deploy_graph
from mobilenetv3.core.model import MobileNet
from mobilenetv3.runtime.program_file import load_program

KINDS = ("torch", "torch_compile", "onnxruntime", "litert")
# engines of the optional extras [executorch] and [openvino] (tests/test_executorch.py, ...)
EXTRA_KINDS = ("executorch", "openvino")
# the file each such engine runs
FILE_FORMAT = {"onnxruntime": "onnx", "litert": "tflite", "executorch": "pte", "openvino": "onnx"}

PTE_SOFTMAX_MARK = "probabilities"  # a .pte ending in a softmax has a constant method so named
PTE_NOTE = "mobilenetv3"  # a .pte's JSON note (variant, precision, ...): a constant method

ModelOrPath = nn.Module | str | os.PathLike


class Runner:
    """Call with an NCHW float32 batch; get [N, classes] float32."""

    kind = ""
    output = "logits"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (a detection file has several); by default the one."""
        return {self.output: self(x)}

    def activate(self) -> None:
        """Make process-wide settings this runner's (its thread count) before a call; the
        latency timer calls it outside the timed region. Calls do it themselves too."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threads={self.threads}, output={self.output!r})"


class TorchRunner(Runner):
    """PyTorch in channels_last on the deployment graph of the model: BatchNorm folded, TF
    padding fixed for `image_size`, native hard-swish (25% faster than the training graph at
    batch 1); `compile=True` runs that graph through torch.compile (inductor)."""

    kind = "torch"

    def __init__(self, model: nn.Module, threads: int, image_size: tuple[int, int],
                 batch_size: int = 1, compile: bool = False) -> None:  # fmt: skip
        super().__init__(threads)
        self.image_size = tuple(image_size)
        graph = deploy_graph(model, self.image_size) if isinstance(model, MobileNet) else model
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

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {self.input: x}), strict=True))

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        super().__init__(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: not a line per constant its optimizer folds
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input = first.name
        # a file exported without a free batch (export's default) takes exactly that many
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.output = "probabilities" if "prob" in self.session.get_outputs()[0].name else "logits"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        run = lambda chunk: self.session.run(None, {self.input: chunk})[0]  # noqa: E731
        return in_batches_of(self.fixed_batch, np.ascontiguousarray(x, np.float32), run)


def in_batches_of(size: int | None, x: np.ndarray,
                  run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:  # fmt: skip
    """`run` over `x` in batches of exactly `size` images (the last one filled up with zeros
    and cut off after), for files exported with a fixed batch; `size` None: in one call."""
    if size is None or len(x) == size:
        return run(x)
    chunks = [x[i : i + size] for i in range(0, len(x), size)]
    filler = np.zeros((size - len(chunks[-1]), *x.shape[1:]), x.dtype)
    chunks[-1] = np.concatenate([chunks[-1], filler])
    return np.concatenate([run(c) for c in chunks])[: len(x)]


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

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self(x)  # one batch the file takes whole (a detection file's): every output read after
        return {d["name"]: _dequantize(self.interpreter.get_tensor(d["index"]), d)
                for d in self.interpreter.get_output_details()}  # fmt: skip


class ExecuTorchRunner(Runner):
    """A .pte in ExecuTorch's runtime. Its XNNPACK delegate binds a method to the process's
    thread pool when the method is loaded (`xnn_create_runtime_v4(..., get_pthreadpool())` in
    ExecuTorch's XNNCompiler.cpp), and `_unsafe_reset_threadpool` destroys that pool: a method
    loaded before a resize then runs on freed memory (it hung, segfaulted or aborted in
    `execute`; issue 15). So the pool is sized before a method is loaded, and a method loaded
    under an older pool is loaded again (a few ms) before it runs."""

    kind = "executorch"
    pool_generation = 0  # process-wide: counts the resizes of ExecuTorch's thread pool

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(threads)
        self.path = path
        self.loaded_in = -1  # the pool generation the method was loaded under
        self.activate()
        self.max_batch = self.method.metadata.input_tensor_meta(0).sizes()[0]
        # export --softmax marks the file with a constant method of that name
        self.output = "probabilities" if PTE_SOFTMAX_MARK in self.program.method_names else "logits"

    def activate(self) -> None:
        """Size the process's pool to this runner's threads, then load the program again if
        the pool was created after it was loaded (a program caches its loaded methods)."""
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if portable_lib._threadpool_get_thread_count() != self.threads:
            portable_lib._unsafe_reset_threadpool(self.threads)
            ExecuTorchRunner.pool_generation += 1
        if self.loaded_in != ExecuTorchRunner.pool_generation:
            # kept: the method reads the program's memory
            self.program = Runtime.get().load_program(self.path)
            self.method = self.program.load_method("forward")
            self.loaded_in = ExecuTorchRunner.pool_generation

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.activate()
        x = np.ascontiguousarray(x, np.float32)
        slices = [x[i : i + self.max_batch] for i in range(0, len(x), self.max_batch)]
        outs = [self.method.execute([torch.from_numpy(s)])[0].numpy() for s in slices]
        return np.concatenate(outs)


def read_pte_note(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON note a .pte writer stored in the file ({} where it stored none)."""
    require_extra("executorch")
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(path))
    if PTE_NOTE not in program.method_names:
        return {}
    try:
        note = json.loads(program.load_method(PTE_NOTE).execute([])[0])
    except (ValueError, TypeError):
        note = None
    if not isinstance(note, dict):
        raise ValueError(f"{path}: its {PTE_NOTE} note is not a JSON object; write it again")
    return note


class OpenVINORunner(Runner):
    kind = "openvino"

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        super().__init__(threads)
        from mobilenetv3.runtime.openvino_graph import openvino_source

        self.core = ov.Core()
        self.model = self.core.read_model(openvino_source(path))
        self.output = "probabilities" if "prob" in self.model.output(0).any_name else "logits"
        self.requests: dict[tuple[int, ...], Any] = {}

    def _request(self, shape: tuple[int, ...]) -> Any:
        """An infer request compiled for this input shape (static shapes: folded, faster)."""
        if shape not in self.requests:
            model = self.model.clone()
            model.reshape(list(shape))
            # no pinning: on a shared CPU, pinned threads wait for their core (Small, batch 1,
            # 1 thread, 2 busy cores: 10.9 ms pinned, 2.7 ms not)
            config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}  # fmt: skip
            compiled = self.core.compile_model(model, "CPU", config)
            self.requests[shape] = compiled.create_infer_request()
        return self.requests[shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        return self._request(x.shape).infer({0: x})[0].copy()

    def compute_precisions(self, shape: tuple[int, ...]) -> dict[str, str]:
        """Convolution and classifier layer -> the precision OpenVINO runs it in for an input
        of `shape` ("u8"/"i8": an int8 kernel), read from the compiled runtime model."""
        runtime = self._request(tuple(shape)).get_compiled_model().get_runtime_model()
        out = {}
        for op in runtime.get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in ("Convolution", "FullyConnected"):
                out[op.get_friendly_name()] = info["runtimePrecision"].astype(str)
        return out


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: type) -> np.ndarray:
    """Float input as a quantized file's codes (real = (q - zero_point) * scale), rounded as the
    LiteRT kernels this runner runs round a QUANTIZE: halves to even, then the zero point added
    (measured against LiteRT; its reference kernels round halves away from zero instead)."""
    from mobilenetv3.tflite.interpreter.fixedpoint import quantize

    return quantize(x, scale, zero_point, dtype, rounding="even")


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    return quantize_input(x, scale, zero, detail["dtype"])


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


class ExportedProgramRunner(Runner):
    """A .pt2 program (PT2E int8 or float) run eagerly, or through inductor with `compile`:
    inductor fuses the quantize/dequantize pairs into int8 kernels; eager runs them as is."""

    kind = "torch"

    def __init__(self, program_or_path: Any, threads: int, compile: bool = False,
                 example: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__(threads)
        program = program_or_path
        if isinstance(program_or_path, str | os.PathLike):
            program = load_program(program_or_path)
        self.module = program.module() if hasattr(program, "module") else program
        self.fixed_batch = _fixed_batch(self.module)
        if compile:
            self.kind = "torch_compile"
            self.module = torch.compile(self.module, dynamic=False)
            if example is not None:
                self(example)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        x = np.ascontiguousarray(x, np.float32)
        with torch.no_grad():
            return in_batches_of(self.fixed_batch, x,
                                 lambda c: self.module(torch.from_numpy(c)).numpy())  # fmt: skip


def _fixed_batch(module: nn.Module) -> int | None:
    """The batch an exported program's input was traced with, unless it was left free."""
    graph = getattr(module, "graph", None)
    inputs = [n for n in graph.nodes if n.op == "placeholder"] if graph is not None else []
    value = inputs[0].meta.get("val") if inputs else None
    batch = value.shape[0] if value is not None else None
    return batch if isinstance(batch, int) else None


def _torch_runner(kind: str, source: ModelOrPath, threads: int, image_size: tuple[int, int],
                  batch_size: int) -> Runner:  # fmt: skip
    """A .pt2 program as it is; a module or weights file on its deployment graph."""
    compile = kind == "torch_compile"
    if not isinstance(source, nn.Module) and Path(source).suffix.lower() == ".pt2":
        example = np.zeros((batch_size, 3, *image_size), np.float32)
        return ExportedProgramRunner(source, threads, compile, example)
    return TorchRunner(_as_model(source), threads, image_size, batch_size, compile=compile)


def _file(kind: str, source: ModelOrPath) -> Path:
    if isinstance(source, nn.Module):
        raise ValueError(f"{kind} runs a .{FILE_FORMAT[kind]} file, not a module: export it "
                         "first (mobilenetv3.export.export_runner does both)")  # fmt: skip
    return Path(source)


def require_extra(name: str) -> None:
    """One clear error where an optional extra ([executorch], [openvino]) is not installed."""
    if importlib.util.find_spec(name) is None:
        raise ValueError(f"{name} is not installed: it comes with the [{name}] extra, "
                         f"pip install -c constraints.txt -e '.[{name}]'")  # fmt: skip


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
        return _torch_runner(kind, model_or_path, threads, image_size, batch_size)
    if kind == "onnxruntime":
        return OnnxRuntimeRunner(_file(kind, model_or_path), threads)
    if kind == "litert":
        return LiteRTRunner(_file(kind, model_or_path), threads)
    if kind in EXTRA_KINDS:
        require_extra(kind)
    if kind == "executorch":
        return ExecuTorchRunner(_file(kind, model_or_path), threads)
    if kind == "openvino":
        return OpenVINORunner(_file(kind, model_or_path), threads)
    known = ", ".join(KINDS + EXTRA_KINDS)
    raise ValueError(f"unknown engine {kind!r}: expected one of {known}")
