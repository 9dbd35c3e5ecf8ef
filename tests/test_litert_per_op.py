"""The float path of the official uint8 files, op by op, against LiteRT's own intermediate
tensors (`experimental_preserve_all_tensors`, builtin kernels): every op of the file (conv
layers, hard-swish, the squeeze-excite gate, residual adds, the final pooling, the logits,
the reshape and the softmax), given the dequantized tensors LiteRT fed it, must give LiteRT's
dequantized output within half a quantization step of that output plus what the integer
kernel's own arithmetic may add (`PreservedRun.tolerance`). The test fails on an op of the file
that no step checks, so a new op type cannot slip by. This is what lets the
float path's top-1 differ from LiteRT's only by what the quantization-trained weights lose
without quantized activations (test_predict_evaluate)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mobilenetv3
from mobilenetv3.core.layers import Bottleneck, ConvBNAct, SqueezeExcite
from mobilenetv3.data.preprocess import load_image, preprocess_image

FILES = ["v3-small_224_1.0_uint8.tflite", "v3-large-minimalistic_224_1.0_uint8.tflite"]
PHOTOS = 1
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
REQUANTIZED = (*CONVS, "MUL")  # a product of integers scaled by one rounded multiplier
FLOAT_SLACK = 1e-3  # steps: our float32 sums against LiteRT's exact integer ones


class PreservedRun:
    """One invocation of the official file with every intermediate tensor kept."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # the reference kernels
        self.interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=builtin,
                                       experimental_preserve_all_tensors=True)  # fmt: skip
        self.interpreter.allocate_tensors()
        details = self.interpreter.get_tensor_details()
        self.tensors = {d["name"]: d for d in details}
        names = {d["index"]: d["name"] for d in details}
        ops = self.interpreter._get_ops_details()
        # output tensor name -> the op's name and its input tensor names
        self.ops = {names[op["outputs"][0]]: op["op_name"] for op in ops}
        self.inputs = {names[op["outputs"][0]]: [names[i] for i in op["inputs"] if i >= 0]
                       for op in ops}  # fmt: skip

    def invoke(self, image: np.ndarray) -> None:
        detail = self.interpreter.get_input_details()[0]
        scale, zero = detail["quantization"]
        codes = np.clip(np.round(image / scale + zero), 0, 255).astype(np.uint8)
        self.interpreter.set_tensor(detail["index"], codes[None])
        self.interpreter.invoke()

    def real(self, name: str) -> torch.Tensor:
        """A tensor as real numbers, NCHW: (q - zero_point) * scale."""
        detail = self.tensors[name]
        scale, zero = detail["quantization"]
        q = self.interpreter.get_tensor(detail["index"]).astype(np.float32)
        x = torch.from_numpy(np.asarray((q - zero) * np.float32(scale)))
        return x.permute(0, 3, 1, 2) if x.dim() == 4 else x

    def scale(self, name: str) -> float:
        return float(self.tensors[name]["quantization_parameters"]["scales"].max())

    def tolerance(self, step: Step) -> float:
        """In steps of the output: half a step for rounding the result, plus what LiteRT's
        integer kernels add. A conv (or a MUL) requantizes its exact integer result with
        gemmlowp's rounding doubling high multiply, then a rounding shift by k bits: the first
        rounding adds at most 2^-k / 2 of a step, less than the real multiplier
        s_in * s_w / s_out (s_in1 * s_in2 / s_out). Hard-swish computes on an
        int16 grid 2^7 finer than its input's ("hires" input): two roundings on that grid at a
        slope of at most 1.5 add below 2 * 1.5 * 0.5 * s_in / 2^7 / s_out. A step through an
        inner tensor (the gate's ADD, then its MUL by 1/6) adds that tensor's half step times
        the constant the output op multiplies it by."""
        name = step.target
        source = self.inputs[name][0]  # float32 sums add below FLOAT_SLACK of a step
        if self.ops[name] in REQUANTIZED:
            other = self.inputs[name][1]  # a conv's weights, a MUL's second factor
            extra = self.scale(source) * self.scale(other) / self.scale(name)
        elif self.ops[name] == "HARD_SWISH":
            extra = 1.5 * self.scale(source) / 2**7 / self.scale(name)
        else:
            extra = 0.0
        for inner in step.via:
            factor = float(self.real(self.inputs[name][1]).abs().max())
            extra += 0.5 * self.scale(inner) * factor / self.scale(name)
        return 0.5 + extra + FLOAT_SLACK

    def representable(self, name: str, x: torch.Tensor) -> torch.Tensor:
        scale, zero = self.tensors[name]["quantization"]
        return x.clamp((0 - zero) * scale, (255 - zero) * scale)


@dataclass(frozen=True)
class Step:
    """Our op on the LiteRT tensors `sources`, compared with the LiteRT tensor `target`;
    `via`: LiteRT's tensors in between where our one op is several of LiteRT's."""

    sources: tuple[str, ...]
    target: str
    op: Callable[..., torch.Tensor]
    via: tuple[str, ...] = ()


def _conv_steps(layer: ConvBNAct, run: PreservedRun) -> Iterator[Step]:
    """A conv layer as LiteRT runs it: conv (+ fused ReLU) then, for hard-swish, its own op."""
    scope = layer.conv.slim_scope
    conv_out = next(name for name, op in run.ops.items()
                    if op in CONVS and name.rsplit("/", 1)[0] == scope)  # fmt: skip
    swish = f"{scope}/hard_swish/mul_1"
    if swish in run.tensors:
        yield Step((run.inputs[conv_out][0],), conv_out, _without_act(layer))
        yield Step((conv_out,), swish, layer.act)
    else:
        yield Step((run.inputs[conv_out][0],), conv_out, layer)


def _without_act(layer: ConvBNAct) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer's padding, conv and BatchNorm: its forward with the activation left out."""

    def run(x: torch.Tensor) -> torch.Tensor:
        act, layer.act = layer.act, nn.Identity()
        try:
            return layer(x)
        finally:
            layer.act = act

    return run


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """The squeeze-excite pooling and the global pool before the logits (`x.mean((2, 3))`)."""
    return x.mean((2, 3), keepdim=True)


def _squeeze_excite_steps(se: SqueezeExcite, run: PreservedRun) -> Iterator[Step]:
    """Pooling, then (its two 1x1 convs are conv layers) the gate, which LiteRT runs as an ADD
    of 3 with a fused ReLU6 and a MUL by 1/6, and the MUL of the input by the gate."""
    scope = se.reduce.conv.slim_scope.rsplit("/", 1)[0]
    pool, gate = f"{scope}/AvgPool", f"{scope}/Conv_1/mul"
    x, relu6 = run.inputs[pool][0], run.inputs[gate][0]
    yield Step((x,), pool, _spatial_mean)
    yield Step((run.inputs[relu6][0],), gate, se.gate, via=(relu6,))
    yield Step((x, gate), f"{scope}/mul", torch.mul)


def _residual_steps(block: Bottleneck, run: PreservedRun) -> Iterator[Step]:
    if block.residual:
        add = f"{block.block[-1].conv.slim_scope.rsplit('/', 1)[0]}/add"
        yield Step(tuple(run.inputs[add]), add, torch.add)


def _head_steps(model: nn.Module, run: PreservedRun) -> Iterator[Step]:
    """slim's reduce_to_1x1, the global pool, the logits (our Linear is LiteRT's 1x1 conv),
    the squeeze to [N, classes] and the softmax of the file's Predictions output."""
    scope = model.variant.spec.scope
    reduce, pool = f"{scope}/AvgPool2D/AvgPool", f"{scope}/Logits/AvgPool"
    logits, squeeze = f"{scope}/Logits/Conv2d_1c_1x1/BiasAdd", f"{scope}/Logits/SpatialSqueeze"
    yield Step((run.inputs[reduce][0],), reduce, model.head[0])
    yield Step((run.inputs[pool][0],), pool, _spatial_mean)
    yield Step((pool,), logits, lambda x: model.classifier(x.flatten(1))[:, :, None, None])
    yield Step((logits,), squeeze, lambda x: x.flatten(1))
    yield Step((squeeze,), f"{scope}/Predictions/Softmax", lambda x: x.softmax(-1))


def steps(model: nn.Module, run: PreservedRun) -> Iterator[Step]:
    for module in model.modules():
        if isinstance(module, ConvBNAct):
            yield from _conv_steps(module, run)
        elif isinstance(module, SqueezeExcite):
            yield from _squeeze_excite_steps(module, run)
        elif isinstance(module, Bottleneck):
            yield from _residual_steps(module, run)
    yield from _head_steps(model, run)


@pytest.mark.parametrize("filename", FILES)
def test_every_op_matches_litert_within_half_a_step(filename, shared):
    path = shared / "pretrained" / filename
    model = mobilenetv3.create_model(weights=path, dequantize=True).eval()  # the float path
    run = PreservedRun(path)
    photos = sorted((shared / "images" / "imagenet-samples").iterdir())[:PHOTOS]
    worst: dict[str, float] = {}
    checked: set[str] = set()
    for photo in photos:
        run.invoke(preprocess_image(load_image(photo)).permute(1, 2, 0).numpy())
        for step in steps(model, run):
            with torch.no_grad():
                ours = run.representable(step.target, step.op(*map(run.real, step.sources)))
            expected = run.real(step.target)
            assert ours.shape == expected.shape, step.target
            error = float((ours - expected).abs().max()) / run.scale(step.target)
            worst[step.target] = max(worst.get(step.target, 0.0), error / run.tolerance(step))
            checked.update((step.target, *step.via))
    print({k: round(v, 3) for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:8]})
    assert sorted(set(run.ops) - checked) == []  # every op of the file, none left unchecked
    assert {run.ops[t] for t in checked} == set(run.ops.values())
    bad = {k: round(v, 3) for k, v in worst.items() if v > 1}
    assert not bad, f"error / tolerance per tensor: {bad}"
