"""The map between TF-slim variable names and this model's parameters and buffers.

It is derived from the `slim_scope` each weighted module got from the builder, so it follows
the spec and never drifts from it; the checkpoint and .tflite readers load through it.
"""

from __future__ import annotations

from torch import nn

_BATCH_NORM = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def slim_names(model: nn.Module) -> dict[str, str]:
    """{slim variable name: state_dict key} for every parameter and BatchNorm statistic."""
    names: dict[str, str] = {}
    for path, module in model.named_modules():
        scope = getattr(module, "slim_scope", None)
        if scope is None:
            continue
        if isinstance(module, nn.BatchNorm2d):
            pairs = [(f"{scope}/{slim}", key) for key, slim in _BATCH_NORM.items()]
        else:
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            weights = "depthwise_weights" if depthwise else "weights"
            pairs = [(f"{scope}/{weights}", "weight")]
            if module.bias is not None:
                pairs.append((f"{scope}/biases", "bias"))
        names.update((slim, f"{path}.{key}") for slim, key in pairs)
    return names


def slim_shape(tensor_shape: tuple[int, ...], slim_name: str) -> tuple[int, ...]:
    """The shape slim stores a parameter in: HWIO convs, [H, W, C, 1] depthwise, [1, 1, C, K]
    logits (a 1x1 conv in slim, a Linear here)."""
    if len(tensor_shape) == 2:
        return (1, 1, tensor_shape[1], tensor_shape[0])
    if len(tensor_shape) == 4:
        out, inp, height, width = tensor_shape
        if slim_name.endswith("depthwise_weights"):
            return (height, width, out, inp)
        return (height, width, inp, out)
    return tuple(tensor_shape)
