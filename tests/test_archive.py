"""Release tarballs: which checkpoint `use_ema` loads, and damaged or crafted archives.

Tarballs are laid out as the official releases are (`<top>/ema/model-N.*` holding the EMA values
under the variables' own names, `<top>/pristine/model.ckpt-N.*` holding the raw variables and
their `/ExponentialMovingAverage` shadows), built from the shared slim fixture.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_writer import synthetic

import mobilenetv3
from mobilenetv3.weights.archive import list_tar_members, open_checkpoint_in_tar, read_tar_member
from mobilenetv3.weights.errors import CheckpointError
from mobilenetv3.weights.tensorbundle import read_checkpoint

TOP = "v3-small_224_1.0_float"
EMA = "/ExponentialMovingAverage"
DATA = "data-00000-of-00001"
ENUMS = {np.dtype(np.float32): 1, np.dtype(np.int64): 9}


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _tgz(path: Path, members: dict[str, bytes], level: int = 9) -> Path:
    path.write_bytes(gzip.compress(_tar_bytes(members), compresslevel=level, mtime=0))
    return path


@pytest.fixture(scope="module")
def small(shared: Path) -> Path:
    return shared / "reference" / "slim" / "v3_small_1.0"


@pytest.fixture(scope="module")
def ema_checkpoint(small: Path) -> dict[str, bytes]:
    """The release's ema/ checkpoint: every shadow saved under its variable's own name."""
    state = read_checkpoint(small / "model.ckpt")
    averaged = {k: state.get(k + EMA, v) for k, v in state.items() if not k.endswith(EMA)}
    index, data = synthetic({k: (ENUMS[v.dtype], v) for k, v in averaged.items()})
    return {f"{TOP}/ema/model-388500.index": index, f"{TOP}/ema/model-388500.{DATA}": data}


@pytest.fixture(scope="module")
def pristine_checkpoint(small: Path) -> dict[str, bytes]:
    return {
        f"{TOP}/pristine/model.ckpt-388500.index": (small / "model.ckpt.index").read_bytes(),
        f"{TOP}/pristine/model.ckpt-388500.{DATA}": (small / f"model.ckpt.{DATA}").read_bytes(),
    }


def test_use_ema_false_loads_the_pristine_raw_variables(
    small: Path, ema_checkpoint: dict, pristine_checkpoint: dict, tmp_path: Path
) -> None:
    reference = np.load(small / "reference.npz")
    x = torch.from_numpy(reference["input_224x224"]).permute(0, 3, 1, 2)
    tgz = _tgz(tmp_path / f"{TOP}.tgz", {**pristine_checkpoint, **ema_checkpoint}, level=1)
    for use_ema, group in ((True, "ema"), (False, "plain")):
        model = mobilenetv3.create_model(weights=tgz, use_ema=use_ema)
        assert model.variant.name == "v3_small_1.0"
        with torch.no_grad():
            logits = model(x).numpy()
        expected = reference[f"{group}_224x224/Logits"]
        np.testing.assert_allclose(logits, expected, atol=1e-4, err_msg=group)


def test_use_ema_false_without_pristine_names_the_checkpoints(
    ema_checkpoint: dict, tmp_path: Path
) -> None:
    tgz = _tgz(tmp_path / "ema_only.tgz", ema_checkpoint, level=1)
    with pytest.raises(CheckpointError, match=rf"only EMA checkpoints \({TOP}/ema/model-388500\)"):
        mobilenetv3.create_model(weights=tgz, use_ema=False)
    with pytest.raises(CheckpointError, match=rf"no checkpoint named 'x/y'; it holds {TOP}/ema/"):
        open_checkpoint_in_tar(tgz, prefix="x/y")


def _with_header(payload: bytes, name: str, **fields: bytes) -> bytes:
    """A one-member tar whose header has raw `fields` ({offset as 'at<N>': bytes}) patched in,
    with the header checksum recomputed."""
    header = bytearray(_tar_bytes({name: payload})[:512])
    for key, value in fields.items():
        at = int(key[2:])
        header[at : at + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    body = payload + b"\0" * (-len(payload) % 512)
    return bytes(header) + body + b"\0" * 1024


def test_sparse_member_is_refused(tmp_path: Path) -> None:
    huge = (8 << 30).to_bytes(11, "big")
    raw = _with_header(b"x" * 512, f"{TOP}/big.bin", at156=b"S", at483=b"\x80" + huge)
    (tmp_path / "sparse.tgz").write_bytes(gzip.compress(raw))
    with pytest.raises(CheckpointError, match=f"member {TOP}/big.bin is a GNU sparse file"):
        list_tar_members(tmp_path / "sparse.tgz")


def test_member_larger_than_the_archive_can_hold_is_refused(tmp_path: Path) -> None:
    raw = _with_header(b"x" * 512, "model.tflite", at124=b"\x80" + (1 << 40).to_bytes(11, "big"))
    (tmp_path / "big.tgz").write_bytes(gzip.compress(raw))
    with pytest.raises(CheckpointError, match="declares 1099511627776 bytes, more than this"):
        read_tar_member(tmp_path / "big.tgz", ".tflite")


def test_flipped_compressed_byte_is_an_error_never_other_bytes(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).integers(0, 8, 4096, np.uint8).tobytes()
    good = _tgz(tmp_path / "good.tgz", {"m/model.tflite": payload}).read_bytes()
    assert read_tar_member(tmp_path / "good.tgz", ".tflite") == payload
    bad = tmp_path / "bad.tgz"
    for position in range(10, len(good), max(1, len(good) // 60)):
        flipped = bytearray(good)
        flipped[position] ^= 0x10
        bad.write_bytes(bytes(flipped))
        try:
            got = read_tar_member(bad, ".tflite")
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            continue
        assert got == payload, f"byte {position} flipped gave other bytes"


def test_stored_gzip_with_a_changed_payload_fails_its_crc(tmp_path: Path) -> None:
    good = _tgz(tmp_path / "stored.tgz", {"m/model.tflite": b"TFL3" + b"w" * 2000}, level=0)
    data = good.read_bytes()
    at = data.index(b"w" * 100) + 50
    good.write_bytes(data[:at] + b"v" + data[at + 1 :])  # deflate-stored: still decompresses
    with pytest.raises(CheckpointError, match="damaged.*CRC check failed"):
        read_tar_member(good, ".tflite")


def test_truncated_and_garbage_archives_are_one_clear_error(
    pristine_checkpoint: dict, tmp_path: Path
) -> None:
    data = _tgz(tmp_path / "whole.tgz", pristine_checkpoint, level=1).read_bytes()
    for cut in (len(data) // 3, len(data) - 4):
        (tmp_path / "cut.tgz").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut.tgz is not a readable tar archive"):
            open_checkpoint_in_tar(tmp_path / "cut.tgz")
    (tmp_path / "junk.tgz").write_bytes(b"\x1f\x8b" + b"\xff" * 200)
    with pytest.raises(CheckpointError, match="junk.tgz is not a readable tar archive"):
        list_tar_members(tmp_path / "junk.tgz")
