"""Random weights that keep activations at unit scale, for checks that must see a wrong answer.

A freshly built model has identity BatchNorm statistics and fan-out initialised depthwise
kernels: in eval mode its activations shrink layer by layer to logits of ~1e-9, so comparing
two runs of it passes whatever either got wrong. `randomize` draws every weight with variance
1/fan-in, gives BatchNorm non-trivial affine terms, and sets its running statistics from one
forward pass over a seeded batch: every layer then normalises its input to roughly unit scale,
and the classifier is scaled so that the logits spread by 1 on that batch.
"""

from __future__ import annotations

import torch
from torch import nn

CALIBRATION_SIZE = (224, 224)  # the size the models are made for: border effects as in use


def randomize(model: nn.Module, seed: int = 0, batch: int = 2) -> nn.Module:
    """Seeded random weights, biases and BatchNorm terms, in place; returns the model in eval
    mode. The running statistics come from `batch` seeded inputs in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / fan_in**0.5)
                if m.bias is not None:
                    uniform(m.bias, -0.2, 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.5, 0.5)
        momenta = [bn.momentum for bn in batch_norms]
        for bn in batch_norms:
            bn.momentum = 1.0  # the running statistics become this batch's
        x = torch.rand(batch, 3, *CALIBRATION_SIZE, generator=generator) * 2 - 1
        try:
            model.train()(x)
        finally:
            for bn, momentum in zip(batch_norms, momenta, strict=True):
                bn.momentum = momentum
        classifier = getattr(model, "classifier", None)
        if isinstance(classifier, nn.Linear):  # pooling shrinks the spread: logits back to ~1
            classifier.weight /= (model.eval()(x) - classifier.bias).std()
    return model.eval()
