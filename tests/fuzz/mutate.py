"""Seeded mutations of a reader's input: generic (bit flips, truncation, overwrites, words set
huge, spliced chunks) and structure-aware (tar headers with valid checksums, safetensors
headers and metadata, flatbuffer offsets and vector lengths, zip members of a .pt2, PNG/JPEG
dimensions with valid CRCs). A file is a dict {suffix: bytes} (a TF checkpoint has two)."""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable

Files = dict[str, bytes]
Mutation = Callable[[bytes, random.Random], bytes]

HUGE_WORDS = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0,
              1 << 40, 0xFFFF)  # fmt: skip
HUGE_NUMBERS = (10**11, 10**6, -1, 0, 2**63, 1e308, float("nan"), 100000, -(2**31))


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        i = rng.randrange(len(out) * 8)
        out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def overwrite(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    fill = rng.choice((b"\x00", b"\xff", b"\x7f", b"\x80", bytes([rng.randrange(256)])))
    return data[:start] + fill * rng.randint(1, 64) + data[start + 64 :]


def huge_word(data: bytes, rng: random.Random) -> bytes:
    """A little-endian u32/u64 (length or offset field, often) set to a boundary value."""
    size = rng.choice((4, 8))
    pos = rng.randrange(0, max(1, len(data) - size), rng.choice((1, 4)))
    word = rng.choice(HUGE_WORDS) & ((1 << (8 * size)) - 1)
    return data[:pos] + word.to_bytes(size, "little") + data[pos + size :]


def splice(data: bytes, rng: random.Random) -> bytes:
    a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    return data[:a] + data[b:] if rng.random() < 0.5 else data[:b] + data[a:]


GENERIC: tuple[Mutation, ...] = (flip_bits, truncate, overwrite, huge_word, splice)


# ----------------------------------------------------------------------------- tar (.tgz)


def _tar_header(header: bytes, rng: random.Random) -> bytes:
    """One field of a tar header changed, the checksum recomputed so tarfile accepts it."""
    h = bytearray(header)
    field = rng.choice(("size", "sparse", "type", "name", "link", "longsize"))
    if field == "size":
        h[124:136] = rng.choice((b"77777777777\x00", b"\x80" + b"\x00" * 6 + b"\x01" + b"\x00" * 4,
                                 b"\xff" * 12, b"00000000000\x00"))  # fmt: skip
    elif field == "sparse":  # GNU sparse member declaring a huge real size
        h[156:157] = b"S"
        h[386:398] = b"\x00" * 12
        h[483:495] = b"\x80" + b"\x00" * 3 + (1 << 40).to_bytes(8, "big")
    elif field == "type":
        h[156:157] = rng.choice((b"1", b"2", b"3", b"5", b"6", b"L", b"K", b"x", b"g", b"Z"))
    elif field == "name":
        h[0:100] = rng.choice((b"../../evil", b"/abs/path", b"a" * 100)).ljust(100, b"\x00")
    elif field == "link":
        h[157:257] = b"/etc/passwd".ljust(100, b"\x00")
        h[156:157] = rng.choice((b"1", b"2"))
    else:
        h[124:136] = f"{rng.randrange(1, 1 << 30):011o}\x00".encode()
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\x00 ".encode()
    return bytes(h)


def tar_header(data: bytes, rng: random.Random) -> bytes:
    """A member header of the (gunzipped) tar mutated, then gzipped again."""
    tar = bytearray(gzip.decompress(data))
    with tarfile.open(fileobj=io.BytesIO(bytes(tar))) as t:
        offsets = [m.offset for m in t.getmembers()]
    at = rng.choice(offsets)
    tar[at : at + 512] = _tar_header(bytes(tar[at : at + 512]), rng)
    return gzip.compress(bytes(tar), mtime=0)


def tar_payload(data: bytes, rng: random.Random) -> bytes:
    """Member bytes changed under a valid gzip stream (the checkpoint's CRCs must notice)."""
    tar = gzip.decompress(data)
    return gzip.compress(rng.choice(GENERIC)(tar, rng), mtime=0)


def gzip_trailer(data: bytes, rng: random.Random) -> bytes:
    """The gzip CRC32 or length in the trailer changed (the data itself intact)."""
    pos = len(data) - rng.choice((8, 4))
    return data[:pos] + bytes([data[pos] ^ 1]) + data[pos + 1 :]


# ----------------------------------------------------------------------------- safetensors


def _st_split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _st_join(header: dict, body: bytes) -> bytes:
    text = json.dumps(header, allow_nan=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def st_length(data: bytes, rng: random.Random) -> bytes:
    word = rng.choice((0, 1, 7, len(data), len(data) - 8, 2**40, 2**64 - 1))
    return struct.pack("<Q", word) + data[8:]


def st_tensor(data: bytes, rng: random.Random) -> bytes:
    """One tensor's dtype, shape or data offsets made inconsistent or huge."""
    header, body = _st_split(data)
    name = rng.choice([k for k in header if k != "__metadata__"])
    entry = header[name]
    field = rng.choice(("dtype", "shape", "offsets", "drop"))
    if field == "dtype":
        entry["dtype"] = rng.choice(("F64", "F16", "I8", "BOOL", "X", 7))
    elif field == "shape":
        entry["shape"] = rng.choice(([2**31, 2**31], [-1], [], [0], [10**12], "x"))
    elif field == "offsets":
        start, end = entry["data_offsets"]
        entry["data_offsets"] = rng.choice(([end, start], [0, 2**40], [start, end + 4],
                                            [start, len(body) * 2], [-8, end]))  # fmt: skip
    else:
        del header[name]
    return _st_join(header, body)


def st_metadata(data: bytes, rng: random.Random) -> bytes:
    """One metadata value (the variant JSON and its numbers included) set hostile."""
    header, body = _st_split(data)
    meta = header.setdefault("__metadata__", {})
    key = rng.choice([*meta, "variant", "num_classes", "preprocess"])
    value = meta.get(key, "{}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, dict) and parsed and rng.random() < 0.7:
        field = rng.choice(list(parsed))
        parsed[field] = rng.choice((*HUGE_NUMBERS, [100000, 100000], "x", None, [1e9]))
        meta[key] = json.dumps(parsed, allow_nan=True)
    else:
        meta[key] = rng.choice(("1e11", "100000000000", "-5", "nan", "{", "[]", '"x"', "null"))
    return _st_join(header, body)


# ----------------------------------------------------------------------------- flatbuffers


def fb_offset(data: bytes, rng: random.Random) -> bytes:
    """An aligned u32 that looks like an offset or vector length (0 < v < file size) set to a
    boundary value: the fields a flatbuffer reader follows."""
    candidates = [p for p in range(0, min(len(data), 1 << 16) - 4, 4)
                  if 0 < int.from_bytes(data[p : p + 4], "little") < len(data)]  # fmt: skip
    pos = rng.choice(candidates or [0])
    value = int.from_bytes(data[pos : pos + 4], "little")
    word = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, len(data), len(data) - 4, value + 4, 0, value * 3))
    return data[:pos] + (word & 0xFFFFFFFF).to_bytes(4, "little") + data[pos + 4 :]


# ----------------------------------------------------------------------------- .pt2 (zip)


def _json_hostile(value: object, rng: random.Random) -> object:
    """A random number, list or key inside a JSON document made hostile."""
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            return {k: v for k, v in value.items() if k != key}
        return value | {key: _json_hostile(value[key], rng)}
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return value[:i] + [_json_hostile(value[i], rng)] + value[i + 1 :]
    return rng.choice((*HUGE_NUMBERS, "x", None, [], {}))


def pt2_member(data: bytes, rng: random.Random) -> bytes:
    """One member of the .pt2 zip changed (its JSON parsed and made hostile, or its bytes
    mutated), the zip rewritten valid around it."""
    with zipfile.ZipFile(io.BytesIO(data)) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    name = rng.choice(list(members))
    if name.endswith(".json") and rng.random() < 0.7:
        doc = _json_hostile(json.loads(members[name]), rng)
        members[name] = json.dumps(doc, allow_nan=True).encode()
    else:
        members[name] = rng.choice(GENERIC)(members[name] or b"\x00", rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as new:
        for member, content in members.items():
            new.writestr(member, content)
    return out.getvalue()


# ----------------------------------------------------------------------------- images


def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, payload) of each chunk."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        chunks.append((pos, kind, data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def image_header(data: bytes, rng: random.Random) -> bytes:
    """Declared dimensions set huge/zero (PNG IHDR with a valid CRC, JPEG SOF), or another
    PNG chunk's payload mutated with its CRC recomputed so the decoder reads it."""
    size = rng.choice((12000, 65535, 0, 1, 0x7FFFFFFF))
    if data.startswith(b"\x89PNG"):
        chunks = _png_chunks(data)
        pos, kind, payload = chunks[0] if rng.random() < 0.4 else rng.choice(chunks)
        end = pos + 12 + len(payload)
        if kind == b"IHDR":
            payload = struct.pack(">II", size, rng.choice((size, 12000))) + payload[8:]
        else:
            payload = rng.choice(GENERIC)(payload or b"\x00", rng)
        return data[:pos] + _png_chunk(kind, payload) + data[end:]
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    if sof < 0:
        return flip_bits(data, rng)
    dims = struct.pack(">HH", size & 0xFFFF, rng.choice((size, 12000)) & 0xFFFF)
    return data[: sof + 5] + dims + data[sof + 9 :]


STRUCTURED: dict[str, tuple[Mutation, ...]] = {
    "tgz": (tar_header, tar_payload, gzip_trailer),
    "checkpoint": (huge_word,),
    "tflite": (fb_offset,),
    "safetensors": (st_length, st_tensor, st_metadata),
    "pt2": (pt2_member,),
    "image": (image_header,),
}


def mutate(files: Files, fmt: str, rng: random.Random) -> tuple[Files, list[str]]:
    """1-3 stacked mutations (structure-aware half of the time) of one file of `files`;
    returns the mutated files and the mutations' names."""
    out, names = dict(files), []
    for _ in range(rng.choice((1, 1, 2, 3))):
        suffix = rng.choice(sorted(out))
        kind = STRUCTURED[fmt] if rng.random() < 0.5 else GENERIC
        mutation = rng.choice(kind)
        try:
            out[suffix] = mutation(out[suffix] or b"\x00", rng)
        except Exception:  # an earlier mutation broke the structure this one parses
            out[suffix] = flip_bits(out[suffix] or b"\x00", rng)
            mutation = flip_bits
        names.append(f"{suffix}:{mutation.__name__}")
    return out, names
