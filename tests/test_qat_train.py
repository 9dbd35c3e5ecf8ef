"""`mobilenetv3 train --qat`: quantization-aware fine-tuning ends in an int8 program that the
evaluate command runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mobilenetv3.cli import main
from mobilenetv3.train import load_config, train
from mobilenetv3.train.config import ConfigError


def _folder(root: Path, shared: Path, count: int) -> Path:
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))[:count]
    for i, f in enumerate(files):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"c{i % 2}" / f.name).symlink_to(f)
    return root


def test_qat_trains_and_ends_in_an_int8_program(tmp_path, shared, capsys):
    data = _folder(tmp_path / "data", shared, 8)
    torch.manual_seed(0)
    config = load_config(model="v3_small_0.35", data=str(data), output=str(tmp_path / "run"),
                         image_size=64, batch_size=4, epochs=1, qat=True, ema_decay=0.0,
                         augment="none", log_every=0, plot=False, progress=False)  # fmt: skip
    result = train(config)
    assert result.model_path.name == "model_int8.pt2" and result.step == 2
    program = torch.export.load(str(result.model_path)).module()
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops)  # really an int8 graph
    assert main(["evaluate", str(data), "--weights", str(result.model_path)]) == 0
    assert "top1" in capsys.readouterr().out


def test_qat_with_a_frozen_backbone_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="qat"):
        load_config(model="v3_small_0.35", data=str(tmp_path), output=str(tmp_path / "r"),
                    qat=True, freeze_backbone=True).validate()  # fmt: skip
