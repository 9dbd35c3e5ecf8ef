"""Training: overfitting, DDP equivalence, bitwise resume, fine-tuning, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mobilenetv3 import create_model
from mobilenetv3.data.datasets import DatasetError
from mobilenetv3.train import load_config, train
from mobilenetv3.train.checkpoint import load_checkpoint
from mobilenetv3.train.config import ConfigError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL = ["--model", "v3_small_0.35", "--image-size", "64", "--no-progress"]
FAST = {"log_every": 0, "plot": False, "progress": False}


def image_folder(root: Path, shared: Path, count: int, label=None) -> Path:
    """Symlinks to the first `count` samples; one class per image unless `label(index)` says."""
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))[:count]
    for i, f in enumerate(files):
        folder = root / (label(i) if label else f"c{i:03d}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f.name).symlink_to(f)
    return root


def command(*args: str, torchrun: int = 0) -> list[str]:
    """`mobilenetv3 train ARGS`, in `torchrun` processes where given."""
    launcher = [sys.executable, "-m", "mobilenetv3"]
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={torchrun}", "-m", "mobilenetv3"]  # fmt: skip
    return [*launcher, "train", *args]


def cli(*args: str, torchrun: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, torchrun=torchrun), env=ENV, capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (torchrun's workers run in sessions of
    their own, so a process group would miss them): a machine failing mid-run."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        _kill_tree(int(child))
    os.kill(pid, signal.SIGKILL)


def kill_mid_run(argv: list[str], run: Path, after_step: int) -> None:
    """Start the training `argv` and SIGKILL it (workers included) once its log passes
    `after_step`; at most --checkpoint-every steps are lost."""
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    log, deadline = run / "log.jsonl", time.monotonic() + 200
    while process.poll() is None and time.monotonic() < deadline:
        steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines()] if (
            log.exists()) else [0]  # fmt: skip
        if max(steps) >= after_step:
            _kill_tree(process.pid)
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.usefixtures("one_thread")
def test_overfits_a_small_batch(tmp_path: Path, shared: Path) -> None:
    data = image_folder(tmp_path / "data", shared, 16, label=lambda i: f"c{i % 4}")
    config = load_config(model="v3_small_0.35", data=str(data),
                         output=str(tmp_path / "run"), image_size=96, batch_size=16, epochs=40,
                         augment="none", optimizer="adamw", lr=0.01, lr_reference_batch=None,
                         schedule="constant", weight_decay=0.0, dropout=0.0, label_smoothing=0.0,
                         ema_decay=0.0, bn_momentum=0.2, eps=1e-8, **FAST)  # fmt: skip
    result = train(config)
    # One batch per epoch: the last epoch's training accuracy is on all 16 images.
    print(f"overfit training accuracy {result.metrics['accuracy']:.3f}")
    assert result.metrics["accuracy"] >= 0.95
    model = create_model(weights=result.model_path)
    assert model.pretrained_info["labels"] == ["c0", "c1", "c2", "c3"]
    assert model.pretrained_info["preprocess"]["image_size"] == [96, 96]


def _final_state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


DDP_ARGS = [*SMALL, "--sync-bn", "--max-steps", "3", "--set", "dropout=0", "--set", "log_every=0",
            "--set", "ema_decay=0", "--set", "lr=0.05", "--set", "lr_reference_batch=null"]


def test_ddp_two_processes_match_one_process_with_twice_the_batch(
    tmp_path: Path, shared: Path
) -> None:
    """Per-rank BN would normalise each rank's 4 images by their own statistics: a different
    function from BN over the 8 together; --sync-bn makes them the same (dropout 0)."""
    data = image_folder(tmp_path / "data", shared, 24, label=lambda i: f"c{i % 3}")
    one = cli("--data", str(data), "--output", str(tmp_path / "one"), "--batch-size", "8",
              *DDP_ARGS)  # fmt: skip
    two = cli("--data", str(data), "--output", str(tmp_path / "two"), "--batch-size", "4",
              *DDP_ARGS, torchrun=2)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    assert a["step"] == b["step"] == 3
    diff = max((a["model"][k].double() - b["model"][k].double()).abs().max().item()
               for k in a["model"] if a["model"][k].is_floating_point())  # fmt: skip
    print(f"DDP max parameter difference {diff:.3g}")
    assert diff < 1e-4


def _assert_identical(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_resume_after_kill_is_bitwise_identical(tmp_path: Path, shared: Path) -> None:
    data = image_folder(tmp_path / "data", shared, 12, label=lambda i: f"c{i % 2}")
    common = ["--data", str(data), *SMALL, "--batch-size", "4", "--epochs", "2",
              "--checkpoint-every", "2", "--set", "log_every=1"]  # fmt: skip
    whole = cli(*common, "--output", str(tmp_path / "whole"), "--max-steps", "5")
    assert whole.returncode == 0, whole.stderr[-2000:]
    # The interrupted run stops after its step-2 checkpoint (as if killed), then resumes.
    cut = cli(*common, "--output", str(tmp_path / "cut"), "--max-steps", "2")
    assert cut.returncode == 0, cut.stderr[-2000:]
    resumed = cli(*common, "--output", str(tmp_path / "cut"), "--max-steps", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _final_state(tmp_path / "whole"), _final_state(tmp_path / "cut")
    for key in ("model", "ema", "optimizer", "scheduler", "ranks", "step", "epoch", "batch"):
        _assert_identical(a[key], b[key], key)


def _finetune_args(tmp_path: Path, shared: Path) -> list[str]:
    files = sorted((shared / "images" / "imagenet-samples").glob("*.JPEG"))
    synsets = sorted({f.name.split("_")[0] for f in files})
    for i, f in enumerate(files):
        kind = "animal" if synsets.index(f.name.split("_")[0]) < 398 else "object"
        folder = tmp_path / ("val" if i % 5 == 0 else "train") / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f.name).symlink_to(f)
    weights = shared / "pretrained" / "v3-small_224_1.0_uint8.tflite"
    return ["--weights", str(weights), "--data", str(tmp_path / "train"), "--val-data",
            str(tmp_path / "val"), "--freeze-backbone", "--epochs", "6", "--batch-size", "25",
            "--no-progress", "--set", "augment=none", "--set", "optimizer=adamw",
            "--set", "lr=0.001", "--set", "lr_reference_batch=null", "--set", "ema_decay=0",
            "--set", "dropout=0", "--set", "weight_decay=0.01", "--set", "schedule=constant",
            "--set", "label_smoothing=0", "--set", "eps=1e-8", "--set", "log_every=0"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_finetune_animal_vs_object(tmp_path: Path, shared: Path, processes: int) -> None:
    """Official Small weights, frozen backbone, 2-class head: 800 images train, 200 evaluate."""
    args = _finetune_args(tmp_path, shared)
    done = cli(*args, "--output", str(tmp_path / "run"), torchrun=processes if processes > 1 else 0)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy = float(done.stdout.split("val top1 ")[1].split()[0]) / 100
    print(f"fine-tune accuracy ({processes} process(es)): {accuracy:.3f}")
    assert accuracy >= 0.90
    model = create_model(weights=tmp_path / "run" / "model.safetensors")
    assert model.num_classes == 2 and model.pretrained_info["labels"] == ["animal", "object"]


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearnig_rate: 0.2\n")
    with pytest.raises(ConfigError, match="learnig_rate"):
        load_config(bad, data="x", output="y")
    done = cli("--config", str(bad), "--data", "x", "--output", str(tmp_path / "r"), *SMALL)
    assert done.returncode == 2 and "learnig_rate" in done.stderr


def test_dataset_without_images(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "notes.txt").write_text("no images here")
    config = load_config(model="v3_small_0.35", data=str(tmp_path / "data"),
                         output=str(tmp_path / "run"), **FAST)  # fmt: skip
    with pytest.raises(DatasetError, match="no images"):
        train(config)


def test_corrupt_checkpoint_on_resume(tmp_path: Path, shared: Path) -> None:
    data = image_folder(tmp_path / "data", shared, 8, label=lambda i: f"c{i % 2}")
    config = load_config(model="v3_small_0.35", data=str(data), output=str(tmp_path / "run"),
                         image_size=64, batch_size=4, epochs=2, **FAST)  # fmt: skip
    train(config)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    prev = last.with_name("last.prev.pt")
    assert prev.is_file()
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    done = cli("--output", str(tmp_path / "run"), "--resume", "--epochs", "3", "--no-progress")
    assert done.returncode == 2
    assert "corrupt or unreadable" in done.stderr and "last.prev.pt" in done.stderr
    assert load_checkpoint(prev)["epoch"] == 1


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path: Path, shared: Path) -> None:
    """A real SIGKILL while training: resume from the last checkpoint (at most
    --checkpoint-every steps lost) ends exactly where an uninterrupted run ends."""
    data = image_folder(tmp_path / "data", shared, 12, label=lambda i: f"c{i % 2}")
    common = ["--data", str(data), *SMALL, "--batch-size", "4", "--epochs", "20",
              "--checkpoint-every", "4", "--max-steps", "30", "--set", "log_every=1"]  # fmt: skip
    whole = cli(*common, "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    run = tmp_path / "cut"
    kill_mid_run(command(*common, "--output", str(run)), run, after_step=10)  # past step 8
    killed_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert killed_at < 30
    resumed = cli(*common, "--output", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _final_state(tmp_path / "whole"), _final_state(run)
    for key in ("model", "ema", "optimizer", "scheduler", "ranks", "step", "epoch", "batch"):
        _assert_identical(a[key], b[key], key)


def test_ddp_resume_after_kill_is_bitwise_identical(tmp_path: Path, shared: Path) -> None:
    """Two processes (gloo, CPU) killed mid-epoch, workers and launcher at once, then resumed
    from the last checkpoint: the same model, optimizer, every rank's RNG and meters as an
    uninterrupted two-process run."""
    data = image_folder(tmp_path / "data", shared, 96, label=lambda i: f"c{i % 4}")
    common = ["--data", str(data), *SMALL, "--batch-size", "4", "--epochs", "20",
              "--checkpoint-every", "3", "--max-steps", "14", "--set", "log_every=1"]  # fmt: skip
    whole = cli(*common, "--output", str(tmp_path / "whole"), torchrun=2)
    assert whole.returncode == 0, whole.stderr[-2000:]
    run = tmp_path / "cut"
    kill_mid_run(command(*common, "--output", str(run), torchrun=2), run, after_step=4)
    killed = load_checkpoint(run / "checkpoints" / "last.pt")
    # 12 steps per epoch (96 images, 2 x 4 a step): the checkpoint of step 3, 6 or 9, mid-epoch
    assert killed["world_size"] == 2 and killed["epoch"] == 0 and 0 < killed["batch"] < 12
    resumed = cli(*common, "--output", str(run), "--resume", torchrun=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _final_state(tmp_path / "whole"), _final_state(run)
    assert len(a["ranks"]) == 2 and (a["step"], a["epoch"], a["batch"]) == (14, 1, 2)
    for key in ("model", "ema", "optimizer", "scheduler", "ranks", "step", "epoch", "batch"):
        _assert_identical(a[key], b[key], key)
