"""Finding a checkpoint's files on disk: a prefix, an `.index`/`.data-*` path or a folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mobilenetv3.weights.errors import CheckpointError

__all__ = ["resolve_checkpoint_prefix"]

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
