"""Training and fine-tuning: `train(load_config(...))` or `mobilenetv3 train ...`.

Modules: `config` (every hyperparameter), `tasks` (classification, detection, segmentation:
model, data, loss), `data` (ImageFolder, augmentation, resumable sampler), `synthetic` (shapes
on noise for the heads), `optim` (TF-style RMSProp, weight-decay groups, lr schedule), `ema`,
`checkpoint`, `distributed` (torchrun, CPU SyncBatchNorm), `loop` (the loop itself).
"""

from mobilenetv3.train.config import ConfigError, TrainConfig, bundled_config, load_config
from mobilenetv3.train.loop import TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "bundled_config", "load_config", "train"]
