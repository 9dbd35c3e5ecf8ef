"""Crafted and inconsistent checkpoints: each is one CheckpointError/WeightsError naming what is
wrong, found before anything large is allocated; none loads with other numbers.

Indexes are written with the independent encoder of `bundle_writer`.
"""

from __future__ import annotations

import google_crc32c
import numpy as np
import pytest
from bundle_writer import encode, mask, synthetic, table_with_index_block, varint, write_table

import mobilenetv3
from mobilenetv3.weights.errors import CheckpointError, WeightsError
from mobilenetv3.weights.loading import load_slim_state, read_slim_state
from mobilenetv3.weights.tensorbundle import CheckpointReader

HEADER = (b"", encode([(1, 0, 1), (3, 2, encode([(1, 0, 1)]))]))
EMA = "/ExponentialMovingAverage"


def _entry(shape: tuple[int, ...], size: int, data: bytes = b"") -> bytes:
    dims = encode([(2, 2, encode([(1, 0, d)])) for d in shape])
    fields = [(1, 0, 1), (2, 2, dims), (4, 0, 0), (5, 0, size)]
    return encode(fields + [(6, 5, mask(google_crc32c.value(data)))])


def _open(items: list[tuple[bytes, bytes]], data: bytes = b"\0" * 64) -> CheckpointReader:
    return CheckpointReader.from_buffers(write_table(items), {0: data}, source="crafted")


def test_snappy_block_claiming_4_gib_is_refused_before_allocating() -> None:
    payload = varint(0xFFFFFFFF) + b"\x00a"  # claims 4 GiB, holds one literal byte
    index = table_with_index_block(payload, kind=1)
    with pytest.raises(CheckpointError, match="claims 4294967295 bytes, more than its 7"):
        CheckpointReader.from_buffers(index, {}, source="crafted")


def test_negative_dimensions_are_refused() -> None:
    items = [HEADER, (b"w", _entry((-1, -3), 12))]
    with pytest.raises(CheckpointError, match=r"entry of 'w' in crafted.index: dimension 0 is -1"):
        _open(items).read_all()


def test_shape_inconsistent_with_size_fails_at_open() -> None:
    with pytest.raises(CheckpointError, match=r"'w'.*shape \[3\] of float32 needs 12 bytes.* 8"):
        _open([HEADER, (b"w", _entry((3,), 8))])
    huge = (1 << 31, 1 << 31, 1 << 31)  # a product that overflows int64
    with pytest.raises(CheckpointError, match="'w'.*needs 39614081257132168796771975168 bytes"):
        _open([HEADER, (b"w", _entry(huge, 0))])


@pytest.mark.parametrize(
    ("keys", "what"), [((b"a", b"a"), "a duplicate key b'a'"), ((b"b", b"a"), "an out-of-order")]
)
def test_duplicate_and_unsorted_keys_are_refused(keys: tuple[bytes, bytes], what: str) -> None:
    items = [HEADER] + [(k, _entry((1,), 4, b"\0" * 4)) for k in keys]
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint index crafted.index: {what}"):
        _open(items)


def test_big_endian_bundle_is_refused() -> None:
    index, data = synthetic({"w": (1, np.ones(3, np.float32))}, big_endian=True)
    with pytest.raises(CheckpointError, match="written big-endian.*re-save it on a little-endian"):
        CheckpointReader.from_buffers(index, {0: data})


def test_partial_ema_shadows_are_an_error_unless_raw_is_asked(shared) -> None:
    state, _ = read_slim_state(shared / "reference" / "slim" / "v3_small_1.0" / "model.ckpt")
    del state[f"MobilenetV3/expanded_conv_3/project/weights{EMA}"]
    model = mobilenetv3.create_model("v3_small_1.0")
    with pytest.raises(WeightsError, match=r"shadows .* but not for 1, e.g. \['MobilenetV3/exp"):
        load_slim_state(model, state, source="ckpt")
    assert load_slim_state(model, state, use_ema=False)["missing"] == []


def test_non_finite_weight_names_the_tensor(shared) -> None:
    state, _ = read_slim_state(shared / "reference" / "slim" / "v3_large_1.0" / "model.ckpt")
    state["MobilenetV3/Conv_1/BatchNorm/gamma"][3] = np.nan
    model = mobilenetv3.create_model("v3_large_1.0")
    with pytest.raises(WeightsError, match="ckpt: MobilenetV3/Conv_1/BatchNorm/gamma holds non-f"):
        load_slim_state(model, state, source="ckpt")


def test_a_field_of_the_wrong_wire_type_is_refused() -> None:
    items = [HEADER, (b"w", encode([(1, 0, 1), (2, 0, 5)]))]  # shape given as a varint
    with pytest.raises(CheckpointError, match="entry of 'w' in crafted.index: field 2 has wire"):
        _open(items)
