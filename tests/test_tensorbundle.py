"""TF checkpoint reader: real slim checkpoints, bad inputs, Snappy, shards, tarballs.

Bad-input cases write modified copies into tmp_path; the shared files are never touched.
Checkpoints are written with the independent encoder of `bundle_writer` (test scaffolding).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import tarfile
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from bundle_writer import edit, mask, synthetic, write_table

from mobilenetv3.weights.archive import list_tar_members, open_checkpoint_in_tar, read_tar_member
from mobilenetv3.weights.tensorbundle import (
    CheckpointError,
    CheckpointReader,
    iter_table,
    mask_crc,
    parse_entry,
    read_checkpoint,
    unmask_crc,
)

VARIANTS = ["v3_large_1.0", "v3_small_1.0"]
EMA = "/ExponentialMovingAverage"
DATA1 = "model.ckpt.data-00000-of-00001"

# --------------------------------------------------------------------------- scaffolding


def _ckpt(shared: Path, variant: str) -> Path:
    return shared / "reference" / "slim" / variant


def _variables(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """`name<TAB>[shape]<TAB>dtype[<TAB>...]` lines as {name: (shape, dtype)}."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            name, shape, dtype = line.split("\t")[:3]
            out[name] = (tuple(json.loads(shape)), dtype)
    return out


def _read(reader: CheckpointReader) -> dict[str, tuple[tuple[int, ...], str]]:
    return {n: (reader.shape(n), reader.dtype(n).name) for n in reader.names()}


def _copy_ckpt(shared: Path, dest: Path, variant: str = "v3_large_1.0") -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.ckpt.index", DATA1):
        shutil.copyfile(_ckpt(shared, variant) / name, dest / name)
    return dest / "model.ckpt"


@pytest.fixture(scope="module")
def large(shared: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(_ckpt(shared, "v3_large_1.0") / "model.ckpt")


# --------------------------------------------------------------------------- real checkpoints


def test_mask_roundtrip() -> None:
    for crc in (0, 1, 0xFFFFFFFF, 0x12345678, google_crc32c.value(b"foo")):
        assert mask_crc(crc) == mask(crc)
        assert unmask_crc(mask_crc(crc)) == crc


@pytest.mark.parametrize("variant", VARIANTS)
def test_names_shapes_dtypes_match_reference_lists(shared: Path, variant: str) -> None:
    with CheckpointReader(_ckpt(shared, variant) / "model.ckpt") as reader:
        got = _read(reader)
        assert reader.header.num_shards == 1 and reader.header.endianness == "little"
    assert got == _variables(_ckpt(shared, variant) / "variables.txt")
    model = _variables(shared / "reference" / "variables" / f"{variant}_variables.txt")
    plain = {n: v for n, v in got.items() if not n.endswith(EMA) and n != "global_step"}
    assert plain == model
    assert got["global_step"] == ((), "int64")


@pytest.mark.parametrize("variant", VARIANTS)
def test_global_step_and_read_all(shared: Path, variant: str) -> None:
    folder = _ckpt(shared, variant)
    meta = json.loads(str(np.load(folder / "reference.npz")["meta_json"]))
    with CheckpointReader(folder) as reader:
        tensors = reader.read_all()
        assert list(tensors) == reader.names()
        for name, array in tensors.items():
            assert array.shape == reader.shape(name) and array.dtype == reader.dtype(name)
            assert array.flags.owndata and array.flags.writeable
    step = tensors["global_step"]
    assert (
        step.dtype == np.int64 and step.shape == () and int(step) == meta["global_step"] == 123456
    )
    weights = tensors["MobilenetV3/Conv/weights"]
    assert np.isfinite(weights).all() and weights.std() > 0
    # Copies stay valid after close; the closed reader refuses to read.
    assert float(np.abs(weights).sum()) > 0
    with pytest.raises(CheckpointError, match="closed"):
        reader.read("global_step")


def test_small_holds_ema_shadows(shared: Path) -> None:
    tensors = read_checkpoint(_ckpt(shared, "v3_small_1.0"))
    model = _variables(shared / "reference" / "variables" / "v3_small_1.0_variables.txt")
    shadows = {n for n in tensors if n.endswith(EMA)}
    assert shadows == {n + EMA for n in model}
    for name in model:
        assert tensors[name + EMA].shape == tensors[name].shape
    assert not np.array_equal(
        tensors["MobilenetV3/Conv/weights"], tensors["MobilenetV3/Conv/weights" + EMA]
    )


def test_path_forms_agree(shared: Path, large: dict[str, np.ndarray], tmp_path: Path) -> None:
    folder = _ckpt(shared, "v3_large_1.0")
    for form in (folder, folder / "model.ckpt.index", folder / DATA1, str(folder / "model.ckpt")):
        with CheckpointReader(form) as reader:
            assert reader.names() == list(large)
    # A folder with two checkpoints: the `checkpoint` state file decides; without it, an error.
    two = tmp_path / "two"
    two.mkdir()
    for variant, prefix in (("v3_large_1.0", "a.ckpt"), ("v3_small_1.0", "b.ckpt")):
        (two / f"{prefix}.index").symlink_to(_ckpt(shared, variant) / "model.ckpt.index")
        (two / f"{prefix}.{DATA1[11:]}").symlink_to(_ckpt(shared, variant) / DATA1)
    with pytest.raises(CheckpointError, match=r"holds 2 checkpoints.*a\.ckpt\.index"):
        CheckpointReader(two)
    (two / "checkpoint").write_text(f'model_checkpoint_path: "{two}/b.ckpt"\n')
    with CheckpointReader(two) as reader:
        assert len(reader) == 421


# --------------------------------------------------------------------------- bad inputs


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "model.ckpt.index"))):
        CheckpointReader(tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint in folder"):
        CheckpointReader(tmp_path)


def test_truncated_data_file(shared: Path, tmp_path: Path) -> None:
    prefix = _copy_ckpt(shared, tmp_path)
    data = tmp_path / DATA1
    cut = data.stat().st_size // 2
    with open(data, "r+b") as fh:
        fh.truncate(cut)
    with CheckpointReader(_ckpt(shared, "v3_large_1.0")) as whole:
        first = next(n for n in whole.names() if whole.entry(n).offset + whole.entry(n).size > cut)
    with pytest.raises(CheckpointError, match="truncated") as info:
        CheckpointReader(prefix)
    assert repr(first) in str(info.value) and str(data) in str(info.value)


def test_flipped_byte_names_the_tensor(shared: Path, tmp_path: Path) -> None:
    prefix = _copy_ckpt(shared, tmp_path)
    name = "MobilenetV3/expanded_conv_3/expand/weights"
    with CheckpointReader(prefix) as reader:
        entry = reader.entry(name)
    with open(tmp_path / DATA1, "r+b") as fh:
        fh.seek(entry.offset + entry.size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x10]))
    with CheckpointReader(prefix) as reader:
        reader.read("MobilenetV3/Conv/weights")  # other tensors still read
        with pytest.raises(CheckpointError, match=f"crc32c mismatch for tensor '{name}'"):
            reader.read(name)
        with pytest.raises(CheckpointError, match=re.escape(name)):
            reader.read_all()


def test_garbage_index_is_not_a_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "model.ckpt.index").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="not a LevelDB table"):
        CheckpointReader(tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.index").write_bytes(b"short")
    with pytest.raises(CheckpointError, match="shorter than"):
        CheckpointReader(tmp_path / "model.ckpt")


def test_bad_block_crc(shared: Path, tmp_path: Path) -> None:
    prefix = _copy_ckpt(shared, tmp_path)
    index = bytearray((tmp_path / "model.ckpt.index").read_bytes())
    index[100] ^= 0x01  # inside the first data block
    (tmp_path / "model.ckpt.index").write_bytes(bytes(index))
    with pytest.raises(CheckpointError, match="bad block crc"):
        CheckpointReader(prefix)


def test_unknown_tensor_name(shared: Path) -> None:
    with (
        CheckpointReader(_ckpt(shared, "v3_large_1.0")) as reader,
        pytest.raises(CheckpointError, match="did you mean 'MobilenetV3/Conv/weights'"),
    ):
        reader.read("MobilenetV3/Conv/weight")


# --------------------------------------------------------------------------- rewritten indexes


def test_snappy_compressed_index_reads_identical(
    shared: Path, large: dict[str, np.ndarray], tmp_path: Path
) -> None:
    folder = _ckpt(shared, "v3_large_1.0")
    items = list(iter_table((folder / "model.ckpt.index").read_bytes()))
    table = write_table(items, block_size=1024, compress=True)
    footer_index = table[-48:]
    assert table[len(table) - 48 - 5] == 1  # the index block itself is a Snappy block
    assert footer_index[-8:] == struct.pack("<Q", 0xDB4775248B80FB57)
    (tmp_path / "model.ckpt.index").write_bytes(table)
    (tmp_path / DATA1).symlink_to(folder / DATA1)
    got = read_checkpoint(tmp_path / "model.ckpt")
    assert list(got) == list(large)
    for name, array in large.items():
        np.testing.assert_array_equal(got[name], array)


def _split_in_two(shared: Path, dest: Path) -> tuple[Path, int]:
    """Rewrite the Large checkpoint as 2 shards; returns the prefix and the count in shard 1."""
    folder = _ckpt(shared, "v3_large_1.0")
    data = (folder / DATA1).read_bytes()
    items = list(iter_table((folder / "model.ckpt.index").read_bytes()))
    entries = {k: parse_entry(v) for k, v in items if k}
    offsets = sorted(e.offset for e in entries.values())
    split = offsets[len(offsets) // 2]
    rewritten, moved = [], 0
    for key, value in items:
        if key == b"":
            value = edit(value, f1=2)
        elif entries[key].offset >= split:
            value = edit(value, f3=1, f4=entries[key].offset - split)
            moved += 1
        rewritten.append((key, value))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.ckpt.index").write_bytes(write_table(rewritten))
    (dest / "model.ckpt.data-00000-of-00002").write_bytes(data[:split])
    (dest / "model.ckpt.data-00001-of-00002").write_bytes(data[split:])
    return dest / "model.ckpt", moved


def test_two_shards_read_identical(
    shared: Path, large: dict[str, np.ndarray], tmp_path: Path
) -> None:
    prefix, moved = _split_in_two(shared, tmp_path)
    assert 0 < moved < len(large)
    with CheckpointReader(prefix) as reader:
        assert reader.header.num_shards == 2
        assert {reader.entry(n).shard_id for n in reader.names()} == {0, 1}
        got = reader.read_all()
    assert list(got) == list(large)
    for name, array in large.items():
        np.testing.assert_array_equal(got[name], array)


def test_missing_shard_file(shared: Path, tmp_path: Path) -> None:
    prefix, _ = _split_in_two(shared, tmp_path)
    missing = tmp_path / "model.ckpt.data-00001-of-00002"
    missing.unlink()
    with pytest.raises(CheckpointError, match=f"missing data shard {re.escape(str(missing))}"):
        CheckpointReader(prefix)


def test_every_supported_dtype() -> None:
    rng = np.random.default_rng(1)
    cases = {
        "f32": (1, rng.standard_normal((2, 3)).astype(np.float32)),
        "f64": (2, rng.standard_normal(4)),
        "i32": (3, np.array([-(2**31), 7, 2**31 - 1], np.int32)),
        "u8": (4, np.arange(250, 256, dtype=np.uint8)),
        "i16": (5, np.array([-300, 300], np.int16)),
        "i8": (6, np.array([[-128, 127]], np.int8)),
        "i64": (9, np.array(-(2**40), np.int64)),
        "bool": (10, np.array([True, False, True])),
        "u16": (17, np.array([65535, 1], np.uint16)),
        "f16": (19, np.array([0.5, -1.25, 65504], np.float16)),
        "u32": (22, np.array([2**32 - 1], np.uint32)),
        "u64": (23, np.array([2**64 - 1], np.uint64)),
        "empty": (1, np.zeros((0, 5), np.float32)),
    }
    bf16_values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    cases["bf16"] = (14, (bf16_values.view(np.uint32) >> 16).astype(np.uint16))
    index, data = synthetic(cases)
    with CheckpointReader.from_buffers(index, {0: bytearray(data)}) as reader:
        assert reader.header.endianness == "little"
        got = reader.read_all()
        assert reader.dtype("bf16") == np.float32 and reader.dtype_name("bf16") == "bfloat16"
    for name, (_enum, expected) in cases.items():
        if name == "bf16":
            expected = bf16_values
        assert got[name].dtype == expected.dtype.newbyteorder("="), name
        assert got[name].dtype.isnative
        np.testing.assert_array_equal(got[name], expected, err_msg=name)


def test_unsupported_dtype_names_tensor_and_dtype() -> None:
    index, data = synthetic(
        {"ok": (1, np.ones(3, np.float32)), "words": (7, np.zeros(4, np.uint8))}
    )
    with CheckpointReader.from_buffers(index, {0: data}) as reader:
        for call in (reader.read, reader.dtype):
            with pytest.raises(CheckpointError, match="'words' has dtype string"):
                call("words")
        with pytest.raises(CheckpointError, match="'words'"):
            reader.read_all()
        assert list(reader.read_all(skip_unsupported=True)) == ["ok"]


# --------------------------------------------------------------------------- tarballs


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_checkpoint_inside_tarball(
    shared: Path, large: dict[str, np.ndarray], tmp_path: Path
) -> None:
    top = "v3-large_224_1.0_float"
    tgz = tmp_path / "release.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        small = _ckpt(shared, "v3_small_1.0")
        _add(
            tar,
            f"{top}/pristine/model.ckpt-540000.index",
            (small / "model.ckpt.index").read_bytes(),
        )
        _add(tar, f"{top}/pristine/model.ckpt-540000.{DATA1[11:]}", (small / DATA1).read_bytes())
        folder = _ckpt(shared, "v3_large_1.0")
        _add(tar, f"{top}/ema/model-540000.{DATA1[11:]}", (folder / DATA1).read_bytes())
        _add(tar, f"{top}/ema/model-540000.index", (folder / "model.ckpt.index").read_bytes())
        _add(tar, f"{top}/{top}.tflite", b"TFL3-not-really")
    assert f"{top}/{top}.tflite" in list_tar_members(tgz)
    assert read_tar_member(tgz, ".tflite") == b"TFL3-not-really"
    with pytest.raises(CheckpointError, match="2 members"):
        read_tar_member(tgz, ".index")
    with open_checkpoint_in_tar(tgz) as reader:  # the EMA one, though pristine comes first
        got = reader.read_all()
    assert list(got) == list(large)
    for name, array in large.items():
        np.testing.assert_array_equal(got[name], array)
    with open_checkpoint_in_tar(tgz, prefix="pristine/model.ckpt-540000") as reader:
        assert len(reader) == 421


def test_tarball_without_checkpoint(tmp_path: Path) -> None:
    tgz = tmp_path / "nockpt.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        _add(tar, "release/model.tflite", b"x")
        _add(tar, "release/labels.txt", b"y")
    with pytest.raises(CheckpointError, match=r"no TensorFlow checkpoint.*release/model\.tflite"):
        open_checkpoint_in_tar(tgz)
    with pytest.raises(CheckpointError, match="no member ending in '.pb'.*labels.txt"):
        read_tar_member(tgz, ".pb")
    (tmp_path / "junk.tgz").write_bytes(b"not a tar at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable tar archive"):
        list_tar_members(tmp_path / "junk.tgz")
