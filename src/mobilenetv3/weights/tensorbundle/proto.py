"""The protobuf messages of a TensorBundle index, decoded with a minimal wire-format walker
(no generated classes exist without TF): `BundleHeaderProto` and `BundleEntryProto`.

Decoding checks what later arithmetic relies on: no negative dimension, offset or size, and
little-endian data (a big-endian bundle would need byte swapping that no release needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenetv3.weights.errors import CheckpointError

__all__ = [
    "BFLOAT16",
    "DTYPES",
    "BundleEntry",
    "BundleHeader",
    "iter_proto_fields",
    "parse_entry",
    "parse_header",
    "read_varint",
]

# TF DataType enum -> (name, numpy dtype of the stored bytes). bfloat16 is stored as its
# uint16 bit pattern and widened to float32 on read (numpy has no bfloat16).
DTYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    1: ("float32", np.dtype("<f4")),
    2: ("float64", np.dtype("<f8")),
    3: ("int32", np.dtype("<i4")),
    4: ("uint8", np.dtype(np.uint8)),
    5: ("int16", np.dtype("<i2")),
    6: ("int8", np.dtype(np.int8)),
    9: ("int64", np.dtype("<i8")),
    10: ("bool", np.dtype(np.bool_)),
    14: ("bfloat16", np.dtype("<u2")),
    17: ("uint16", np.dtype("<u2")),
    19: ("float16", np.dtype("<f2")),
    22: ("uint32", np.dtype("<u4")),
    23: ("uint64", np.dtype("<u8")),
}
BFLOAT16 = 14
_MAX_RANK = 64
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


def read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
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


def _fixed(buf: bytes, pos: int, size: int, field: int, what: str) -> tuple[int, int]:
    if pos + size > len(buf):
        raise CheckpointError(f"corrupt {what}: truncated fixed{size * 8} field {field}")
    return int.from_bytes(buf[pos : pos + size], "little"), pos + size


def iter_proto_fields(buf: bytes, what: str = "protobuf message") -> Iterator[tuple[int, int, Any]]:
    """Walk a protobuf message: yields (field number, wire type, int value or bytes payload)."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos, what)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos, what)
        elif wire in (1, 5):
            value, pos = _fixed(buf, pos, 8 if wire == 1 else 4, field, what)
        elif wire == 2:
            length, pos = read_varint(buf, pos, what)
            if pos + length > len(buf):
                raise CheckpointError(f"corrupt {what}: field {field} runs past the message end")
            value = bytes(buf[pos : pos + length])
            pos += length
        else:
            raise CheckpointError(f"corrupt {what}: unsupported wire type {wire} (field {field})")
        yield field, wire, value


def _known_fields(buf: bytes, what: str, wires: dict[int, int]) -> Iterator[tuple[int, Any]]:
    """(field, value) of the fields in `wires` ({field: wire type}), others skipped as protobuf
    does; a known field with another wire type is corruption."""
    for field, wire, value in iter_proto_fields(buf, what):
        if field not in wires:
            continue
        if wire != wires[field]:
            raise CheckpointError(f"corrupt {what}: field {field} has wire type {wire}")
        yield field, value


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
        if self.dtype_enum in DTYPES:
            return DTYPES[self.dtype_enum][0]
        return _UNSUPPORTED_NAMES.get(self.dtype_enum, f"DataType({self.dtype_enum})")


def parse_header(value: bytes, what: str = "BundleHeaderProto") -> BundleHeader:
    """Decode a `BundleHeaderProto` (num_shards=1, endianness=2, version=3)."""
    num_shards, endian, producer, min_consumer = 1, 0, 0, 0
    for field, val in _known_fields(value, what, {1: 0, 2: 0, 3: 2}):
        if field == 1:
            num_shards = _signed64(val)
        elif field == 2:
            endian = val
        else:
            for vf, vv in _known_fields(val, f"VersionDef of {what}", {1: 0, 2: 0}):
                if vf == 1:
                    producer = _signed64(vv)
                else:
                    min_consumer = _signed64(vv)
    if endian == 1:
        raise CheckpointError(
            f"{what}: the checkpoint was written big-endian, which this reader does not read; "
            "re-save it on a little-endian machine (x86, ARM)"
        )
    if endian != 0:
        raise CheckpointError(f"corrupt {what}: unknown endianness {endian}")
    if num_shards < 1:
        raise CheckpointError(f"corrupt {what}: num_shards={num_shards}")
    return BundleHeader(num_shards, "little", producer, min_consumer)


def _parse_shape(value: bytes, what: str) -> tuple[tuple[int, ...], bool]:
    """Decode a `TensorShapeProto` (dim=2 {size=1}, unknown_rank=3); sizes must be >= 0."""
    dims: list[int] = []
    unknown_rank = False
    for field, val in _known_fields(value, what, {2: 2, 3: 0}):
        if field == 2:
            size = 0
            for _df, dv in _known_fields(val, what, {1: 0}):
                size = _signed64(dv)
            if size < 0:
                raise CheckpointError(f"corrupt {what}: dimension {len(dims)} is {size}")
            dims.append(size)
        else:
            unknown_rank = bool(val)
    if len(dims) > _MAX_RANK:
        raise CheckpointError(f"corrupt {what}: rank {len(dims)} (numpy holds at most {_MAX_RANK})")
    return tuple(dims), unknown_rank


def parse_entry(value: bytes, what: str = "BundleEntryProto") -> BundleEntry:
    """Decode a `BundleEntryProto` (dtype=1, shape=2, shard_id=3, offset=4, size=5,
    crc32c=6 fixed32, slices=7); shard, offset and size must be >= 0."""
    dtype = crc = 0
    ints = {3: 0, 4: 0, 5: 0}
    shape: tuple[int, ...] = ()
    unknown_rank = sliced = False
    wires = {1: 0, 2: 2, 3: 0, 4: 0, 5: 0, 6: 5, 7: 2}
    for field, val in _known_fields(value, what, wires):
        if field == 1:
            dtype = val
        elif field == 2:
            shape, unknown_rank = _parse_shape(val, what)
        elif field in ints:
            ints[field] = _signed64(val)
        elif field == 6:
            crc = val
        else:
            sliced = True
    if min(ints.values()) < 0:
        raise CheckpointError(
            f"corrupt {what}: negative shard/offset/size {list(ints.values())}; re-copy the index"
        )
    return BundleEntry(dtype, shape, ints[3], ints[4], ints[5], crc, sliced, unknown_rank)
