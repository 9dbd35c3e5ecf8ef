"""Loading weights of any format into the model through the slim name map.

Every source is first turned into a *slim state*: {slim variable name: array in slim's layout}
(TF checkpoints are one already; a .tflite is converted in `tflite_slim_state`). One function
then checks and copies it into a model, and one infers the variant from its shapes.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenetv3.core import specs
from mobilenetv3.core.model import MobileNet
from mobilenetv3.core.naming import slim_names, slim_shape
from mobilenetv3.tflite.model import Model, Operator, Tensor, TFLiteError
from mobilenetv3.weights.archive import (
    list_tar_members,
    looks_like_tar,
    open_checkpoint_in_tar,
    read_tar_member,
)
from mobilenetv3.weights.errors import WeightsError
from mobilenetv3.weights.tensorbundle import CheckpointReader

EMA_SUFFIX = "/ExponentialMovingAverage"
LOGITS = "Logits/Conv2d_1c_1x1"
_MOVING_STATS = ("/moving_mean", "/moving_variance")


def slim_state_shapes(state: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith(EMA_SUFFIX)}


# -- variant inference --------------------------------------------------------------------------


@cache
def _model_shapes(variant: specs.Variant) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = MobileNet(variant)
    state = model.state_dict()
    names = slim_names(model)
    return {slim: slim_shape(tuple(state[key].shape), slim) for slim, key in names.items()}


def _architecture_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The kernels but the logits: they fix the architecture, and every format has them (a
    .tflite has no BatchNorm variables, its biases are folded)."""
    return {k: v for k, v in shapes.items() if k.endswith("weights") and LOGITS not in k}


def infer_variant(shapes: dict[str, tuple[int, ...]], source: str = "the weights") -> specs.Variant:
    """The variant whose every (non-logits) variable has the given slim name and shape."""
    wanted = _architecture_shapes(shapes)
    best: tuple[int, specs.Variant | None] = (-1, None)
    for variant in _candidates(wanted):
        have = _architecture_shapes(_model_shapes(variant))
        if have == wanted:
            return variant
        score = sum(have.get(k) == v for k, v in wanted.items()) - len(set(have) ^ set(wanted))
        best = max(best, (score, variant), key=lambda pair: pair[0])
    hint = f"; the closest is {best[1].name}" if best[1] is not None else ""
    raise WeightsError(
        f"{source} matches no known variant{hint} (first names: {sorted(wanted)[:3]}); "
        "check that the file is a TF-slim MobileNet V2/V3/EdgeTPU"
    )


def _candidates(wanted: dict[str, tuple[int, ...]]) -> list[specs.Variant]:
    """Families with the same variable names, at multipliers near the one the widths suggest."""
    multipliers = {0.35, 0.5, 0.75, 1.0, 1.25, 1.3, 1.4, 1.5, 2.0}
    out = []
    for family in specs.FAMILIES:
        base = _architecture_shapes(_model_shapes(specs.Variant(family)))
        if set(base) != set(wanted):
            continue
        stem = next(iter(base))
        ratio = wanted[stem][-1] / base[stem][-1]
        guesses = multipliers | {round(ratio, 2)}
        for multiplier in sorted(guesses, key=lambda m: abs(m - ratio)):
            out += [specs.Variant(family, multiplier, fine) for fine in (False, True)]
    return out


# -- copying a slim state into a model -----------------------------------------------------------


def _to_torch(array: np.ndarray, slim_name: str, target: torch.Size) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if len(target) == 2:  # logits: [1, 1, C, K] -> [K, C]
        return tensor.reshape(target[1], target[0]).t()
    if len(target) == 4:
        order = (2, 3, 0, 1) if slim_name.endswith("depthwise_weights") else (3, 2, 0, 1)
        return tensor.permute(order)
    return tensor


def load_slim_state(
    model: MobileNet, state: dict[str, np.ndarray], *, use_ema: bool = True, source: str = "weights"
) -> dict[str, list[str]]:
    """Copy a slim state into `model`, all or nothing; EMA shadows are used where present.

    Returns {"missing": [], "unexpected": [...], "reset": [...]}: unexpected names (optimizer
    slots, global_step) are reported, a missing one is an error; `reset` lists the logits
    variables when the class counts differ (the classifier stays freshly initialised).
    """
    names = slim_names(model)
    target = model.state_dict()
    pick = _pick_shadows(list(names), state, use_ema, source)
    missing = sorted(slim for slim, key in pick.items() if key not in state)
    if missing:
        raise WeightsError(
            f"{source} lacks {len(missing)} variable(s) of {model.variant.name}, "
            f"e.g. {missing[:3]}; it is incomplete or of another variant"
        )
    reset = _classifier_to_reset(model, state, pick)
    loaded = {}
    for slim, key in names.items():
        if slim in reset:
            continue
        array = _adapt_classes(state[pick[slim]], slim, model.num_classes)
        expected = slim_shape(tuple(target[key].shape), slim)
        if tuple(array.shape) != expected:
            raise WeightsError(
                f"{source}: {slim} has shape {tuple(array.shape)}, {model.variant.name} needs "
                f"{expected}; the weights are of another variant"
            )
        if not np.isfinite(array).all():
            raise WeightsError(
                f"{source}: {pick[slim]} holds non-finite values (NaN or inf); the weights are "
                "damaged or diverged, use another file"
            )
        loaded[key] = _to_torch(array, slim, target[key].shape)
    model.load_state_dict(loaded, strict=False)
    known = set(pick.values()) | set(names)
    unexpected = sorted(k for k in state if k not in known and not k.endswith(EMA_SUFFIX))
    return {"missing": [], "unexpected": unexpected, "reset": sorted(reset)}


def _pick_shadows(
    names: list[str], state: dict[str, np.ndarray], use_ema: bool, source: str
) -> dict[str, str]:
    """{slim name: the state key to load}: the EMA shadow where there is one, all or none.

    Shadows are all-or-none within the trainable variables and within the BatchNorm moving
    statistics separately (training scripts differ in whether they average the latter); a
    checkpoint shadowing only some of either would silently mix averaged and raw values.
    """
    if not use_ema:
        return {slim: slim for slim in names}
    shadowed = {slim for slim in names if f"{slim}{EMA_SUFFIX}" in state}
    for group in (
        [n for n in names if not n.endswith(_MOVING_STATS)],
        [n for n in names if n.endswith(_MOVING_STATS)],
    ):
        lacking = [n for n in group if n not in shadowed and n in state]
        if shadowed & set(group) and lacking:
            raise WeightsError(
                f"{source} holds EMA shadows ({EMA_SUFFIX}) for some variables but not for "
                f"{len(lacking)}, e.g. {lacking[:3]}; it is damaged, or load its raw variables "
                "with use_ema=False (--no-ema)"
            )
    return {slim: f"{slim}{EMA_SUFFIX}" if slim in shadowed else slim for slim in names}


def _classifier_to_reset(model: MobileNet, state: dict, pick: dict[str, str]) -> set[str]:
    logits = [slim for slim in pick if LOGITS in slim]
    if not logits:
        return set()
    stored = state[pick[logits[0]]].shape[-1]
    same = stored == model.num_classes or (stored == 1001 and model.num_classes == 1000)
    return set() if same else set(logits)


def _adapt_classes(array: np.ndarray, slim: str, num_classes: int) -> np.ndarray:
    """1001-class slim logits into a 1000-class model: drop index 0 (background)."""
    if LOGITS in slim and array.shape[-1] == 1001 and num_classes == 1000:
        return array[..., 1:]
    return array


def fold_identity_batch_norm(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Fill in BatchNorm variables as identity where `state` holds folded conv biases instead.

    .tflite files fold BatchNorm into conv weights and a bias; the model keeps its BatchNorm
    layers (so it can be trained again), set to gamma=1, mean=0, var=1-eps (each layer's own
    eps), beta=bias, which computes exactly conv + bias.
    """
    for module in model.modules():
        scope = getattr(module, "slim_scope", "")
        if not (isinstance(module, nn.BatchNorm2d) and scope.endswith("/BatchNorm")):
            continue
        scope = scope.removesuffix("/BatchNorm")
        bias = state.pop(f"{scope}/biases", None)
        if bias is None or f"{scope}/BatchNorm/beta" in state:
            continue
        state[f"{scope}/BatchNorm/beta"] = bias
        state[f"{scope}/BatchNorm/gamma"] = np.ones_like(bias)
        state[f"{scope}/BatchNorm/moving_mean"] = np.zeros_like(bias)
        state[f"{scope}/BatchNorm/moving_variance"] = np.full_like(bias, 1.0 - module.eps)


# -- sources ------------------------------------------------------------------------------------


def read_slim_state(
    path: str | os.PathLike, *, use_ema: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Any supported file -> (slim state, metadata such as preprocessing and labels).

    `use_ema` only chooses among the checkpoints of a release tarball (its `ema/` one or its
    `pristine/` raw variables); shadows inside one checkpoint are chosen in `load_slim_state`.
    """
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".tflite":
        return tflite_slim_state(path.read_bytes(), str(path))
    if suffixes.endswith((".tgz", ".tar.gz")) or (path.is_file() and looks_like_tar(path)):
        return _tar_slim_state(path, use_ema)
    if path.suffix.lower() == ".safetensors":
        raise WeightsError("internal: safetensors files are loaded by load_safetensors")
    if path.suffix.lower() in (".onnx", ".pt2"):
        raise WeightsError(
            f"{path} is a deployment file ({path.suffix}, e.g. an int8 quantized model), not "
            "float weights: give a TF checkpoint, .tgz, .tflite or .safetensors, or run the file "
            "in its engine (`mobilenetv3 evaluate DATA --weights FILE --engine onnxruntime` "
            "for .onnx, `--engine torch` for .pt2; `mobilenetv3.quantize.int8_runner`)"
        )
    with CheckpointReader(path) as reader:
        return reader.read_all(), {"format": "tf_checkpoint"}


def _tar_slim_state(path: Path, use_ema: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    members = list_tar_members(path)
    if any(m.endswith(".index") for m in members):
        with open_checkpoint_in_tar(path, use_ema=use_ema) as reader:
            return reader.read_all(), {"format": "tf_checkpoint"}
    if any(m.endswith(".tflite") for m in members):
        return tflite_slim_state(read_tar_member(path, ".tflite"), f"{path}:.tflite")
    raise WeightsError(f"{path} holds neither a TF checkpoint nor a .tflite: {members[:10]}")


def tflite_slim_state(data: bytes, source: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Dequantized conv weights and folded biases of a slim-exported .tflite, in slim layout,
    and whether they were 8-bit (then the file is an int8 model: `load_pretrained` gates it);
    the metadata's `graph` is the file's data model, for what a head reads from its structure."""
    from mobilenetv3.tflite.reader import TFLiteModel, check_mobilenet

    tfl = TFLiteModel.from_bytes(data, source=source)
    check_mobilenet(tfl)
    state: dict[str, np.ndarray] = {}
    quantized = False
    for i, op in enumerate(tfl.operators):
        if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        weights, bias = _conv_constants(tfl, i, op)
        scope = _scope_of(weights.name)
        kernel = _finite(tfl, weights).transpose(1, 2, 3, 0)  # OHWI / 1HWC -> HWIO / HWC1
        name = "depthwise_weights" if op.opcode == "DEPTHWISE_CONV_2D" else "weights"
        quantized |= weights.dtype in (np.int8, np.uint8)
        state[f"{scope}/{name}"] = kernel
        state[f"{scope}/biases"] = _finite(tfl, bias) - _folded_gate_offset(op, scope)
    if not state:
        raise WeightsError(f"{source}: no convolution weights found")
    return state, {"format": "tflite", "quantized": quantized, "graph": tfl}


def _conv_constants(tfl: Model, i: int, op: Operator) -> tuple[Tensor, Tensor]:
    """The (filter, bias) tensors of convolution `i`: a 4-D constant and a constant with one
    value per output channel, or a TFLiteError naming the operator."""
    ins = op.inputs
    if len(ins) < 3 or min(ins[1:3]) < 0:
        problem = f"has inputs {list(ins)}, not (input, filter, bias)"
    else:
        weights, bias = tfl.tensors[ins[1]], tfl.tensors[ins[2]]
        axis = 3 if op.opcode == "DEPTHWISE_CONV_2D" else 0
        constant = weights.data is not None and bias.data is not None
        if constant and len(weights.shape) == 4 and bias.shape == (weights.shape[axis],):
            return weights, bias
        problem = (f"needs a constant 4-D filter and a constant bias of one value per output "
                   f"channel, the file has {weights.shape} and {bias.shape}")  # fmt: skip
    out = tfl.tensors[op.outputs[0]].name
    raise TFLiteError(f"{tfl.source}: operator {i} ({op.opcode}, producing {out!r}) {problem}; "
                      "the file is damaged or not a slim MobileNet export")  # fmt: skip


def _finite(tfl: Model, tensor: Tensor) -> np.ndarray:
    """A constant dequantized to float32, refused if any value is NaN or inf."""
    values = tfl.dequantized(tensor.index)
    if not np.isfinite(values).all():
        raise TFLiteError(f"{tfl.source}: tensor {tensor.index} {tensor.name!r} holds "
                          "non-finite values (NaN or inf, or an infinite scale); the file is "
                          "damaged")  # fmt: skip
    return values


# The op names below a slim layer's scope in a conv weight's tensor name: the official files'
# `weights_quant/...`, or, in TF's converter output, `Conv2D`, `depthwise` or the folded BatchNorm.
_OP_PART = re.compile(r"^(weights|depthwise_weights)|^(Conv2D|depthwise|BatchNorm)$")


def _scope_of(tensor_name: str) -> str:
    """The slim scope of a conv weight tensor in either naming: official
    'MobilenetV3/expanded_conv_3/expand/weights_quant/FakeQuant...', or TF's converter
    'MobilenetV3/expanded_conv/depthwise/BatchNorm/FusedBatchNormV3;...' (';'-joined names of
    the folded ops, the first one the layer's own) -> '.../expand', '.../depthwise'."""
    parts = tensor_name.split(";")[0].split("/")
    cut = max((i for i, p in enumerate(parts) if _OP_PART.match(p)), default=len(parts) - 1)
    return "/".join(parts[:cut])


def _folded_gate_offset(op: Any, scope: str) -> float:
    """3.0 where TF's converter folded a hard-sigmoid gate's `+3` into the conv's bias (a fused
    RELU6, then MUL 0.16667): squeeze-excite's excite conv, LR-ASPP's image pooling; the official
    files keep a separate ADD, as the model does."""
    gate = scope.endswith("squeeze_excite/Conv_1") or scope == "image_pooling"
    return 3.0 if gate and op.options.get("fused_activation_function") == "RELU6" else 0.0


def existing_weights(weights: str | os.PathLike) -> Path:
    """The weights path, checked to exist (a checkpoint may be given by its prefix)."""
    path = Path(weights)
    if not path.exists() and not Path(f"{path}.index").exists():
        raise WeightsError(f"weights not found: {path}")
    return path


def model_from_state(
    state: dict[str, np.ndarray],
    meta: dict[str, Any],
    path: Path,
    name: str | None = None,
    *,
    num_classes: int = 1001,
    depth_multiplier: float | None = None,
    use_ema: bool = True,
    dropout: float | None = None,
) -> MobileNet:
    """Build the classifier the slim-named weights were made for (or `name`) and load them,
    all or nothing."""
    variant = infer_variant(slim_state_shapes(state), str(path))
    if name is not None:
        asked = specs.parse_variant(name, depth_multiplier)
        if asked != variant:
            raise WeightsError(f"{path} holds {variant.name} weights, not {asked.name}")
    stored = _stored_classes(state)
    classes = stored if num_classes == 1001 and stored else num_classes
    model = MobileNet(variant, num_classes=classes, dropout=dropout)
    if meta["format"] == "tflite":
        fold_identity_batch_norm(model, state)
    model.load_report = load_slim_state(model, state, use_ema=use_ema, source=str(path))
    model.pretrained_info = {"source": str(path), "format": meta["format"]}
    return model.eval()


def _stored_classes(state: dict[str, np.ndarray]) -> int | None:
    logits = [v for k, v in state.items() if k.endswith(f"{LOGITS}/biases")]
    return int(logits[0].shape[-1]) if logits else None
