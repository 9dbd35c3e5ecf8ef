"""`CheckpointReader`: random access to the tensors of one TF checkpoint (TensorBundle V2).

`<prefix>.index` (see `table`) maps each tensor name to a `BundleEntryProto` (see `proto`)
saying where its raw little-endian bytes lie in the `<prefix>.data-0000K-of-0000N` shards.
Every entry is checked when the reader opens (shard, shape against size, extent within the
data file), so a damaged checkpoint fails at once, naming the tensor; each tensor's crc32c is
checked when it is read. Data shards are memory-mapped, so each tensor is copied exactly once,
into the array returned to the caller; returned arrays stay valid after `close()`.

Size: `CheckpointReader` is one class of ~250 lines because every method works on the same
parsed index and mapped shards (their lifetimes are the reader's).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mobilenetv3.weights.errors import CheckpointError
from mobilenetv3.weights.tensorbundle.codec import crc32c, unmask_crc
from mobilenetv3.weights.tensorbundle.paths import map_file, read_index, resolve_checkpoint_prefix
from mobilenetv3.weights.tensorbundle.proto import (
    BFLOAT16,
    DTYPES,
    BundleEntry,
    BundleHeader,
    parse_entry,
    parse_header,
)
from mobilenetv3.weights.tensorbundle.table import iter_table

__all__ = ["CheckpointReader", "read_checkpoint"]


class CheckpointReader:
    """Random access to the tensors of one TF checkpoint; use as a context manager.

    Accepts the checkpoint prefix (`.../model.ckpt`), its `.index` file, or a folder holding
    one checkpoint. `from_buffers` reads from bytes already in memory (e.g. out of a tarball).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        prefix = resolve_checkpoint_prefix(path)
        index_path = Path(f"{prefix}.index")
        self._setup(read_index(index_path), str(index_path))
        self.prefix: Path | None = prefix
        for shard in sorted(self._used_shards()):
            file = prefix.parent / f"{prefix.name}.{self._shard_file_name(shard)}"
            if not file.is_file():
                raise CheckpointError(
                    f"missing data shard {file}: the index {index_path.name} stores tensors "
                    f"in {self.header.num_shards} shard(s); put every "
                    f"{prefix.name}.data-*-of-{self.header.num_shards:05d} file beside it"
                )
            self._shards[shard], mm = map_file(file)
            self._shard_names[shard] = str(file)
            if mm is not None:
                self._mmaps[shard] = mm
        self._check_extents()

    @classmethod
    def from_buffers(
        cls,
        index: bytes | bytearray | memoryview,
        shards: Mapping[int, Any],
        *,
        source: str = "<memory>",
    ) -> CheckpointReader:
        """Reader over an index and data shards already in memory ({shard_id: bytes-like}).

        A shard given as an `mmap.mmap` is owned by the reader from then on and closed with it.
        """
        self = cls.__new__(cls)
        self._setup(bytes(index), f"{source}.index")
        self.prefix = None
        self._mmaps.update({k: v for k, v in shards.items() if isinstance(v, mmap.mmap)})
        for shard in sorted(self._used_shards()):
            name = f"{source}.{self._shard_file_name(shard)}"
            if shard not in shards:
                self.close()
                raise CheckpointError(
                    f"missing data shard {name}: the index stores tensors in "
                    f"{self.header.num_shards} shard(s) but only shard(s) "
                    f"{sorted(shards)} were given; pass every .data-*-of-* buffer"
                )
            self._shards[shard] = np.frombuffer(shards[shard], np.uint8)
            self._shard_names[shard] = name
        self._check_extents()
        return self

    def _setup(self, index: bytes, source: str) -> None:
        """Parse and check the whole index (it is small): header + one entry per tensor."""
        self._source = source
        self._shards: dict[int, np.ndarray] = {}
        self._shard_names: dict[int, str] = {}
        self._mmaps: dict[int, mmap.mmap] = {}
        self._entries: dict[str, BundleEntry] = {}
        header: BundleHeader | None = None
        for key, value in iter_table(index, source):
            if key == b"":
                header = parse_header(value, f"BundleHeaderProto in {source}")
            elif key[0] != 0:  # keys starting with 0 are slices of a partitioned variable
                name = self._decode_key(key)
                self._entries[name] = parse_entry(value, f"entry of {name!r} in {source}")
        if header is None:
            raise CheckpointError(
                f'{source} is a LevelDB table but has no BundleHeaderProto under key "": '
                "it is not a TensorBundle checkpoint index"
            )
        self.header = header
        for name, entry in self._entries.items():
            self._check_entry(name, entry)

    def _decode_key(self, key: bytes) -> str:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(
                f"corrupt checkpoint index {self._source}: tensor name {key[:80]!r} is not UTF-8"
            ) from None

    def _check_entry(self, name: str, entry: BundleEntry) -> None:
        """The entry's shard exists and its shape fits its byte size exactly."""
        where = f"corrupt entry for tensor {name!r} in {self._source}"
        if not 0 <= entry.shard_id < self.header.num_shards:
            raise CheckpointError(
                f"{where}: shard_id {entry.shard_id} but the header declares "
                f"{self.header.num_shards} shard(s)"
            )
        if entry.sliced or entry.unknown_rank or entry.dtype_enum not in DTYPES:
            return  # refused with its own message when read
        needed = math.prod(entry.shape) * DTYPES[entry.dtype_enum][1].itemsize
        if needed != entry.size:
            raise CheckpointError(
                f"{where}: shape {list(entry.shape)} of {entry.dtype_name} needs {needed} bytes "
                f"but its size is {entry.size}; re-copy the checkpoint"
            )

    def _used_shards(self) -> set[int]:
        return {e.shard_id for e in self._entries.values() if not e.sliced}

    def _shard_file_name(self, shard: int) -> str:
        return f"data-{shard:05d}-of-{self.header.num_shards:05d}"

    def _check_extents(self) -> None:
        """Fail at open, not mid-conversion, when a data file is shorter than the index says."""
        for name, entry in self._entries.items():
            if entry.sliced:
                continue
            data = self._shards[entry.shard_id]
            if entry.offset + entry.size > data.size:
                file = self._shard_names[entry.shard_id]
                self.close()
                raise CheckpointError(
                    f"truncated data file: tensor {name!r} (bytes {entry.offset}.."
                    f"{entry.offset + entry.size}) extends past the end of {file} "
                    f"({data.size} bytes); re-download or re-copy the checkpoint"
                )

    # -- queries ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Tensor names in the index's (sorted) order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> BundleEntry:
        """The raw index entry of `name` (dtype enum, shard, offset, size, crc)."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise CheckpointError(
                f"no tensor named {name!r} in checkpoint {self._source} "
                f"({len(self._entries)} tensors){hint}"
            ) from None

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape as stored in the index."""
        return self.entry(name).shape

    def _storage_dtype(self, name: str, entry: BundleEntry) -> np.dtype[Any]:
        if entry.dtype_enum not in DTYPES:
            raise CheckpointError(
                f"tensor {name!r} has dtype {entry.dtype_name} (TF DataType "
                f"{entry.dtype_enum}) in {self._source}, which this reader does not support (only "
                "numeric and bool tensors); skip it, e.g. read_all(skip_unsupported=True)"
            )
        return DTYPES[entry.dtype_enum][1]

    def dtype(self, name: str) -> np.dtype[Any]:
        """numpy dtype of the array `read` returns (bfloat16 is returned as float32)."""
        entry = self.entry(name)
        dtype = self._storage_dtype(name, entry)
        if entry.dtype_enum == BFLOAT16:
            return np.dtype(np.float32)
        return dtype.newbyteorder("=")

    def dtype_name(self, name: str) -> str:
        """TF dtype name as stored, e.g. "bfloat16" (which `dtype` reports as float32)."""
        return self.entry(name).dtype_name

    # -- reading ---------------------------------------------------------------------------

    def read(self, name: str) -> np.ndarray:
        """The tensor as a fresh native-endian array, after checking its crc32c."""
        entry = self.entry(name)
        if entry.sliced:
            raise CheckpointError(
                f"tensor {name!r} in {self._source} is a partitioned variable saved as slices, "
                "which this reader does not support; re-save it unpartitioned"
            )
        if entry.unknown_rank:
            raise CheckpointError(f"tensor {name!r} has an unknown rank in {self._source}")
        dtype = self._storage_dtype(name, entry)
        if entry.shard_id not in self._shards:
            raise CheckpointError(f"checkpoint {self._source} is closed; reopen it to read {name}")
        raw = self._shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        actual = crc32c(raw)
        if actual != unmask_crc(entry.crc32c):
            raise CheckpointError(
                f"crc32c mismatch for tensor {name!r} in {self._shard_names[entry.shard_id]}: "
                f"index stores {unmask_crc(entry.crc32c):#010x}, data gives {actual:#010x}; "
                "the data file is corrupt, re-download or re-copy it"
            )
        out = raw.view(dtype).reshape(entry.shape)
        if entry.dtype_enum == BFLOAT16:
            result = (out.astype(np.uint32) << 16).view(np.float32)
        else:
            result = out.astype(dtype.newbyteorder("="), copy=True)
        self._release_pages(entry)
        return result

    def _release_pages(self, entry: BundleEntry) -> None:
        """Drop the mapped pages just copied, so the file is not held in RSS beside the copy.

        Without this, touched pages of the mapping count as resident until close and peak
        memory is ~2x the data file; MADV_DONTNEED only unmaps them (the page cache keeps them).
        """
        mm = self._mmaps.get(entry.shard_id)
        if mm is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = entry.offset - entry.offset % mmap.PAGESIZE
        end = -(-(entry.offset + entry.size) // mmap.PAGESIZE) * mmap.PAGESIZE
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_DONTNEED, start, min(end, len(mm)) - start)

    def read_all(self, *, skip_unsupported: bool = False) -> dict[str, np.ndarray]:
        """Every tensor by name; `skip_unsupported` drops string/resource/sliced tensors."""
        out: dict[str, np.ndarray] = {}
        for name, entry in self._entries.items():
            if skip_unsupported and (entry.dtype_enum not in DTYPES or entry.sliced):
                continue
            out[name] = self.read(name)
        return out

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the data files; arrays already returned stay valid (they are copies)."""
        self._shards.clear()
        mmaps, self._mmaps = self._mmaps, {}
        for mm in mmaps.values():
            # A view may still be alive (e.g. in a traceback); GC unmaps it later then.
            with contextlib.suppress(BufferError):
                mm.close()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CheckpointReader({self._source!r}, {len(self._entries)} tensors, "
            f"{self.header.num_shards} shard(s))"
        )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint at `path` (prefix, .index file or folder)."""
    with CheckpointReader(path) as reader:
        return reader.read_all()
