"""The training maths against TensorFlow's documented formulas, written out here in numpy.

The formulas (checked once against TensorFlow 2.15's tf.compat.v1 ops; the tests need no TF):
- `RMSPropOptimizer`: ms <- rho*ms + (1-rho)*g^2 with ms starting at 1; mom <- momentum*mom +
  lr*g/sqrt(ms + epsilon); w <- w - mom.
- `exponential_decay`: lr * rate^(step / decay_steps), floored exponent when staircase.
- `ExponentialMovingAverage(decay, num_updates)`: d = min(decay, (1 + n) / (10 + n)) at the
  n-th update (n from 0); shadow <- shadow - (1 - d) * (shadow - value).
- `softmax_cross_entropy(label_smoothing=s)`: targets onehot * (1 - s) + s / num_classes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobilenetv3.train.config import bundled_config, load_config
from mobilenetv3.train.ema import ModelEMA
from mobilenetv3.train.optim import LRSchedule, TFRMSprop, base_lr, build_optimizer


def _tf_rmsprop(w, grads, lr, rho, momentum, eps, weight_decay):
    w, ms, mom = w.astype(np.float64), np.ones_like(w, np.float64), np.zeros_like(w, np.float64)
    for g in grads:
        g = g + weight_decay * w  # slim's l2_regularizer: d/dw (wd * sum(w^2) / 2)
        ms = rho * ms + (1 - rho) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w = w - mom
    return w


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_tf_rmsprop_follows_tf_update(weight_decay):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(64).astype(np.float32)
    grads = (rng.standard_normal((20, 64)) * rng.uniform(1e-3, 3, 64)).astype(np.float32)
    param = nn.Parameter(torch.from_numpy(w0.copy()))
    optimizer = TFRMSprop([param], lr=0.05, decay=0.9, momentum=0.9, eps=0.002,
                          weight_decay=weight_decay)  # fmt: skip
    for g in grads:
        param.grad = torch.from_numpy(g.copy())
        optimizer.step()
    expected = _tf_rmsprop(w0, grads, 0.05, 0.9, 0.9, 0.002, weight_decay)
    assert np.abs(expected - w0).max() > 0.5  # the weights moved: a no-op cannot pass
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tf_rmsprop_first_step_is_bounded_by_the_initial_mean_square():
    """ms starts at 1: the first step is lr*g/sqrt(0.9 + 0.1 g^2 + eps), not torch's lr*sign."""
    param = nn.Parameter(torch.zeros(3))
    param.grad = torch.tensor([1e-4, 1.0, 100.0])
    TFRMSprop([param], lr=1.0, decay=0.9, momentum=0.0, eps=0.0).step()
    g = np.array([1e-4, 1.0, 100.0])
    np.testing.assert_allclose(-param.detach().numpy(), g / np.sqrt(0.9 + 0.1 * g * g), rtol=1e-6)


def _config(**values):
    return load_config(data="unused", output="unused", model="v3_small_0.35", **values)


def test_staircase_exponential_decay_and_warmup_follow_tf():
    steps_per_epoch, warmup_epochs, decay_epochs, rate = 10, 2, 3, 0.9
    schedule = LRSchedule(_config(warmup_epochs=warmup_epochs, decay_epochs=decay_epochs,
                                  decay_factor=rate, staircase=True), steps_per_epoch)  # fmt: skip
    warmup_steps, decay_steps = warmup_epochs * steps_per_epoch, decay_epochs * steps_per_epoch
    for step in range(200):
        if step < warmup_steps:
            # the TPU trainers' linear warm-up, global_step / warmup_steps, taken one step on:
            # torch's scheduler gives the lr of the step about to run, TF that of the one done
            expected = (step + 1) / warmup_steps
        else:  # tf.compat.v1.train.exponential_decay, counted from step 0
            expected = rate ** math.floor(step / decay_steps)
        assert schedule(step) == pytest.approx(expected, rel=1e-12), step
    assert schedule(warmup_steps) == 1.0 and schedule(decay_steps) == pytest.approx(rate)


def test_continuous_exponential_decay_follows_tf():
    schedule = LRSchedule(_config(decay_epochs=2.5, decay_factor=0.97, staircase=False), 4)
    for step in range(0, 100, 7):
        assert schedule(step) == pytest.approx(0.97 ** (step / 10), rel=1e-12)


def test_ema_follows_tf_moving_average_with_num_updates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.9999)
    keys = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    shadow = {k: model.state_dict()[k].double().numpy().copy() for k in keys}
    rng = np.random.default_rng(3)
    for n in range(30):
        with torch.no_grad():
            for k in keys:
                model.state_dict()[k].copy_(torch.from_numpy(rng.standard_normal(
                    tuple(model.state_dict()[k].shape)).astype(np.float32)))  # fmt: skip
            model[1].num_batches_tracked.fill_(n + 7)
        ema.update(model)
        decay = min(0.9999, (1 + n) / (10 + n))
        for k in keys:
            value = model.state_dict()[k].double().numpy()
            shadow[k] = shadow[k] - (1 - decay) * (shadow[k] - value)
    for k in keys:
        np.testing.assert_allclose(ema.module.state_dict()[k].numpy(), shadow[k], rtol=1e-5,
                                   atol=1e-6, err_msg=k)  # fmt: skip
    assert int(ema.module[1].num_batches_tracked) == 36  # integers are copied, not averaged
    assert ema.current_decay() == pytest.approx(31 / 40)


def test_label_smoothing_spreads_as_tf_does():
    """The training loss is `F.cross_entropy(label_smoothing=s)`; TF (and slim) spread s over
    all classes, the true one included: the same target as torch's, unlike s / (K - 1)."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 7))
    labels = rng.integers(0, 7, 5)
    smoothing = 0.1
    targets = np.eye(7)[labels] * (1 - smoothing) + smoothing / 7
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(targets * log_probs).sum(1).mean()
    got = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                          label_smoothing=smoothing)  # fmt: skip
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_slim_original_config_is_the_papers_recipe():
    """Howard et al. 2019, sec. 6.1.1: RMSProp momentum 0.9, lr 0.1 at batch 4096, decay 0.99
    every 3 epochs, dropout keep 0.8, l2 1e-5, EMA 0.9999, BatchNorm decay 0.99."""
    config = load_config(bundled_config("slim_original"), data="train", output="run")
    assert (config.optimizer, config.momentum, config.rmsprop_decay) == ("rmsprop_tf", 0.9, 0.9)
    assert (config.lr, config.lr_reference_batch) == (0.1, 4096)
    assert (config.schedule, config.decay_factor, config.decay_epochs, config.staircase) == (
        "exponential", 0.99, 3, True)  # fmt: skip
    assert (config.dropout, config.weight_decay, config.ema_decay) == (0.2, 1e-5, 0.9999)
    assert (config.bn_momentum, config.label_smoothing, config.model) == (0.01, 0.1,
                                                                          "v3_large_1.0")
    assert base_lr(config, 1024) == pytest.approx(0.025)
    optimizer = build_optimizer(config, nn.Conv2d(3, 8, 3), global_batch=1024)
    assert isinstance(optimizer, TFRMSprop)
    assert optimizer.defaults["lr"] == pytest.approx(0.025)
    assert optimizer.defaults["eps"] == 0.002
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-5, 0.0]
