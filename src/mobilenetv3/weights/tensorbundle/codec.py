"""Checksums and compression of checkpoint files: LevelDB's masked crc32c and raw Snappy.

Snappy's preamble states the decompressed length; it is checked against what the compressed
bytes can possibly expand to before anything is allocated, so a crafted header claiming 4 GiB
is an error, not an allocation.
"""

from __future__ import annotations

import cramjam
import google_crc32c

from mobilenetv3.weights.errors import CheckpointError

__all__ = ["crc32c", "mask_crc", "snappy_decompress", "unmask_crc"]

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
# A Snappy copy element of 2-5 bytes yields at most 64 bytes: no stream expands more than 32x.
_SNAPPY_MAX_RATIO = 32
SNAPPY_MAX_LENGTH = 64 << 20  # an index block is KiBs; no real one comes near this


def crc32c(data: bytes | memoryview) -> int:
    """The (unmasked) crc32c of `data`."""
    return google_crc32c.value(data)


def mask_crc(crc: int) -> int:
    """LevelDB/TF crc masking, which keeps crcs of data that itself embeds crcs well-distributed."""
    crc &= _U32
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Inverse of `mask_crc`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def _claimed_length(raw: bytes, what: str) -> int:
    """The decompressed length a raw Snappy stream declares (its leading varint)."""
    value = shift = 0
    for pos, byte in enumerate(raw[:5]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
        if pos == 4:
            break
    raise CheckpointError(f"{what}: the Snappy length header is truncated or over-long")


def snappy_decompress(raw: bytes, what: str) -> bytes:
    """Undo raw Snappy after checking its claimed length against the input and a cap."""
    claimed = _claimed_length(raw, what)
    bound = min(_SNAPPY_MAX_RATIO * len(raw), SNAPPY_MAX_LENGTH)
    if claimed > bound:
        raise CheckpointError(
            f"{what}: the Snappy block claims {claimed} bytes, more than its {len(raw)} "
            f"compressed bytes can hold (at most {bound}); the file is corrupt, re-copy it"
        )
    try:
        out = bytes(cramjam.snappy.decompress_raw(raw))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise CheckpointError(f"{what}: the Snappy block does not decompress ({exc})") from exc
    if len(out) != claimed:
        raise CheckpointError(f"{what}: the Snappy block gives {len(out)} of {claimed} bytes")
    return out
