"""Finding a checkpoint's files on disk (a prefix, an `.index`/`.data-*` path or a folder) and
opening them: any OS error is a CheckpointError naming the file."""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import numpy as np

from mobilenetv3.weights.errors import CheckpointError

__all__ = ["map_file", "read_index", "resolve_checkpoint_prefix"]

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def _from_state_file(folder: Path) -> Path | None:
    """The prefix named by a `checkpoint` state file's model_checkpoint_path, if it exists."""
    state = folder / "checkpoint"
    if not state.is_file():
        return None
    text = state.read_text(encoding="utf-8", errors="replace")
    match = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not match:
        return None
    named = Path(match.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    for candidate in (named if named.is_absolute() else folder / named, folder / named.name):
        if Path(f"{candidate}.index").is_file():
            return candidate
    return None


def _from_folder(folder: Path) -> Path:
    named = _from_state_file(folder)
    if named is not None:
        return named
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes:
        raise CheckpointError(
            f"no checkpoint in folder {folder}: it holds no *.index file (and no usable "
            "`checkpoint` state file); pass the checkpoint prefix, e.g. .../model.ckpt"
        )
    listed = ", ".join(i.name for i in indexes)
    raise CheckpointError(
        f"folder {folder} holds {len(indexes)} checkpoints ({listed}); pass the prefix of one, "
        "e.g. " + str(indexes[-1].with_suffix(""))
    )


def resolve_checkpoint_prefix(path: str | os.PathLike[str]) -> Path:
    """Turn a prefix, an `.index`/`.data-*` file path or a checkpoint folder into the prefix."""
    p = Path(path)
    if p.is_dir():
        return _from_folder(p)
    text = str(p)
    text = text[: -len(".index")] if text.endswith(".index") else _DATA_SUFFIX.sub("", text)
    index = Path(text + ".index")
    if not index.is_file():
        raise CheckpointError(
            f"checkpoint index not found: looked for {index}; pass the checkpoint prefix "
            "(.../model.ckpt), its .index file or a folder holding one checkpoint, and keep the "
            ".index beside its .data-*-of-* files"
        )
    return Path(text)


def map_file(path: Path) -> tuple[np.ndarray, mmap.mmap | None]:
    """Memory-map a shard read-only (empty files cannot be mapped, so they get b"")."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return np.zeros(0, np.uint8), None
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise CheckpointError(f"cannot read data shard {path} ({exc})") from exc
    return np.frombuffer(mm, np.uint8), mm


def read_index(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {path} ({exc})") from exc
