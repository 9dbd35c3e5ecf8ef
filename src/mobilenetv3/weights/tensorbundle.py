"""Read TensorFlow checkpoints (TensorBundle V2: `.index` + `.data-NNNNN-of-NNNNN`) without TF.

The official MobileNet weights are only published as TF checkpoints; this module decodes them
with numpy alone so converting weights never requires installing TensorFlow.

Format, as written by `tf.train.Saver` / `tf.train.Checkpoint`:

* `<prefix>.index` is a LevelDB-format SSTable. Its last 48 bytes are a footer holding two
  block handles (varint offset + size of the metaindex and index blocks) and the magic
  0xdb4775248b80fb57. Every block is followed by a 1-byte compression type (0 none, 1 Snappy)
  and a masked crc32c of block + type. Block entries store prefix-compressed keys
  (`shared`, `unshared`, `value_length` varints) and end with uint32 restart offsets.
  The index block maps separator keys to handles of the data blocks.
* Key "" holds a `BundleHeaderProto`; every other key is a tensor name whose value is a
  `BundleEntryProto` saying where its raw bytes lie: shard, offset, size, masked crc32c.
* `<prefix>.data-0000K-of-0000N` shards hold the tensors' raw little-endian bytes.

Protobuf messages are decoded with a minimal wire-format walker (no generated classes exist
without TF). Data shards are memory-mapped, so each tensor is copied exactly once, into the
array returned to the caller; returned arrays stay valid after `close()`.
"""

from __future__ import annotations

import contextlib
import difflib
import mmap
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cramjam
import google_crc32c
import numpy as np

__all__ = [
    "BundleEntry",
    "BundleHeader",
    "CheckpointError",
    "CheckpointReader",
    "iter_proto_fields",
    "iter_table",
    "mask_crc",
    "parse_entry",
    "parse_header",
    "read_checkpoint",
    "resolve_checkpoint_prefix",
    "unmask_crc",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")

# TF DataType enum -> (name, numpy dtype of the stored bytes). bfloat16 is stored as its
# uint16 bit pattern and widened to float32 on read (numpy has no bfloat16).
_DTYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    1: ("float32", np.dtype(np.float32)),
    2: ("float64", np.dtype(np.float64)),
    3: ("int32", np.dtype(np.int32)),
    4: ("uint8", np.dtype(np.uint8)),
    5: ("int16", np.dtype(np.int16)),
    6: ("int8", np.dtype(np.int8)),
    9: ("int64", np.dtype(np.int64)),
    10: ("bool", np.dtype(np.bool_)),
    14: ("bfloat16", np.dtype(np.uint16)),
    17: ("uint16", np.dtype(np.uint16)),
    19: ("float16", np.dtype(np.float16)),
    22: ("uint32", np.dtype(np.uint32)),
    23: ("uint64", np.dtype(np.uint64)),
}
_BFLOAT16 = 14
# Names of TF dtypes we recognise but cannot return as plain numpy arrays (for error messages).
_UNSUPPORTED_NAMES = {
    7: "string",
    8: "complex64",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    15: "qint16",
    16: "quint16",
    18: "complex128",
    20: "resource",
    21: "variant",
}


class CheckpointError(ValueError):
    """Unreadable checkpoint or archive; the message says what is wrong and what to do."""


def mask_crc(crc: int) -> int:
    """LevelDB/TF crc masking, which keeps crcs of data that itself embeds crcs well-distributed."""
    crc &= _U32
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Inverse of `mask_crc`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


# --------------------------------------------------------------------------- protobuf wire


def _read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode one base-128 varint at `pos`; returns (value, next position)."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end or shift > 63:
            raise CheckpointError(f"corrupt {what}: truncated or over-long varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _signed64(value: int) -> int:
    """Protobuf int32/int64 fields carry negatives as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_proto_fields(buf: bytes, what: str = "protobuf message") -> Iterator[tuple[int, int, Any]]:
    """Walk a protobuf message: yields (field number, wire type, int value or bytes payload)."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos, what)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos, what)
        elif wire == 1:
            if pos + 8 > end:
                raise CheckpointError(f"corrupt {what}: truncated fixed64 field {field}")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos, what)
            if pos + length > end:
                raise CheckpointError(f"corrupt {what}: field {field} runs past the message end")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise CheckpointError(f"corrupt {what}: truncated fixed32 field {field}")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise CheckpointError(f"corrupt {what}: unsupported wire type {wire} (field {field})")
        yield field, wire, value


@dataclass(frozen=True)
class BundleHeader:
    """The `BundleHeaderProto` stored under key "": how many shards and which byte order."""

    num_shards: int = 1
    endianness: str = "little"
    version_producer: int = 0
    version_min_consumer: int = 0


@dataclass(frozen=True)
class BundleEntry:
    """The `BundleEntryProto` of one tensor: its type, shape and where its bytes lie."""

    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored
    sliced: bool = False  # partitioned variable: bytes live under per-slice keys
    unknown_rank: bool = False

    @property
    def dtype_name(self) -> str:
        """TF name of the dtype, e.g. "float32", or "DataType(n)" when unknown."""
        if self.dtype_enum in _DTYPES:
            return _DTYPES[self.dtype_enum][0]
        return _UNSUPPORTED_NAMES.get(self.dtype_enum, f"DataType({self.dtype_enum})")


def parse_header(value: bytes) -> BundleHeader:
    """Decode a `BundleHeaderProto` (num_shards=1, endianness=2, version=3)."""
    num_shards, endian, producer, min_consumer = 1, 0, 0, 0
    for field, _wire, val in iter_proto_fields(value, "BundleHeaderProto"):
        if field == 1:
            num_shards = _signed64(val)
        elif field == 2:
            endian = val
        elif field == 3:
            for vf, _vw, vv in iter_proto_fields(val, "VersionDef"):
                if vf == 1:
                    producer = _signed64(vv)
                elif vf == 2:
                    min_consumer = _signed64(vv)
    if endian not in (0, 1):
        raise CheckpointError(f"corrupt BundleHeaderProto: unknown endianness {endian}")
    return BundleHeader(num_shards, "little" if endian == 0 else "big", producer, min_consumer)


def _parse_shape(value: bytes) -> tuple[tuple[int, ...], bool]:
    """Decode a `TensorShapeProto` (dim=2 {size=1}, unknown_rank=3)."""
    dims: list[int] = []
    unknown_rank = False
    for field, _wire, val in iter_proto_fields(value, "TensorShapeProto"):
        if field == 2:
            size = 0
            for df, _dw, dv in iter_proto_fields(val, "TensorShapeProto.Dim"):
                if df == 1:
                    size = _signed64(dv)
            dims.append(size)
        elif field == 3:
            unknown_rank = bool(val)
    return tuple(dims), unknown_rank


def parse_entry(value: bytes) -> BundleEntry:
    """Decode a `BundleEntryProto` (dtype=1, shape=2, shard_id=3, offset=4, size=5,
    crc32c=6 fixed32, slices=7)."""
    dtype = shard = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    unknown_rank = sliced = False
    for field, _wire, val in iter_proto_fields(value, "BundleEntryProto"):
        if field == 1:
            dtype = val
        elif field == 2:
            shape, unknown_rank = _parse_shape(val)
        elif field == 3:
            shard = _signed64(val)
        elif field == 4:
            offset = _signed64(val)
        elif field == 5:
            size = _signed64(val)
        elif field == 6:
            crc = val
        elif field == 7:
            sliced = True
    return BundleEntry(dtype, shape, shard, offset, size, crc, sliced, unknown_rank)


# --------------------------------------------------------------------------- SSTable


def _read_block(table: bytes, offset: int, size: int, source: str) -> bytes:
    """Return a block's contents after checking its trailer crc and undoing Snappy."""
    end = offset + size
    if offset < 0 or size < 0 or end + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointError(
            f"corrupt checkpoint index {source}: block handle (offset {offset}, size {size}) "
            f"points past the end of the {len(table)}-byte file; re-copy the .index file"
        )
    raw = table[offset:end]
    kind = table[end]
    (stored,) = struct.unpack_from("<I", table, end + 1)
    actual = mask_crc(google_crc32c.value(table[offset : end + 1]))
    if actual != stored:
        raise CheckpointError(
            f"bad block crc in checkpoint index {source}: block at offset {offset} stores "
            f"{stored:#010x} but its bytes give {actual:#010x}; the .index file is corrupt, "
            "re-download or re-copy it"
        )
    if kind == 0:
        return raw
    if kind == 1:
        try:
            return bytes(cramjam.snappy.decompress_raw(raw))
        except Exception as exc:  # cramjam raises its own DecompressionError
            raise CheckpointError(
                f"corrupt checkpoint index {source}: Snappy block at offset {offset} does not "
                f"decompress ({exc}); re-copy the .index file"
            ) from exc
    raise CheckpointError(
        f"checkpoint index {source}: block at offset {offset} uses compression type {kind}, "
        "only 0 (none) and 1 (Snappy) exist in LevelDB tables"
    )


def _iter_block(block: bytes, source: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) of one block, undoing the prefix compression of keys."""
    if len(block) < 4:
        raise CheckpointError(f"corrupt checkpoint index {source}: block shorter than 4 bytes")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(
            f"corrupt checkpoint index {source}: block claims {num_restarts} restart points"
        )
    what = f"block in checkpoint index {source}"
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _read_varint(block, pos, what)
        unshared, pos = _read_varint(block, pos, what)
        vlen, pos = _read_varint(block, pos, what)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise CheckpointError(f"corrupt {what}: entry at byte {pos} overruns the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + vlen]
        pos += vlen


def _parse_handle(value: bytes, pos: int, source: str) -> tuple[int, int, int]:
    """Decode a BlockHandle (two varints); returns (offset, size, next position)."""
    offset, pos = _read_varint(value, pos, f"block handle in {source}")
    size, pos = _read_varint(value, pos, f"block handle in {source}")
    return offset, size, pos


def iter_table(table: bytes, source: str = "<memory>") -> Iterator[tuple[bytes, bytes]]:
    """Yield every (key, value) of a LevelDB-format SSTable held in memory, in key order."""
    table = bytes(table)
    hint = "pass the .index file that tf.train.Saver / tf.train.Checkpoint wrote"
    if len(table) < FOOTER_SIZE:
        raise CheckpointError(
            f"{source} is not a TensorFlow checkpoint index: {len(table)} bytes is shorter than "
            f"a LevelDB table footer ({FOOTER_SIZE} bytes); {hint}"
        )
    footer = table[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{source} is not a TensorFlow checkpoint index (not a LevelDB table: magic "
            f"{magic:#018x} instead of {TABLE_MAGIC:#018x}); {hint}"
        )
    _meta_off, _meta_size, pos = _parse_handle(footer, 0, source)
    index_off, index_size, _ = _parse_handle(footer, pos, source)
    index_block = _read_block(table, index_off, index_size, source)
    for _sep, handle in _iter_block(index_block, source):
        off, size, _ = _parse_handle(handle, 0, source)
        yield from _iter_block(_read_block(table, off, size, source), source)


# --------------------------------------------------------------------------- locating files


def _from_state_file(folder: Path) -> Path | None:
    """The prefix named by a `checkpoint` state file's model_checkpoint_path, if it exists."""
    state = folder / "checkpoint"
    if not state.is_file():
        return None
    match = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text(), re.M)
    if not match:
        return None
    named = Path(match.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    for candidate in (named if named.is_absolute() else folder / named, folder / named.name):
        if Path(f"{candidate}.index").is_file():
            return candidate
    return None


def resolve_checkpoint_prefix(path: str | os.PathLike[str]) -> Path:
    """Turn a prefix, an `.index`/`.data-*` file path or a checkpoint folder into the prefix."""
    p = Path(path)
    if p.is_dir():
        named = _from_state_file(p)
        if named is not None:
            return named
        indexes = sorted(p.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        if not indexes:
            raise CheckpointError(
                f"no checkpoint in folder {p}: it holds no *.index file (and no usable "
                "`checkpoint` state file); pass the checkpoint prefix, e.g. .../model.ckpt"
            )
        listed = ", ".join(i.name for i in indexes)
        raise CheckpointError(
            f"folder {p} holds {len(indexes)} checkpoints ({listed}); pass the prefix of one, "
            "e.g. " + str(indexes[-1].with_suffix(""))
        )
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


def _map_file(path: Path) -> tuple[np.ndarray, mmap.mmap | None]:
    """Memory-map a shard read-only (empty files cannot be mapped, so they get b"")."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return np.zeros(0, np.uint8), None
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, np.uint8), mm


# --------------------------------------------------------------------------- reader


class CheckpointReader:
    """Random access to the tensors of one TF checkpoint; use as a context manager.

    Accepts the checkpoint prefix (`.../model.ckpt`), its `.index` file, or a folder holding
    one checkpoint. `from_buffers` reads from bytes already in memory (e.g. out of a tarball).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        prefix = resolve_checkpoint_prefix(path)
        index_path = Path(f"{prefix}.index")
        self._setup(index_path.read_bytes(), str(index_path))
        self.prefix: Path | None = prefix
        for shard in sorted(self._used_shards()):
            name = self._shard_file_name(shard)
            file = prefix.parent / f"{prefix.name}.{name}"
            if not file.is_file():
                self.close()
                raise CheckpointError(
                    f"missing data shard {file}: the index {index_path.name} stores tensors "
                    f"in {self.header.num_shards} shard(s); put every "
                    f"{prefix.name}.data-*-of-{self.header.num_shards:05d} file beside it"
                )
            self._shards[shard], mm = _map_file(file)
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
        """Reader over an index and data shards already in memory ({shard_id: bytes-like})."""
        self = cls.__new__(cls)
        self._setup(bytes(index), f"{source}.index")
        self.prefix = None
        for shard in sorted(self._used_shards()):
            name = f"{source}.{self._shard_file_name(shard)}"
            if shard not in shards:
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
        """Parse the whole index (it is small) into header + entries."""
        self._source = source
        self._shards: dict[int, np.ndarray] = {}
        self._shard_names: dict[int, str] = {}
        self._mmaps: dict[int, mmap.mmap] = {}
        self._entries: dict[str, BundleEntry] = {}
        header: BundleHeader | None = None
        for key, value in iter_table(index, source):
            if key == b"":
                header = parse_header(value)
            elif key[0] == 0:
                continue  # per-slice key of a partitioned variable (ordered-code encoded)
            else:
                self._entries[key.decode("utf-8", "replace")] = parse_entry(value)
        if header is None:
            raise CheckpointError(
                f'{source} is a LevelDB table but has no BundleHeaderProto under key "": '
                "it is not a TensorBundle checkpoint index"
            )
        if header.num_shards < 1:
            raise CheckpointError(f"corrupt header in {source}: num_shards={header.num_shards}")
        self.header = header
        for name, entry in self._entries.items():
            if not 0 <= entry.shard_id < header.num_shards:
                raise CheckpointError(
                    f"corrupt entry for tensor {name!r} in {source}: shard_id {entry.shard_id} "
                    f"but the header declares {header.num_shards} shard(s)"
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
            if entry.offset < 0 or entry.size < 0 or entry.offset + entry.size > data.size:
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
        if entry.dtype_enum not in _DTYPES:
            raise CheckpointError(
                f"tensor {name!r} has dtype {entry.dtype_name} (TF DataType "
                f"{entry.dtype_enum}), which this reader does not support (only numeric and bool "
                "tensors); skip it, e.g. read_all(skip_unsupported=True)"
            )
        dtype = _DTYPES[entry.dtype_enum][1]
        return dtype.newbyteorder(">") if self.header.endianness == "big" else dtype

    def dtype(self, name: str) -> np.dtype[Any]:
        """numpy dtype of the array `read` returns (bfloat16 is returned as float32)."""
        entry = self.entry(name)
        dtype = self._storage_dtype(name, entry)
        if entry.dtype_enum == _BFLOAT16:
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
                f"tensor {name!r} is a partitioned variable saved as slices, which this reader "
                "does not support; re-save it unpartitioned"
            )
        if entry.unknown_rank:
            raise CheckpointError(f"tensor {name!r} has an unknown rank in {self._source}")
        dtype = self._storage_dtype(name, entry)
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise CheckpointError(
                f"corrupt entry for tensor {name!r} in {self._source}: shape "
                f"{list(entry.shape)} of {entry.dtype_name} needs {count * dtype.itemsize} bytes "
                f"but its size is {entry.size}"
            )
        if entry.shard_id not in self._shards:
            raise CheckpointError(f"checkpoint {self._source} is closed; reopen it to read {name}")
        raw = self._shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        actual = google_crc32c.value(raw)
        if actual != unmask_crc(entry.crc32c):
            raise CheckpointError(
                f"crc32c mismatch for tensor {name!r} in {self._shard_names[entry.shard_id]}: "
                f"index stores {unmask_crc(entry.crc32c):#010x}, data gives {actual:#010x}; "
                "the data file is corrupt, re-download or re-copy it"
            )
        out = raw.view(dtype).reshape(entry.shape)
        if entry.dtype_enum == _BFLOAT16:
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
            if skip_unsupported and (entry.dtype_enum not in _DTYPES or entry.sliced):
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
