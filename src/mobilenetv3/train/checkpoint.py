"""Training checkpoints: written atomically, the previous one kept, read back with clear errors.

A checkpoint holds everything the next step depends on (model, EMA, optimiser, scheduler, the
position in the epoch, every rank's RNG states), so a resumed run continues bitwise identically.
Only plain tensors and Python containers are stored, so they load with `weights_only=True`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "mobilenetv3-train-1"
LAST = "last.pt"
PREVIOUS = "last.prev.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from."""


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and Python generator states, as plain values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write `directory/last.pt` atomically; the one it replaces becomes `last.prev.pt`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path, tmp = directory / LAST, directory / f".{LAST}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, directory / PREVIOUS)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def find_checkpoint(run_dir: str | Path, explicit: str | Path | None = None) -> Path:
    """The checkpoint `--resume` means: an explicit path, else RUN_DIR/checkpoints/last.pt."""
    path = Path(explicit) if explicit is not None else Path(run_dir) / "checkpoints" / LAST
    if not path.is_file():
        prev = path.with_name(PREVIOUS)
        hint = f"; {prev} exists: pass it to --resume" if prev.is_file() else ""
        raise CheckpointError(f"no checkpoint to resume from at {path}{hint}")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; any damage is a `CheckpointError`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage files
        prev = path.with_name(PREVIOUS)
        hint = f"; the previous checkpoint is still at {prev}" if prev.is_file() else ""
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}){hint}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a mobilenetv3 training checkpoint")
    return state
