"""The LevelDB-format SSTable that a checkpoint's `.index` file is.

Its last 48 bytes are a footer holding two block handles (varint offset + size of the
metaindex and index blocks) and the magic 0xdb4775248b80fb57. Every block is followed by a
1-byte compression type (0 none, 1 Snappy) and a masked crc32c of block + type. Block entries
store prefix-compressed keys (`shared`, `unshared`, `value_length` varints) and end with uint32
restart offsets. The index block maps separator keys to handles of the data blocks. Keys are
strictly increasing across the whole table; a duplicate or out-of-order key is corruption.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from mobilenetv3.weights.errors import CheckpointError
from mobilenetv3.weights.tensorbundle.codec import crc32c, mask_crc, snappy_decompress
from mobilenetv3.weights.tensorbundle.proto import read_varint

__all__ = ["BLOCK_TRAILER_SIZE", "FOOTER_SIZE", "TABLE_MAGIC", "iter_table"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5


def _read_block(table: bytes, offset: int, size: int, source: str) -> bytes:
    """Return a block's contents after checking its trailer crc and undoing Snappy."""
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointError(
            f"corrupt checkpoint index {source}: block handle (offset {offset}, size {size}) "
            f"points past the end of the {len(table)}-byte file; re-copy the .index file"
        )
    raw = table[offset:end]
    kind = table[end]
    (stored,) = struct.unpack_from("<I", table, end + 1)
    actual = mask_crc(crc32c(table[offset : end + 1]))
    if actual != stored:
        raise CheckpointError(
            f"bad block crc in checkpoint index {source}: block at offset {offset} stores "
            f"{stored:#010x} but its bytes give {actual:#010x}; the .index file is corrupt, "
            "re-download or re-copy it"
        )
    if kind == 0:
        return raw
    if kind == 1:
        return snappy_decompress(raw, f"checkpoint index {source}, block at offset {offset}")
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
        shared, pos = read_varint(block, pos, what)
        unshared, pos = read_varint(block, pos, what)
        vlen, pos = read_varint(block, pos, what)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise CheckpointError(f"corrupt {what}: entry at byte {pos} overruns the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + vlen]
        pos += vlen


def _parse_handle(value: bytes, pos: int, source: str) -> tuple[int, int, int]:
    """Decode a BlockHandle (two varints); returns (offset, size, next position)."""
    offset, pos = read_varint(value, pos, f"block handle in {source}")
    size, pos = read_varint(value, pos, f"block handle in {source}")
    return offset, size, pos


def _footer_index_handle(table: bytes, source: str) -> tuple[int, int]:
    """Offset and size of the index block, after checking the footer's magic."""
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
    return index_off, index_size


def iter_table(table: bytes, source: str = "<memory>") -> Iterator[tuple[bytes, bytes]]:
    """Yield every (key, value) of a LevelDB-format SSTable held in memory, in key order."""
    table = bytes(table)
    index_block = _read_block(table, *_footer_index_handle(table, source), source)
    previous: bytes | None = None
    for _sep, handle in _iter_block(index_block, source):
        off, size, _ = _parse_handle(handle, 0, source)
        for key, value in _iter_block(_read_block(table, off, size, source), source):
            if previous is not None and key <= previous:
                order = "a duplicate" if key == previous else "an out-of-order"
                raise CheckpointError(
                    f"corrupt checkpoint index {source}: {order} key {key[:80]!r} follows "
                    f"{previous[:80]!r}; the .index file is damaged or crafted, re-copy it"
                )
            previous = key
            yield key, value
