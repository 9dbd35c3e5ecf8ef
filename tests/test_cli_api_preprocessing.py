"""`pretrained_cfg` on every model and `mobilenetv3.preprocessing(model_or_weights)`: the
README's "from a photo to a label" path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mobilenetv3
from mobilenetv3.data.labels import top_k
from mobilenetv3.data.preprocess import SLIM_EVAL, TIMM_IMAGENET, load_image, preprocess_image
from mobilenetv3.weights.safetensors_io import save_safetensors

SMALL = "v3-small_224_1.0_uint8.tflite"
CATS = {"Egyptian cat", "tabby, tabby cat", "tiger cat"}


def test_from_a_photo_to_a_label(shared):
    photo = shared / "images" / "photos" / "chelsea.png"
    model = mobilenetv3.create_model(weights=shared / "pretrained" / SMALL, dequantize=True).eval()
    transform = mobilenetv3.preprocessing(model)
    with torch.inference_mode():
        probabilities = model(transform(photo)).softmax(dim=1)[0]
    (index, name, probability), *_ = top_k(probabilities, 5)
    assert name in CATS and probability > 0.3
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875
    assert cfg["interpolation"] == "bilinear_tf" and cfg["mean"] == cfg["std"] == (0.5,) * 3
    assert cfg["label_set"].startswith("imagenet: 0 = background")
    assert cfg["source"] == str(shared / "pretrained" / SMALL)


def test_paths_images_and_arrays_give_the_same_batch(shared):
    photos = [shared / "images" / "photos" / name for name in ("chelsea.png", "coffee.png")]
    transform = mobilenetv3.preprocessing(shared / "pretrained" / SMALL)
    expected = torch.stack([preprocess_image(load_image(p), SLIM_EVAL) for p in photos])
    pil = [Image.open(p) for p in photos]
    arrays = [np.asarray(image.convert("RGB")) for image in pil]
    for images in (photos, [str(p) for p in photos], pil, arrays):
        assert torch.equal(transform(images), expected)
    assert transform(photos[0]).shape == (1, 3, 224, 224)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        transform(np.zeros((8, 8), dtype=np.float32))


def test_stored_preprocessing_travels_with_the_weights(tmp_path):
    """A model fine-tuned with timm's recipe: its .safetensors says so, and both the model's
    pretrained_cfg and the transform built from the file follow it."""
    path = tmp_path / "tuned.safetensors"
    save_safetensors(mobilenetv3.create_model("v3_small_0.35", num_classes=3), path,
                     extra={"preprocess": TIMM_IMAGENET.to_dict(), "labels": ["a", "b", "c"]})
    model = mobilenetv3.create_model(weights=path)
    cfg = model.pretrained_cfg
    assert cfg["interpolation"] == "pil_bicubic" and cfg["crop"] == "resize_then_crop"
    assert cfg["num_classes"] == 3 and cfg["label_set"] == "stored with the weights"
    assert mobilenetv3.preprocessing(path).preprocess == TIMM_IMAGENET
    assert mobilenetv3.preprocessing(model).preprocess == TIMM_IMAGENET
    random = mobilenetv3.create_model("v3_small_1.0").pretrained_cfg
    assert random["source"] is None and random["preprocess"] == SLIM_EVAL.to_dict()
