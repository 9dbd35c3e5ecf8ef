from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenetv3.data.datasets import (
    BadSample,
    DatasetError,
    ImageDataset,
    collate_skip_none,
    list_samples,
    make_loader,
)
from mobilenetv3.data.labels import imagenet_labels
from mobilenetv3.data.preprocess import SLIM_EVAL

TENCH, GOLDFISH = "n01440764", "n01443537"  # slim indices 1, 2


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_imagenet_layout(tmp_path: Path) -> None:
    _img(tmp_path / TENCH / "a.JPEG")
    _img(tmp_path / TENCH / "b.jpg")
    _img(tmp_path / GOLDFISH / "c.png")
    (tmp_path / GOLDFISH / "readme.txt").write_text("not an image")
    samples = list_samples(tmp_path)
    assert [(p.name, i) for p, i in samples] == [("a.JPEG", 1), ("b.jpg", 1), ("c.png", 2)]
    assert [i for _, i in list_samples(tmp_path, num_classes=1000)] == [0, 0, 1]


def test_flat_synset_folder(tmp_path: Path) -> None:
    _img(tmp_path / f"{GOLDFISH}_goldfish.JPEG")
    _img(tmp_path / f"{TENCH}_tench.JPEG")
    samples = list_samples(tmp_path)
    assert [(p.name, i) for p, i in samples] == [
        (f"{TENCH}_tench.JPEG", 1),
        (f"{GOLDFISH}_goldfish.JPEG", 2),
    ]


def test_class_name_folders(tmp_path: Path) -> None:
    labels = ["cat", "dog", "bird"]
    _img(tmp_path / "dog" / "x.png")
    _img(tmp_path / "bird" / "y.png")
    assert [i for _, i in list_samples(tmp_path, labels=labels)] == [2, 1]
    # with ImageNet's 1001 names
    imnet = imagenet_labels(1001)
    _img(tmp_path / "in" / "goldfish, Carassius auratus" / "z.png")
    assert list_samples(tmp_path / "in", labels=imnet)[0][1] == 2


def test_list_file(tmp_path: Path) -> None:
    _img(tmp_path / "imgs" / "one.png")
    _img(tmp_path / "imgs" / "two words.png")
    listing = tmp_path / "val.txt"
    listing.write_text(f"# comment\nimgs/one.png 5\n\nimgs/two words.png {GOLDFISH}\n")
    samples = list_samples(listing)
    assert samples == [(tmp_path / "imgs/one.png", 5), (tmp_path / "imgs/two words.png", 2)]
    assert list_samples(listing, num_classes=1000)[1][1] == 1


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        list_samples(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        list_samples(tmp_path / "empty")
    (tmp_path / "emptyclasses" / TENCH).mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        list_samples(tmp_path / "emptyclasses")
    _img(tmp_path / "badsyn" / "n99999999" / "a.png")
    with pytest.raises(DatasetError, match="n99999999"):
        list_samples(tmp_path / "badsyn")
    _img(tmp_path / "badflat" / "n99999999_x.png")
    with pytest.raises(DatasetError, match="n99999999"):
        list_samples(tmp_path / "badflat")
    _img(tmp_path / "noname" / "photo.png")
    with pytest.raises(DatasetError, match="photo.png"):
        list_samples(tmp_path / "noname")
    _img(tmp_path / "cls" / "zebra" / "a.png")
    with pytest.raises(DatasetError, match="zebra"):
        list_samples(tmp_path / "cls", labels=["cat", "dog"])
    with pytest.raises(DatasetError, match="pass the model's labels"):
        list_samples(tmp_path / "cls")
    _img(tmp_path / "amb" / "crane" / "a.png")
    with pytest.raises(DatasetError, match="ambiguous"):
        list_samples(tmp_path / "amb", labels=imagenet_labels())
    bad_list = tmp_path / "bad.txt"
    cases = [
        ("a.png n99999999\n", "n99999999"),
        ("a.png 1001\n", "out of range"),
        ("a.png\n", "expected"),
        ("a.png tench\n", "neither"),
        ("\n", "no samples"),
    ]
    for content, msg in cases:
        bad_list.write_text(content)
        with pytest.raises(DatasetError, match=msg):
            list_samples(bad_list)
    assert issubclass(DatasetError, ValueError)


def test_sample_folder_indices(shared: Path) -> None:
    samples = list_samples(shared / "images" / "imagenet-samples")
    assert len(samples) == 1000
    assert sorted(i for _, i in samples) == list(range(1, 1001))
    labels = imagenet_labels(1001)
    by_name = {p.name: i for p, i in samples}
    assert by_name["n01440764_tench.JPEG"] == 1 and labels[1].startswith("tench")
    # the file name's class words match the label's first name for every sample
    for path, index in samples:
        words = path.stem.split("_", 1)[1].replace("_", " ").lower()
        first = labels[index].split(",")[0].lower()
        assert words.replace("'", "").replace("-", " ")[:4] == first.replace("'", "").replace(
            "-", " ")[:4], (path.name, labels[index])


def _dataset_with_bad(tmp_path: Path, skip_bad: bool) -> ImageDataset:
    good = [_img(tmp_path / f"g{i}.png", seed=i) for i in range(5)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    samples = [(good[0], 1), (good[1], 2), (bad, 3), (good[2], 4), (good[3], 5), (good[4], 6)]
    return ImageDataset(samples, SLIM_EVAL, skip_bad=skip_bad)


def test_image_dataset_item_and_errors(tmp_path: Path) -> None:
    ds = _dataset_with_bad(tmp_path, skip_bad=True)
    x, label, index = ds[1]
    assert x.shape == (3, 224, 224) and label == 2 and index == 1
    marker = ds[2]
    assert isinstance(marker, BadSample) and marker.index == 2 and "bad.jpg" in marker.error
    strict = _dataset_with_bad(tmp_path, skip_bad=False)
    with pytest.raises(ValueError, match="bad.jpg"):
        strict[2]


def test_collate_skip_none() -> None:
    good = (torch.zeros(3, 4, 4), 7, 0)
    batch = collate_skip_none([good, BadSample(1, "x", "broken"), None])
    assert batch.images.shape == (1, 3, 4, 4) and batch.labels.tolist() == [7]
    assert batch.indices.tolist() == [0] and len(batch.skipped) == 2
    empty = collate_skip_none([BadSample(1, "x", "broken")])
    assert empty.images.shape[0] == 0 and len(empty.skipped) == 1


@pytest.mark.parametrize("backend,workers", [("threads", 0), ("threads", 2), ("processes", 0),
                                             ("processes", 2)])
def test_loaders_count_bad_and_keep_order(tmp_path: Path, backend: str, workers: int) -> None:
    ds = _dataset_with_bad(tmp_path, skip_bad=True)
    batches = list(make_loader(ds, batch_size=4, workers=workers, backend=backend))
    assert len(batches) == 2
    indices = torch.cat([b.indices for b in batches]).tolist()
    labels = torch.cat([b.labels for b in batches]).tolist()
    assert indices == [0, 1, 3, 4, 5] and labels == [1, 2, 4, 5, 6]
    skipped = [s for b in batches for s in b.skipped]
    assert [s.index for s in skipped] == [2]
    torch.testing.assert_close(batches[1].images[0], ds[4][0])


def test_make_loader_rejects_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        make_loader(ImageDataset([]), backend="gpu")


def test_training_and_evaluation_list_the_same_images(tmp_path: Path) -> None:
    """One suffix list: training once ignored .gif/.pgm files that evaluation read."""
    from mobilenetv3.train.data import list_image_folder

    _img(tmp_path / "cat" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "b.gif")
    (tmp_path / "dog").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "dog" / "c.pgm")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    train, classes = list_image_folder(tmp_path)
    evaluation = list_samples(tmp_path, labels=classes)
    assert [Path(p).name for p, _ in train] == ["a.png", "b.gif", "c.pgm"]
    assert [(Path(p).name, i) for p, i in train] == [(p.name, i) for p, i in evaluation]


def test_one_error_type_for_unusable_image_folders(tmp_path: Path) -> None:
    """Training and evaluation refuse a folder without images with the same error type."""
    from mobilenetv3.train.data import list_image_folder

    (tmp_path / "empty_class").mkdir()
    for listing in (list_image_folder, list_samples):
        with pytest.raises(DatasetError):
            listing(tmp_path)


def test_training_transform_draws_per_sample(tmp_path: Path) -> None:
    """The training form of `ImageDataset`: each (seed, epoch, index) has its own generator, so
    a sample's augmentation does not depend on which worker or process draws it."""
    samples = [(_img(tmp_path / f"{i}.png", seed=i), 0) for i in range(2)]

    def jitter(image: Image.Image, rng) -> torch.Tensor:
        return torch.full((1,), rng.random())

    data = ImageDataset(samples, transform=jitter, seed=7)
    first = [data[i][0].item() for i in (1, 0)]
    assert first[::-1] == [data[i][0].item() for i in (0, 1)]  # order of draws irrelevant
    data.set_epoch(1)
    assert data[0][0].item() != first[1]
    assert data[0][1:] == (0, 0)
