from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenetv3.data.preprocess import (
    SLIM_EVAL,
    SLIM_EVAL_TF1,
    TIMM_IMAGENET,
    ImageError,
    Preprocess,
    central_crop_box,
    load_image,
    preprocess_batch,
    preprocess_image,
    resize_bilinear_tf,
    tf_resize_bilinear_hwc,
)
from mobilenetv3.runtime.engines import quantize_input

# ----------------------------------------------------------------- independent references


def tf_crop_box_reference(h: int, w: int, f: float) -> tuple[int, int, int, int]:
    """tf.image.central_crop, static-shape branch: int((size - size * f) / 2)."""
    top = int((float(h) - float(h) * f) / 2)
    left = int((float(w) - float(w) * f) / 2)
    return top, left, h - 2 * top, w - 2 * left


def np_resize_bilinear(img: np.ndarray, out_h: int, out_w: int, half_pixel: bool) -> np.ndarray:
    """Loop-level port of TF's resize_bilinear kernel on an HWC float array."""

    def axis(n_in: int, n_out: int) -> list[tuple[int, int, float]]:
        scale = np.float32(n_in) / np.float32(n_out)
        out = []
        for i in range(n_out):
            src = (np.float32(i) + 0.5) * scale - 0.5 if half_pixel else np.float32(i) * scale
            lo_f = math.floor(src)
            lo = max(lo_f, 0)
            hi = min(math.ceil(src), n_in - 1)
            out.append((lo, hi, float(src - lo_f)))
        return out

    h_in, w_in, c = img.shape
    ys, xs = axis(h_in, out_h), axis(w_in, out_w)
    res = np.zeros((out_h, out_w, c), dtype=np.float64)
    for y, (y0, y1, fy) in enumerate(ys):
        for x, (x0, x1, fx) in enumerate(xs):
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
            bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
            res[y, x] = top + (bot - top) * fy
    return res


def to_uint8_nhwc(x: torch.Tensor, scale: float = 1.0 / 127.0, zero_point: int = 128) -> np.ndarray:
    """Model input (N, C, H, W) or (C, H, W) as the uint8 NHWC codes a .tflite file takes."""
    a = x.numpy()
    q = quantize_input(a[None] if a.ndim == 3 else a, scale, zero_point, np.uint8)
    return np.ascontiguousarray(q.transpose(0, 2, 3, 1))


def random_rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# ----------------------------------------------------------------- geometry and resizing


@pytest.mark.parametrize("h", [224, 225, 256, 257, 299, 331, 341, 500, 1])
@pytest.mark.parametrize("w", [193, 256, 383, 7])
@pytest.mark.parametrize("f", [0.875, 0.5, 1.0, 0.3333])
def test_central_crop_box_matches_tf_formula(h: int, w: int, f: float) -> None:
    assert central_crop_box(h, w, f) == tf_crop_box_reference(h, w, f)


def test_central_crop_box_known_values() -> None:
    assert central_crop_box(256, 256, 0.875) == (16, 16, 224, 224)
    # 341 * 0.875 = 298.375 -> start int(21.3125) = 21, size 341 - 42 = 299
    assert central_crop_box(341, 225, 0.875) == (21, 14, 299, 197)


@pytest.mark.parametrize("size_in,size_out", [((7, 9), (4, 13)), ((31, 17), (224, 224)),
                                              ((299, 256), (224, 224)), ((5, 5), (5, 5))])
@pytest.mark.parametrize("half_pixel", [True, False])
def test_bilinear_matches_numpy_reference(size_in, size_out, half_pixel) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((*size_in, 3)).astype(np.float32)
    want = np_resize_bilinear(img, *size_out, half_pixel=half_pixel)
    if half_pixel:  # the torch form (training) exists for TF2 sampling only
        got = resize_bilinear_tf(torch.from_numpy(img).permute(2, 0, 1), size_out)
        np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), want, atol=2e-6)
    got_np = tf_resize_bilinear_hwc(img, size_out, half_pixel=half_pixel)
    assert got_np.dtype == np.float32 and got_np.shape == (*size_out, 3)
    np.testing.assert_allclose(got_np, want, atol=2e-6)


def test_bilinear_hand_values() -> None:
    x = torch.tensor([[[0.0, 1.0]]])
    # TF2: src = (i + .5) / 2 - .5 = -.25, .25, .75, 1.25 -> clamped
    torch.testing.assert_close(resize_bilinear_tf(x, (1, 4))[0, 0], torch.tensor([0, .25, .75, 1]))
    # TF1 legacy: src = i / 2 = 0, .5, 1, 1.5 -> upper index clamped
    tf1 = tf_resize_bilinear_hwc(x.permute(1, 2, 0).numpy(), (1, 4), half_pixel=False)
    np.testing.assert_allclose(tf1[0, :, 0], [0, .5, 1, 1])


def test_batched_resize_matches_single() -> None:
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(0))
    batched = resize_bilinear_tf(x, (9, 31))
    torch.testing.assert_close(batched[1], resize_bilinear_tf(x[1], (9, 31)))


# ----------------------------------------------------------------- pipelines


@pytest.mark.parametrize("preset", [SLIM_EVAL, SLIM_EVAL_TF1])
def test_slim_pipeline_equals_manual_reference(preset: Preprocess) -> None:
    img = random_rgb(61, 47, seed=3)
    got = preprocess_image(img, preset.replace(image_size=(20, 30)))
    top, left, ch, cw = tf_crop_box_reference(61, 47, 0.875)
    arr = np.asarray(img)[top : top + ch, left : left + cw].astype(np.float32) / 255.0
    ref = np_resize_bilinear(arr, 20, 30, half_pixel=preset.resize == "bilinear_tf")
    want = (ref - 0.5) * 2.0
    assert got.shape == (3, 20, 30) and got.dtype == torch.float32
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), want, atol=5e-6)


@pytest.mark.parametrize(
    "preset", [SLIM_EVAL, SLIM_EVAL_TF1, TIMM_IMAGENET, SLIM_EVAL.replace(resize="pil_bilinear"),
               TIMM_IMAGENET.replace(resize="bilinear_tf")])
def test_output_shape_and_range(preset: Preprocess) -> None:
    x = preprocess_image(random_rgb(300, 410), preset)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    if preset.mean == (0.5, 0.5, 0.5):
        assert x.min() >= -1.0 and x.max() <= 1.0


def test_slim_range_extremes() -> None:
    black = preprocess_image(Image.new("RGB", (50, 40), (0, 0, 0)))
    white = preprocess_image(Image.new("RGB", (50, 40), (255, 255, 255)))
    assert torch.all(black == -1.0) and torch.all(white == 1.0)


def test_timm_resize_then_crop_geometry() -> None:
    # a 512x256 (H, W) gradient: shorter side 256 already, so only the centre crop acts
    arr = np.zeros((512, 256, 3), dtype=np.uint8)
    arr[:, :, 0] = (np.arange(512) // 2)[:, None].astype(np.uint8)
    x = preprocess_image(Image.fromarray(arr), TIMM_IMAGENET.replace(mean=(0, 0, 0),
                                                                       std=(1, 1, 1)))
    top = round((512 - 224) / 2)
    np.testing.assert_allclose(x[0, :, 0].numpy() * 255, np.arange(top, top + 224) // 2, atol=1e-3)
    assert TIMM_IMAGENET.replace(resize_shorter=None).shorter_side == 256


def test_preprocess_dict_roundtrip() -> None:
    for preset in (SLIM_EVAL, SLIM_EVAL_TF1, TIMM_IMAGENET):
        d = json.loads(json.dumps(preset.to_dict()))
        assert Preprocess.from_dict(d) == preset
    assert SLIM_EVAL.to_dict()["image_size"] == [224, 224]
    with pytest.raises(ValueError, match="unknown Preprocess fields"):
        Preprocess.from_dict({"kind": "slim_central_crop", "sizes": 3})
    with pytest.raises(ValueError, match="unknown resize"):
        Preprocess(resize="nearest")
    with pytest.raises(ValueError, match="unknown preprocess kind"):
        Preprocess(kind="random_crop")


def test_preprocess_batch() -> None:
    imgs = [random_rgb(100, 120, seed=s) for s in range(3)]
    b = preprocess_batch(imgs)
    assert b.shape == (3, 3, 224, 224)
    torch.testing.assert_close(b[2], preprocess_image(imgs[2]))
    assert preprocess_batch([]).shape == (0, 3, 224, 224)


def test_to_uint8_nhwc_mapping() -> None:
    # pixel p -> x = p / 127.5 - 1 -> q = round(x * 127) + 128
    pixels = np.array([0, 1, 64, 127, 128, 254, 255], dtype=np.float32)
    x = torch.from_numpy(pixels / 127.5 - 1).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    q = to_uint8_nhwc(x)
    assert q.shape == (1, 1, 7, 3) and q.dtype == np.uint8
    expected = [1, 2, 65, 128, 128, 254, 255]  # 127 and 128 both land on 128
    assert q[0, 0, :, 0].tolist() == expected
    assert to_uint8_nhwc(torch.zeros(3, 2, 2)).shape == (1, 2, 2, 3)
    assert to_uint8_nhwc(torch.full((3, 1, 1), 5.0))[0, 0, 0, 0] == 255  # clipped


# ----------------------------------------------------------------- decoding


def test_exif_rotation_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape as stored
    arr[:, :20] = (255, 0, 0)  # left half red
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)  # (W, H): portrait after transpose
    top = np.asarray(out)[:20].astype(int)
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 50  # red went to the top


def _save(tmp_path: Path, img: Image.Image, name: str) -> Path:
    path = tmp_path / name
    img.save(path)
    return path


def test_modes_become_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L")
    i16 = Image.fromarray(rng.integers(0, 65536, (30, 40), dtype=np.uint16))
    files = {
        "gray.png": gray,
        "palette.png": gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE),
        "cmyk.jpg": gray.convert("RGB").convert("CMYK"),
        "i16.png": i16,
        "i16.tif": i16,
        "rgba.png": gray.convert("RGBA"),
        "la.png": gray.convert("LA"),
        "bilevel.png": gray.convert("1"),
    }
    for name, img in files.items():
        loaded = load_image(_save(tmp_path, img, name))
        assert loaded.mode == "RGB", name
        assert loaded.size == (40, 30), name
        x = preprocess_image(loaded)
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32, name
    # preprocess_image also accepts non-RGB images directly
    assert preprocess_image(gray).shape == (3, 224, 224)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    loaded = load_image(_save(tmp_path, Image.fromarray(arr), "i16.png"))
    assert np.asarray(loaded)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_alpha_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # transparent black -> white
    rgba[0, 1] = (10, 20, 30, 255)  # opaque -> kept
    rgba[1, 0] = (0, 0, 0, 128)  # half black -> mid grey
    loaded = np.asarray(load_image(_save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")))
    assert loaded[0, 0].tolist() == [255, 255, 255]
    assert loaded[0, 1].tolist() == [10, 20, 30]
    assert 120 <= loaded[1, 0, 0] <= 130


def test_palette_with_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p.putpixel((1, 1), 1)
    p.info["transparency"] = 0
    path = tmp_path / "t.png"
    p.save(path, transparency=0)
    loaded = np.asarray(load_image(path))
    assert loaded[0, 0].tolist() == [255, 255, 255]
    assert loaded[1, 1].tolist() == [200, 10, 10]


def test_bad_files_raise_image_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    good = tmp_path / "good.jpg"
    random_rgb(64, 64).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    missing = tmp_path / "missing.jpg"
    for path in (empty, text, truncated, missing):
        with pytest.raises(ImageError, match=path.name) as info:
            load_image(path)
        assert "skip_bad" in str(info.value)
        assert isinstance(info.value, ValueError)
    assert load_image(good).size == (64, 64)


# ----------------------------------------------------------------- outside validation


def test_uint8_gather_then_scale_is_bit_identical() -> None:
    """Gathering uint8 pixels before the 1/255 scaling must not change any number."""
    rng = np.random.default_rng(5)
    u8 = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    as_float = u8.astype(np.float32) * np.float32(1.0 / 255.0)
    for half_pixel in (True, False):
        a = tf_resize_bilinear_hwc(u8, (24, 31), half_pixel, scale=1.0 / 255.0)
        b = tf_resize_bilinear_hwc(as_float, (24, 31), half_pixel)
        assert np.array_equal(a, b)
