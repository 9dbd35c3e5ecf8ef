"""Read checkpoints and single files straight out of release tarballs, without extracting.

The official MobileNet releases are `.tgz` files holding e.g.
`v3-large_224_1.0_float/ema/model-540000.index` + `.data-00000-of-00001`, a `pristine/`
checkpoint and a `.tflite`. Reading them in place avoids a temporary folder full of files.

A gzip stream cannot be memory-mapped or seeked cheaply, so the checkpoint's data member is
read into memory once (one `bytes` per shard); tensors are then copied out of that buffer, so
peak memory is about twice the data size while converting, and the buffer is dropped with the
reader. The archive is opened in random-access mode: listing it decompresses the stream once,
and the wanted members are then read in file order (one more pass at most).
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

from mobilenetv3.weights.tensorbundle import CheckpointError, CheckpointReader

__all__ = ["list_tar_members", "open_checkpoint_in_tar", "read_tar_member"]

_SHOWN = 25  # members listed in error messages


def _open(tar_path: str | os.PathLike[str]) -> tarfile.TarFile:
    """Open any (compressed) tar for random access, turning failures into CheckpointError."""
    path = Path(tar_path)
    if not path.is_file():
        raise CheckpointError(f"archive not found: {path}; pass the path of a release .tgz/.tar")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"{path} is not a readable tar archive ({exc}); pass an official release .tgz"
        ) from exc


def _files(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular-file members in archive order (directories and links skipped)."""
    try:
        return [m for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"{tar.name} is a damaged tar archive ({exc}); re-download it"
        ) from exc


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return (shown + more) if names else "nothing"


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:  # pragma: no cover - regular files always yield a reader
        raise CheckpointError(f"cannot read member {member.name} of {tar.name}")
    try:
        with fh:
            return fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"member {member.name} of {tar.name} cannot be read ({exc}); the archive is "
            "truncated or damaged, re-download it"
        ) from exc


def list_tar_members(tar_path: str | os.PathLike[str]) -> list[str]:
    """Names of the regular files in the archive, in archive order."""
    with _open(tar_path) as tar:
        return [m.name for m in _files(tar)]


def read_tar_member(tar_path: str | os.PathLike[str], suffix: str) -> bytes:
    """Bytes of the one member whose name ends with `suffix` (e.g. ".tflite")."""
    with _open(tar_path) as tar:
        files = _files(tar)
        matches = [m for m in files if m.name == suffix or m.name.endswith(suffix)]
        exact = [m for m in matches if m.name == suffix]
        if exact:
            matches = exact
        if not matches:
            raise CheckpointError(
                f"{tar_path} has no member ending in {suffix!r}; it holds: "
                f"{_listing([m.name for m in files])}"
            )
        if len(matches) > 1:
            raise CheckpointError(
                f"{len(matches)} members of {tar_path} end in {suffix!r} "
                f"({_listing([m.name for m in matches])}); pass a longer suffix naming one"
            )
        return _read(tar, matches[0])


def _choose_index(indexes: list[tarfile.TarInfo], prefix: str | None) -> tarfile.TarInfo | None:
    """The requested checkpoint, else the first EMA one, else the first in the archive."""
    if prefix is not None:
        want = prefix.removesuffix(".index") + ".index"
        hits = [m for m in indexes if m.name == want or m.name.endswith("/" + want)]
        return hits[0] if hits else None
    ema = [m for m in indexes if "ema" in m.name.split("/")[:-1]]
    return (ema or indexes or [None])[0]


def open_checkpoint_in_tar(
    tar_path: str | os.PathLike[str], prefix: str | None = None
) -> CheckpointReader:
    """A `CheckpointReader` over the checkpoint inside a tarball, read into memory.

    Without `prefix` the EMA checkpoint (a member under an `ema/` folder) is chosen, as slim
    evaluates with the EMA shadows; otherwise the first `*.index` in the archive. `prefix`
    (e.g. "pristine/model.ckpt-540000") picks another one by its trailing path.
    """
    with _open(tar_path) as tar:
        files = _files(tar)
        indexes = [m for m in files if m.name.endswith(".index")]
        index = _choose_index(indexes, prefix)
        if index is None:
            wanted = f"named {prefix!r}" if prefix else "(no *.index member)"
            raise CheckpointError(
                f"{tar_path} holds no TensorFlow checkpoint {wanted}; its members are: "
                f"{_listing([m.name for m in files])}"
            )
        member_prefix = index.name.removesuffix(".index")
        pattern = re.compile(re.escape(member_prefix) + r"\.data-(\d{5})-of-\d{5}$")
        shards = {int(m.group(1)): info for info in files if (m := pattern.match(info.name))}
        # Read in archive order so a gzip stream is decompressed forward, not rewound per member.
        wanted_members = sorted([index, *shards.values()], key=lambda info: info.offset)
        blobs = {info.name: _read(tar, info) for info in wanted_members}
    return CheckpointReader.from_buffers(
        blobs[index.name],
        {shard: blobs[info.name] for shard, info in shards.items()},
        source=f"{tar_path}:{member_prefix}",
    )
