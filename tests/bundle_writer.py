"""Writes TensorBundle checkpoints for tests: a LevelDB SSTable writer, protobuf encoding and
whole synthetic bundles. Test scaffolding written from the format description (the package
only reads tables), so the reader is checked against an independent encoder.
"""

from __future__ import annotations

import struct

import cramjam
import google_crc32c
import numpy as np

from mobilenetv3.weights.tensorbundle import iter_proto_fields


def mask(crc: int) -> int:
    """The LevelDB crc mask, written out independently of the code under test."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode(fields: list[tuple[int, int, int | bytes]]) -> bytes:
    """Protobuf wire encoding of (field, wire type, value) triples."""
    out = bytearray()
    for field, wire, value in fields:
        out += varint(field << 3 | wire)
        if wire == 0:
            out += varint(value)  # type: ignore[arg-type]
        elif wire == 1:
            out += struct.pack("<Q", value)
        elif wire == 5:
            out += struct.pack("<I", value)
        else:
            out += varint(len(value)) + value  # type: ignore[arg-type]
    return bytes(out)


def edit(message: bytes, **changes: int) -> bytes:
    """Replace varint fields (given as f<number>=value) of a message, keeping the rest."""
    numbers = {int(k[1:]): v for k, v in changes.items()}
    kept = [f for f in iter_proto_fields(message) if f[0] not in numbers]
    return encode(kept + [(n, 0, v) for n, v in numbers.items()])


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts: list[int] = []
    prev = b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        prev = key
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def _append(out: bytearray, payload: bytes, kind: int) -> bytes:
    """Append a stored block + its trailer (compression type, masked crc); returns its handle."""
    handle = varint(len(out)) + varint(len(payload))
    crc = mask(google_crc32c.value(payload + bytes([kind])))
    out += payload + bytes([kind]) + struct.pack("<I", crc)
    return handle


def _emit(out: bytearray, block: bytes, compress: bool) -> bytes:
    if compress:
        return _append(out, bytes(cramjam.snappy.compress_raw(block)), 1)
    return _append(out, block, 0)


def _footer(out: bytearray, handles: bytes) -> bytes:
    return bytes(
        out + handles + b"\0" * (40 - len(handles)) + struct.pack("<Q", 0xDB4775248B80FB57)
    )


def table_with_index_block(payload: bytes, kind: int) -> bytes:
    """A table whose index block is `payload` stored as is under compression type `kind`
    (a valid trailer crc), for crafted blocks."""
    out = bytearray()
    meta = _emit(out, _block([]), False)
    return _footer(out, meta + _append(out, payload, kind))


def write_table(items: list[tuple[bytes, bytes]], block_size: int = 4096, compress: bool = False):
    """A LevelDB-format SSTable of sorted (key, value) items."""
    out = bytearray()
    index: list[tuple[bytes, bytes]] = []
    pending: list[tuple[bytes, bytes]] = []
    for key, value in items:
        pending.append((key, value))
        if sum(len(k) + len(v) + 3 for k, v in pending) >= block_size:
            index.append((key, _emit(out, _block(pending), compress)))
            pending = []
    if pending:
        index.append((pending[-1][0], _emit(out, _block(pending), compress)))
    meta = _emit(out, _block([]), False)
    return _footer(out, meta + _emit(out, _block(index, restart_interval=1), compress))


def synthetic(tensors: dict[str, tuple[int, np.ndarray]], big_endian: bool = False):
    """(index bytes, data bytes) of a checkpoint holding the given (TF dtype enum, array)."""
    data = bytearray()
    items = [(b"", encode([(1, 0, 1), (2, 0, int(big_endian)), (3, 2, encode([(1, 0, 1)]))]))]
    for name in sorted(tensors):
        enum, array = tensors[name]
        raw = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        shape = encode([(2, 2, encode([(1, 0, d)])) for d in array.shape])
        fields = [(1, 0, enum), (2, 2, shape), (4, 0, len(data)), (5, 0, len(raw))]
        fields.append((6, 5, mask(google_crc32c.value(raw))))
        items.append((name.encode(), encode(fields)))
        data += raw
    return write_table(items, block_size=256), bytes(data)
