"""Read checkpoints and single files straight out of release tarballs, without extracting.

The official MobileNet releases are `.tgz` files holding e.g.
`v3-large_224_1.0_float/ema/model-540000.index` + `.data-00000-of-00001` (the EMA values,
saved under the variables' own names), `pristine/model.ckpt-540000.*` (the raw variables) and a
`.tflite`.

Every read is one forward pass through the decompressed stream, keeping the members it may
need (the parts of every checkpoint, as choosing one needs the whole listing). Work is bounded
before anything is allocated: sparse members are refused, no member may declare more than the
archive can hold, and members are copied in chunks (data shards into an unlinked temporary file
that is memory-mapped, so a checkpoint never sits in RSS whole). Each pass reads the compressed
stream to its end, so gzip/bzip2/xz checksums are verified: a flipped compressed byte is an
error, never different weights.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import mmap
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mobilenetv3.weights.errors import CheckpointError
from mobilenetv3.weights.tensorbundle import CheckpointReader

__all__ = ["list_tar_members", "looks_like_tar", "open_checkpoint_in_tar", "read_tar_member"]

_SHOWN = 25  # members listed in error messages
_CHUNK = 1 << 20
_MAX_MEMBER = 1 << 30  # no MobileNet checkpoint shard comes near 1 GiB
_MAX_IN_MEMORY = 256 << 20  # an index or a .tflite, read into memory
_MAX_KEPT = 2 << 30  # every checkpoint of a release together (EMA, pristine with its slots)
_DATA = re.compile(r"(.*)\.data-(\d{5})-of-\d{5}$")
_MAX_RATIO = 1032  # deflate cannot expand more than 1032:1; real checkpoints barely compress
_COMPRESSED: dict[bytes, Callable[..., IO[bytes]]] = {
    b"\x1f\x8b\x08": gzip.open,
    b"BZh": bz2.open,
    b"\xfd7zXZ\x00": lzma.open,
}
# What the decompressors and tarfile raise on damaged input (IndexError: a truncated GNU
# sparse header inside tarfile).
_ARCHIVE_ERRORS = (
    tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, IndexError,
    OverflowError,
)  # fmt: skip


def _magic(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(263)


def looks_like_tar(path: str | os.PathLike[str]) -> bool:
    """A compressed file, or a tar by its `ustar` magic; never raises."""
    try:
        head = _magic(Path(path))
    except OSError:
        return False
    return head.startswith(tuple(_COMPRESSED)) or head[257:262] == b"ustar"


def _opener(head: bytes) -> Callable[..., IO[bytes]]:
    return next((op for magic, op in _COMPRESSED.items() if head.startswith(magic)), open)


@contextlib.contextmanager
def _archive(
    tar_path: str | os.PathLike[str],
) -> Iterator[tuple[tarfile.TarFile, Iterator[tarfile.TarInfo]]]:
    """(tar, its regular-file members) for one forward pass; on a clean exit the stream is
    read to its end so its checksum is verified. Every failure becomes one CheckpointError."""
    path = Path(tar_path)
    if not path.is_file():
        raise CheckpointError(f"archive not found: {path}; pass the path of a release .tgz/.tar")
    try:
        open_stream = _opener(_magic(path))
        limit = path.stat().st_size * (_MAX_RATIO if open_stream is not open else 1)
        with open_stream(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar, _regular_members(tar, path, min(limit, _MAX_MEMBER))
            while stream.read(_CHUNK):
                pass
    except CheckpointError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise CheckpointError(
            f"{path} is not a readable tar archive or is damaged ({exc}); pass an official "
            "release .tgz, re-downloading it if it was cut short or altered"
        ) from exc


def _regular_members(tar: tarfile.TarFile, path: Path, limit: int) -> Iterator[tarfile.TarInfo]:
    """Regular files in archive order, refusing sparse, oversized and repeated members."""
    seen: set[str] = set()
    for info in tar:
        if info.issparse():
            raise CheckpointError(
                f"{path}: member {info.name} is a GNU sparse file, which no release holds; the "
                "archive is damaged or crafted, re-download it"
            )
        if not info.isfile():
            continue
        if info.size > limit:
            raise CheckpointError(
                f"{path}: member {info.name} declares {info.size} bytes, more than this "
                f"{path.stat().st_size}-byte archive can plausibly hold ({limit}); it is "
                "damaged or crafted, re-download it"
            )
        if info.name in seen:
            raise CheckpointError(f"{path}: member {info.name} appears twice; re-download it")
        seen.add(info.name)
        yield info


def _copy(tar: tarfile.TarFile, info: tarfile.TarInfo, out: IO[bytes], path: Path) -> None:
    """Stream one member into `out` in chunks, checking it holds the size it declares."""
    fh = tar.extractfile(info)
    copied = 0
    while fh is not None and (chunk := fh.read(_CHUNK)):
        out.write(chunk)
        copied += len(chunk)
    if copied != info.size:
        raise CheckpointError(
            f"{path}: member {info.name} ends after {copied} of its {info.size} bytes; the "
            "archive is truncated, re-download it"
        )


def _in_memory(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> bytes:
    if info.size > _MAX_IN_MEMORY:
        raise CheckpointError(
            f"{path}: member {info.name} declares {info.size} bytes, more than an index or a "
            f".tflite can be ({_MAX_IN_MEMORY}); the archive is damaged or not a release"
        )
    out = io.BytesIO()
    _copy(tar, info, out, path)
    return out.getvalue()


def _mapped(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> mmap.mmap | bytes:
    """The member copied to an unlinked temporary file and memory-mapped read-only."""
    if info.size == 0:
        return b""
    with tempfile.TemporaryFile() as tmp:
        _copy(tar, info, tmp, path)
        tmp.flush()
        return mmap.mmap(tmp.fileno(), 0, access=mmap.ACCESS_READ)


def _scan(
    tar_path: str | os.PathLike[str], keep: Callable[[str], str | None]
) -> tuple[list[str], dict[str, Any]]:
    """One pass: every regular member's name, and the contents of those `keep(name)` marks
    "memory" (bytes) or "mapped" (memory-mapped temp file), at most `_MAX_KEPT` bytes in all."""
    path = Path(tar_path)
    names: list[str] = []
    kept: dict[str, Any] = {}
    total = 0
    with _archive(path) as (tar, members):
        for info in members:
            names.append(info.name)
            how = keep(info.name)
            if how is None:
                continue
            total += info.size
            if total > _MAX_KEPT:
                raise CheckpointError(
                    f"{path}: the members to read exceed {_MAX_KEPT} bytes in all, more than any "
                    "release holds; the archive is damaged or not a release"
                )
            kept[info.name] = (_in_memory if how == "memory" else _mapped)(tar, info, path)
    return names, kept


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return (shown + more) if names else "nothing"


def list_tar_members(tar_path: str | os.PathLike[str]) -> list[str]:
    """Names of the regular files in the archive, in archive order."""
    return _scan(tar_path, lambda _name: None)[0]


def read_tar_member(tar_path: str | os.PathLike[str], suffix: str) -> bytes:
    """Bytes of the one member whose name ends with `suffix` (e.g. ".tflite")."""
    names, kept = _scan(tar_path, lambda name: "memory" if name.endswith(suffix) else None)
    matches = list(kept)
    if suffix in matches:
        matches = [suffix]
    if not matches:
        raise CheckpointError(
            f"{tar_path} has no member ending in {suffix!r}; it holds: {_listing(names)}"
        )
    if len(matches) > 1:
        raise CheckpointError(
            f"{len(matches)} members of {tar_path} end in {suffix!r} "
            f"({_listing(matches)}); pass a longer suffix naming one"
        )
    return kept[matches[0]]


def _checkpoint_part(name: str) -> str | None:
    """How `_scan` keeps a member of any checkpoint: the index in memory, data mapped."""
    if name.endswith(".index"):
        return "memory"
    return "mapped" if _DATA.match(name) else None


def _is_ema(prefix: str) -> bool:
    return "ema" in prefix.split("/")[:-1]


def _choose_prefix(prefixes: list[str], prefix: str | None, use_ema: bool) -> str | None:
    """The requested checkpoint; else for EMA the `ema/` one (or the first), for raw variables
    the first not under `ema/` (the `ema/` checkpoint stores the shadows under raw names)."""
    if prefix is not None:
        want = prefix.removesuffix(".index")
        hits = [p for p in prefixes if p == want or p.endswith("/" + want)]
    elif use_ema:
        hits = [p for p in prefixes if _is_ema(p)] or prefixes
    else:
        hits = [p for p in prefixes if not _is_ema(p)]
    return hits[0] if hits else None


def _no_checkpoint(
    tar_path: Any, names: list[str], prefixes: list[str], prefix: str | None
) -> CheckpointError:
    if not prefixes:
        return CheckpointError(
            f"{tar_path} holds no TensorFlow checkpoint (no *.index member); its members are: "
            f"{_listing(names)}"
        )
    held = _listing(prefixes)
    if prefix is not None:
        return CheckpointError(f"{tar_path} holds no checkpoint named {prefix!r}; it holds {held}")
    return CheckpointError(
        f"{tar_path} holds only EMA checkpoints ({held}), which store the averaged values under "
        "the variables' own names; use_ema=False (--no-ema) needs the raw variables of a "
        "pristine/ checkpoint: load this archive with the EMA weights, or use one that has it"
    )


def open_checkpoint_in_tar(
    tar_path: str | os.PathLike[str], prefix: str | None = None, *, use_ema: bool = True
) -> CheckpointReader:
    """A `CheckpointReader` over a checkpoint inside a tarball.

    Without `prefix`, `use_ema` picks the `ema/` checkpoint (slim evaluates with the EMA
    values), else the first one not under `ema/` (the release's `pristine/` raw variables).
    `prefix` (e.g. "pristine/model.ckpt-540000") picks one by its trailing path.
    """
    names, kept = _scan(tar_path, _checkpoint_part)
    prefixes = [n.removesuffix(".index") for n in names if n.endswith(".index")]
    chosen = _choose_prefix(prefixes, prefix, use_ema)
    shards: dict[int, Any] = {}
    for name, blob in kept.items():
        match = _DATA.match(name)
        if chosen is not None and match and match.group(1) == chosen:
            shards[int(match.group(2))] = blob
        elif isinstance(blob, mmap.mmap):
            blob.close()  # another checkpoint's data
    if chosen is None:
        raise _no_checkpoint(tar_path, names, prefixes, prefix)
    return CheckpointReader.from_buffers(
        kept[f"{chosen}.index"], shards, source=f"{tar_path}:{chosen}"
    )
