"""Training detection and segmentation heads: TF's losses and matcher on cases computed here by
hand or from the formulas of TF's documentation, then the trainer's mechanics on synthetic
shapes (loss goes down, two processes equal one, resume is bitwise identical)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import _assert_identical, _final_state, cli

from mobilenetv3 import create_model
from mobilenetv3.cli import main
from mobilenetv3.data.coco import read_coco
from mobilenetv3.data.resize import tf_resize_bilinear_hwc
from mobilenetv3.heads import boxes
from mobilenetv3.heads.losses import (
    IGNORED,
    UNMATCHED,
    SSDLoss,
    argmax_match,
    segmentation_loss,
    sigmoid_focal_loss,
    smooth_l1,
    ssd_loss,
)
from mobilenetv3.train import load_config, train
from mobilenetv3.train.config import ConfigError, bundled_config, read_file
from mobilenetv3.train.distributed import DistInfo
from mobilenetv3.train.head_data import CocoDetection, MaskFolder
from mobilenetv3.train.head_metrics import CocoMAP
from mobilenetv3.train.optim import LRSchedule
from mobilenetv3.train.synthetic import SyntheticShapes, draw

SCALES = (10.0, 10.0, 5.0, 5.0)
FAST = {"log_every": 0, "plot": False, "progress": False}

# -- box coder -----------------------------------------------------------------------------------


def test_encode_of_a_box_on_its_anchor() -> None:
    """A box half the anchor's size, same centre: ty = tx = 0, th = tw = 5 ln(1/2)."""
    anchor = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    code = boxes.encode(torch.tensor([[0.25, 0.25, 0.75, 0.75]]), anchor, SCALES)
    expected = [0.0, 0.0, 5 * math.log(0.5), 5 * math.log(0.5)]
    assert torch.allclose(code, torch.tensor([expected]), atol=1e-6)
    shifted = boxes.encode(torch.tensor([[0.5, 0.0, 1.5, 1.0]]), anchor, SCALES)
    assert torch.allclose(shifted, torch.tensor([[10 * 0.5, 0.0, 0.0, 0.0]]), atol=1e-5)


def test_encode_inverts_decode() -> None:
    gen = torch.Generator().manual_seed(0)
    centre, size = torch.rand(50, 2, generator=gen), 0.05 + 0.5 * torch.rand(50, 2, generator=gen)
    anchors = torch.cat([centre - size / 2, centre + size / 2], 1)
    codes = torch.randn(3, 50, 4, generator=gen)
    again = boxes.encode(boxes.decode(codes, anchors, SCALES), anchors, SCALES)
    error = (again - codes).abs().max().item()
    print(f"encode(decode(x)) - x: {error:.3g}")
    assert error < 2e-5


# -- matcher -------------------------------------------------------------------------------------


def test_argmax_matcher_thresholds_and_forced_matches() -> None:
    """Rows: boxes, columns: anchors (IoU). 0.5/0.5, force_match_for_each_row (the configs)."""
    loss = SSDLoss()
    sim = torch.tensor([[0.2, 0.1, 0.0, 0.6], [0.0, 0.3, 0.7, 0.1]])
    # anchors 0 and 1 below 0.5; anchor 2 to box 1 (0.7), anchor 3 to box 0 (0.6): each box's
    # best anchor is matched already, so forcing changes nothing
    assert argmax_match(sim, loss).tolist() == [UNMATCHED, UNMATCHED, 1, 0]
    sim = torch.tensor([[0.2, 0.1, 0.0], [0.0, 0.3, 0.45]])
    # box 0 forced onto anchor 0, box 1 onto anchor 2, both below 0.5
    assert argmax_match(sim, loss).tolist() == [0, UNMATCHED, 1]
    # two boxes whose best anchor is the same: TF gives it to the first (argmax of a one-hot
    # column); the second box then has no anchor at all
    sim = torch.tensor([[0.6, 0.3, 0.1], [0.55, 0.2, 0.45]])
    assert argmax_match(sim, loss).tolist() == [0, UNMATCHED, UNMATCHED]
    assert argmax_match(torch.zeros(0, 3), loss).tolist() == [UNMATCHED] * 3


def test_argmax_matcher_ignores_between_the_thresholds() -> None:
    loss = SSDLoss(matched_threshold=0.5, unmatched_threshold=0.4, force_match_for_each_row=False)
    sim = torch.tensor([[0.45, 0.6, 0.3, 0.5, 0.4]])
    assert argmax_match(sim, loss).tolist() == [IGNORED, 0, UNMATCHED, 0, IGNORED]


# -- losses --------------------------------------------------------------------------------------


def test_focal_loss_by_hand_and_by_the_paper_formula() -> None:
    """At logit 0 (p = 1/2): alpha_t (1/2)^2 ln 2; in general -alpha_t (1 - p_t)^gamma ln p_t
    (Lin et al., as TF's SigmoidFocalClassificationLoss documents it)."""
    half = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), 0.75, 2.0)
    assert torch.allclose(half, torch.tensor([0.75, 0.25]) * 0.25 * math.log(2), atol=1e-7)
    rng = np.random.default_rng(1)
    logits, targets = rng.normal(0, 3, (40, 5)), (rng.random((40, 5)) < 0.3).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    p_t = np.where(targets == 1, p, 1 - p)
    alpha_t = np.where(targets == 1, 0.75, 0.25)
    expected = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)
    got = sigmoid_focal_loss(torch.from_numpy(logits), torch.from_numpy(targets), 0.75, 2.0)
    assert np.allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_smooth_l1_by_hand() -> None:
    """Huber with delta 1: 0.5 x^2 inside, |x| - 0.5 outside."""
    got = smooth_l1(torch.tensor([0.5, -2.0, 1.0, 0.0]), torch.zeros(4), 1.0)
    assert got.tolist() == [0.125, 1.5, 0.5, 0.0]


def test_ssd_loss_of_one_box_by_hand() -> None:
    """Two anchors, one box of class 2 exactly on anchor 0: anchor 0 matches (codes 0, target
    one-hot [0, 0, 1]), anchor 1 is background (targets all 0, no box loss). Normalized by
    the one match; the localization sum also by the code size 4."""
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    codes = torch.tensor([[[0.5, -2.0, 0.0, 1.0], [9.0, 9.0, 9.0, 9.0]]])
    logits = torch.tensor([[[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]]])
    raw = {"box_encodings": codes, "class_logits": logits, "anchors": anchors}
    gt_boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])  # + padding row
    terms = ssd_loss(raw, gt_boxes, torch.tensor([[2, 0]]), SCALES, SSDLoss())

    def focal(z: float, t: float) -> float:
        p = 1 / (1 + math.exp(-z))
        p_t, alpha_t = (p, 0.75) if t else (1 - p, 0.25)
        return -alpha_t * (1 - p_t) ** 2 * math.log(p_t)

    classification = sum(focal(z, t) for z, t in zip([1.0, -1.0, 2.0], [0, 0, 1], strict=True))
    classification += sum(focal(z, 0) for z in [0.5, 3.0, -2.0])
    localization = (0.125 + 1.5 + 0.0 + 0.5) / 4
    assert terms.normalizer == 1.0 and terms.count == 1.0 and terms.correct == 1.0
    assert terms.total.item() == pytest.approx(localization + classification, rel=1e-6)


FIXTURE = Path(__file__).parent / "fixtures" / "train_losses.npz"
MATCHERS = {"zoo": SSDLoss(),
            "ignore": SSDLoss(unmatched_threshold=0.4, force_match_for_each_row=False)}  # fmt: skip


@pytest.mark.parametrize("matcher", sorted(MATCHERS))
def test_ssd_matches_and_losses_equal_tf(matcher: str) -> None:
    """TF's matcher, target assigner and losses run in TensorFlow (tools/fixtures/
    train_losses.py) on 300 random anchors, three images (4 boxes, two of them identical;
    6 boxes; none)."""
    tf = dict(np.load(FIXTURE))
    loss = MATCHERS[matcher]
    anchors = torch.from_numpy(tf["anchors"])
    gt_boxes, gt_classes = torch.from_numpy(tf["gt_boxes"]), torch.from_numpy(tf["gt_classes"])
    for i, (b, c) in enumerate(zip(gt_boxes, gt_classes, strict=True)):
        match = argmax_match(boxes.pairwise_iou(b[c > 0], anchors), loss)
        assert match.tolist() == tf[f"{matcher}_match"][i].tolist(), f"image {i}"
    raw = {"box_encodings": torch.from_numpy(tf["box_encodings"]), "anchors": anchors,
           "class_logits": torch.from_numpy(tf["class_logits"])}  # fmt: skip
    parts = {"localization": replace(loss, classification_weight=0.0),
             "classification": replace(loss, localization_weight=0.0)}
    for part, only in parts.items():
        terms = ssd_loss(raw, gt_boxes, gt_classes, SCALES, only)
        assert terms.normalizer == tf[f"{matcher}_num_matches"]
        ours, theirs = terms.total.item() / terms.normalizer, float(tf[f"{matcher}_{part}"])
        print(f"{matcher} {part}: ours {ours:.7g}, TF {theirs:.7g}")
        assert ours == pytest.approx(theirs, rel=1e-5)


def test_segmentation_loss_equals_deeplab() -> None:
    """DeepLab's loss in TensorFlow: [2, 3, 9, 13] logits upsampled to 33 x 49 labels, a fifth
    of the pixels labelled 255."""
    tf = dict(np.load(FIXTURE))
    logits = torch.from_numpy(tf["seg_logits"]).permute(0, 3, 1, 2)
    terms = segmentation_loss(logits, torch.from_numpy(tf["seg_labels"]), 255)
    ours = terms.total.item() / terms.normalizer
    print(f"segmentation loss: ours {ours:.7g}, DeepLab {float(tf['seg_loss']):.7g}")
    assert terms.normalizer == (tf["seg_labels"] != 255).sum()
    assert ours == pytest.approx(float(tf["seg_loss"]), rel=1e-5)


def test_segmentation_loss_skips_the_ignore_label() -> None:
    """Logits (2, 1) everywhere: class 0 costs ln(1 + e^-1), class 1 ln(1 + e); 255 nothing."""
    logits = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    labels = torch.tensor([[[0, 1], [255, 1]]])
    terms = segmentation_loss(logits, labels, 255)
    expected = math.log(1 + math.exp(-1)) + 2 * math.log(1 + math.e)
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    assert (terms.normalizer, terms.correct, terms.count) == (3.0, 1.0, 3.0)


# -- synthetic data ------------------------------------------------------------------------------


def test_synthetic_shapes_are_seeded_and_consistent() -> None:
    det = SyntheticShapes("detection", 4, 64, seed=3)
    seg = SyntheticShapes("segmentation", 4, 64, seed=3)
    image, target, _ = det[2]
    again, mask, _ = seg[2]
    assert torch.equal(image, again) and image.shape == (3, 64, 64)
    assert image.min() >= -1 and image.max() <= 1
    classes = target["classes"][target["classes"] > 0]
    assert 1 <= len(classes) <= 3 and set(mask.unique().tolist()) <= {0, 1, 2}
    # the last shape drawn is fully visible: its box holds its class in the mask
    last = len(classes) - 1
    ymin, xmin, ymax, xmax = (target["boxes"][last] * 64).round().long().tolist()
    assert (mask[ymin:ymax, xmin:xmax] == classes[last]).any()
    assert not torch.equal(det[1][0], det[2][0])


# -- the trainer ---------------------------------------------------------------------------------

TASKS = {"detection": "ssdlite_v3_small_0.35", "segmentation": "lraspp_v3_small_0.35"}


def _config(tmp_path: Path, task: str, **overrides: object):
    values = {"task": task, "model": TASKS[task], "data": "synthetic:16",
              "output": str(tmp_path / task), "image_size": 96, "batch_size": 8,
              "optimizer": "adamw", "lr": 0.003, "lr_reference_batch": None, "eps": 1e-8,
              "schedule": "constant", "ema_decay": 0.0, "weight_decay": 0.0, **FAST}  # fmt: skip
    return load_config(**{**values, **overrides})


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_few_steps_reduce_the_loss(tmp_path: Path, task: str) -> None:
    result = train(_config(tmp_path, task, epochs=3))
    records = map(json.loads, (result.run_dir / "log.jsonl").read_text().splitlines())
    losses = [round(r["loss"], 4) for r in records if r["event"] == "epoch"]
    print(f"{task} loss per epoch {losses}")
    assert result.step == 6
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.85 * losses[0]
    trained = create_model(weights=result.model_path)  # the model, its family from the file
    assert type(trained).__name__ == {"detection": "SSDLite", "segmentation": "LRASPP"}[task]
    state = _final_state(result.run_dir)["model"]
    _assert_identical(dict(trained.state_dict()), state, "model")
    assert trained.pretrained_info["labels"][-2:] == ["rectangle", "ellipse"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", sorted(TASKS))
def test_ddp_two_processes_match_one_process_with_twice_the_batch(tmp_path: Path,
                                                                  task: str) -> None:  # fmt: skip
    """The SSD loss is divided by the matches, the segmentation loss by the labelled pixels, of
    the whole global batch (summed over processes), so the two runs compute the same loss and
    gradients (sync BN, dropout-free)."""
    common = ["--task", task, "--model", TASKS[task], "--data", "synthetic:16",
              "--image-size", "96", "--max-steps", "2", "--sync-bn", "--no-progress",
              "--set", "log_every=0", "--set", "ema_decay=0", "--set", "lr=0.01",
              # SGD: TF's RMSProp turns float-summation noise into 4e-4 here (one process, 1 vs
              # 2 threads differ as much); SGD keeps it at 5e-7, so a DDP error shows
              "--set", "optimizer=sgd",
              "--set", "lr_reference_batch=null", "--set", "plot=false"]  # fmt: skip
    two = cli(*common, "--output", str(tmp_path / "two"), "--batch-size", "4", torchrun=2)
    assert two.returncode == 0, two.stderr[-2000:]
    # one process with twice the batch, in this process, from the two-process run's config
    saved = read_file(tmp_path / "two" / "config.yaml")
    train(load_config(**{**saved, "output": str(tmp_path / "one"), "batch_size": 8}))
    a, b = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    assert a["step"] == b["step"] == 2
    diff = max((a["model"][k].double() - b["model"][k].double()).abs().max().item()
               for k in a["model"] if a["model"][k].is_floating_point())  # fmt: skip
    print(f"{task} DDP max parameter difference {diff:.3g}")
    assert diff < 1e-5


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("data", ["synthetic", "folder"])
def test_resume_is_bitwise_identical(tmp_path: Path, data: str) -> None:
    """Across an epoch's end; on a folder, DeepLab's random scale, crop and flip included."""
    real = {}
    if data == "folder":
        images, masks = _mask_folder(tmp_path / "data", 4, 0)
        real = {"data": str(images), "masks": str(masks), "batch_size": 2}
    whole = _config(tmp_path / "whole", "segmentation", epochs=2, max_steps=3, ema_decay=0.9,
                    **real)  # fmt: skip
    train(whole)
    cut = _config(tmp_path / "cut", "segmentation", epochs=2, max_steps=1, ema_decay=0.9, **real)
    train(cut)
    cut.max_steps = 3
    train(cut, resume=True)
    a = _final_state(tmp_path / "whole" / "segmentation")
    b = _final_state(tmp_path / "cut" / "segmentation")
    for key in ("model", "ema", "optimizer", "scheduler", "ranks", "step", "epoch", "batch"):
        _assert_identical(a[key], b[key], key)


def test_wrong_model_or_data_for_the_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a detection model"):
        train(_config(tmp_path, "detection", model="lraspp_v3_small_0.35"))
    with pytest.raises(ConfigError, match="does not fit task classification"):
        load_config(model="lraspp_v3_small_0.35", data="x", output="y")
    done = cli("--task", "segmentation", "--model", TASKS["segmentation"], "--data",
               str(tmp_path), "--output", str(tmp_path / "run"), "--no-progress")  # fmt: skip
    assert done.returncode == 2 and "needs --masks" in done.stderr, done.stderr


# -- real data: COCO boxes, Cityscapes masks -----------------------------------------------------

SIDE = 64  # the test images' size


def _coco_folder(root: Path, count: int, seed: int) -> Path:
    """`count` PNGs of shapes on noise under root/, their boxes in root.json (COCO format,
    bbox in pixels from the drawing; category 3 has no box)."""
    root.mkdir(parents=True)
    images, annotations = [], []
    for i in range(count):
        image, _, found = draw(np.random.default_rng([seed, i]), SIDE)
        Image.fromarray(image).save(root / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": SIDE, "height": SIDE})
        for category, ymin, xmin, ymax, xmax in found.tolist():
            box = [xmin * SIDE, ymin * SIDE, (xmax - xmin) * SIDE, (ymax - ymin) * SIDE]
            annotations.append({"id": len(annotations) + 1, "image_id": 10 + i, "iscrowd": 0,
                                "category_id": int(category), "bbox": box,
                                "area": box[2] * box[3]})  # fmt: skip
    categories = [{"id": k, "name": n} for k, n in ((1, "rectangle"), (2, "ellipse"), (3, "none"))]
    path = root.with_suffix(".json")
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))  # fmt: skip
    return path


CITYSCAPES_IDS = np.array([7, 26, 24], np.uint8)  # road, car, person: train ids 0, 13, 11


def _mask_folder(root: Path, count: int, seed: int) -> tuple[Path, Path]:
    """Images <i>_leftImg8bit.png and masks <i>_gtFine_labelIds.png (Cityscapes label ids; the
    top rows 0, unlabeled: ignored)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(count):
        image, mask, _ = draw(np.random.default_rng([seed, i]), SIDE)
        ids = CITYSCAPES_IDS[mask]
        ids[:4] = 0
        Image.fromarray(image).save(images / f"{i}_leftImg8bit.png")
        Image.fromarray(ids).save(masks / f"{i}_gtFine_labelIds.png")
    return images, masks


def _real(tmp_path: Path, task: str, **overrides: object):
    return _config(tmp_path, task, max_steps=2, batch_size=2, **overrides)


def _pycocotools_ap(annotations: Path, detections: list[dict]) -> float:
    """COCO AP as pycocotools' documented use computes it (loadRes of the results list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return round(100 * evaluation.stats[0], 2)


@pytest.mark.usefixtures("one_thread")
def test_detection_trains_on_a_coco_folder_and_validates_with_coco_map(tmp_path: Path) -> None:
    """2 steps on 4 images, validation on 3 others: its mAP is pycocotools' on the saved
    model's own detections (model(x) on each image resized as in training, boxes scaled to the
    image's pixels)."""
    pytest.importorskip("pycocotools")
    train_json = _coco_folder(tmp_path / "train", 4, 0)
    val_json = _coco_folder(tmp_path / "val", 3, 1)
    result = train(_real(tmp_path, "detection", data=str(tmp_path / "train"),
                         annotations=str(train_json), val_data=str(tmp_path / "val"),
                         val_annotations=str(val_json)))  # fmt: skip
    model = create_model(weights=result.model_path).eval()
    assert model.num_classes == 3 and model.pretrained_info["labels"][-1] == "none"
    found = []
    for image in json.loads(val_json.read_text())["images"]:
        pixels = np.asarray(Image.open(tmp_path / "val" / image["file_name"]).convert("RGB"))
        resized = tf_resize_bilinear_hwc(pixels, (96, 96), half_pixel=False)
        with torch.no_grad():
            out = model(torch.from_numpy(resized).permute(2, 0, 1)[None] * (2 / 255) - 1)
        for j in range(int(out["num_detections"][0])):
            ymin, xmin, ymax, xmax = (out["detection_boxes"][0, j] * SIDE).tolist()
            found.append({"image_id": image["id"], "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                          "category_id": int(out["detection_classes"][0, j]),
                          "score": float(out["detection_scores"][0, j])})  # fmt: skip
    expected = _pycocotools_ap(val_json, found)
    print(f"val mAP {result.metrics['val_map']}, pycocotools {expected}")
    assert result.metrics["val_images"] == 3
    assert result.metrics["val_map"] == pytest.approx(expected, abs=0.011)


@pytest.mark.usefixtures("one_thread")
def test_segmentation_trains_on_a_mask_folder_and_validates_with_miou(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`train` on 4 crops for 2 steps, validation on 3 whole images: its mIoU (logged and
    printed) is what `evaluate --task segmentation` measures on the saved model."""
    images, masks = _mask_folder(tmp_path / "train", 4, 0)
    val_images, val_masks = _mask_folder(tmp_path / "val", 3, 1)
    run = tmp_path / "run"
    assert main(["train", "--task", "segmentation", "--model", TASKS["segmentation"],
                 "--data", str(images), "--masks", str(masks), "--val-data", str(val_images),
                 "--val-masks", str(val_masks), "--output", str(run), "--image-size", "96",
                 "--batch-size", "2", "--max-steps", "2", "--no-progress", "--set", "lr=0.02",
                 *(f"--set={k}={v}" for k, v in FAST.items() if k != "progress"),
                 "--set", "optimizer=adamw", "--set", "lr_reference_batch=null",
                 "--set", "ema_decay=0"]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    measured = json.loads((run / "log.jsonl").read_text().splitlines()[-1])["val_miou"]
    report = tmp_path / "evaluate.json"
    assert main(["evaluate", str(val_images), "--task", "segmentation", "--masks", str(val_masks),
                 "--weights", str(run / "model.safetensors"), "--json", str(report)]) == 0
    expected = json.loads(report.read_text())["miou"]
    print(f"val mIoU {measured}, evaluate {expected}")
    assert measured == expected and expected is not None
    assert f"val mIoU {expected:.2f}" in shown, shown


def _rectangle_image(path: Path, box: tuple[int, int, int, int]) -> None:
    """A 40 x 60 dark image (55, -0.57 in [-1, 1]) with a white rectangle at (top, left,
    bottom, right) pixels."""
    pixels = np.full((40, 60, 3), 55, np.uint8)
    top, left, bottom, right = box
    pixels[top:bottom, left:right] = 255
    Image.fromarray(pixels).save(path)


def test_the_flip_moves_boxes_and_masks_with_the_image(tmp_path: Path) -> None:
    """A white rectangle, rows 10..30, columns 5..20, of a 40 x 60 image: flipped or not, the
    box is where the white pixels are, and the mask is where they are (after DeepLab's random
    scale, padding and crop too: padding is 0 in the image and 255 in the mask)."""
    _rectangle_image(tmp_path / "a.png", (10, 5, 30, 20))
    coco = tmp_path / "a.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 60,
                                            "height": 40}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                 "bbox": [5, 10, 15, 20]}],
                                "categories": [{"id": 1, "name": "white"}]}))  # fmt: skip
    dataset = CocoDetection(read_coco(coco, tmp_path, 1), 60, seed=0, flip=True)
    flips = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        x, target, _ = dataset[0]
        white = (x > 0.9).all(0).nonzero()
        ymin, xmin, ymax, xmax = (target["boxes"][0] * 60).tolist()
        assert target["classes"][0] == 1 and (target["size"] == torch.tensor([40, 60])).all()
        assert white[:, 1].min() == round(xmin) and white[:, 1].max() == round(xmax) - 1
        assert white[:, 0].min() >= ymin and white[:, 0].max() < ymax
        flips.add(round(xmin))
    assert flips == {5, 40}  # 5 unflipped, 60 - 20 flipped

    Image.fromarray(np.where(np.asarray(Image.open(tmp_path / "a.png"))[..., 0] > 55, 26, 7)
                    .astype(np.uint8)).save(tmp_path / "a_mask.png")  # fmt: skip
    masks = MaskFolder([(tmp_path / "a.png", tmp_path / "a_mask.png")], False, seed=0, crop=48,
                       scale_range=(0.5, 2.0), flip=True)  # fmt: skip
    padded = 0
    for epoch in range(12):
        masks.set_epoch(epoch)
        x, labels, _ = masks[0]
        assert x.shape == (3, 48, 48) and labels.shape == (48, 48)
        pad = (x == 0).all(0)
        assert torch.equal(pad, labels == 255)
        car, road = labels == 13, labels == 0
        # the label is the nearest pixel's: the blend there is at least half that pixel's
        middle = (1 + 55 * 2 / 255 - 1) / 2
        assert (x[:, car] >= middle - 1e-6).all() and (x[:, road] <= middle + 1e-6).all()
        padded += int(pad.any())
    assert padded  # a scale of 0.5 gave an image smaller than the crop


def test_a_bad_annotation_file_given_to_train_is_one_clear_line(tmp_path: Path) -> None:
    _coco_folder(tmp_path / "data", 2, 0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    done = cli("--task", "detection", "--model", TASKS["detection"], "--data",
               str(tmp_path / "data"), "--annotations", str(bad), "--output",
               str(tmp_path / "run"), "--no-progress")  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert str(bad) in lines[0] and "categories" in lines[0] and "Traceback" not in done.stderr


def test_the_head_recipes_follow_their_sources() -> None:
    """ssdlite_zoo: the zoo config's momentum 0.9, l2 4e-5, BN decay 0.97, batch 512 and TF's
    cosine_decay_with_warmup (0.13333 rising to 0.4 over 2000 steps, cosine to 0 at 400000);
    lraspp_deeplab: DeepLab's poly (power 0.9, 90000 steps), crops of 769 scaled 0.5-2."""
    zoo = load_config(bundled_config("ssdlite_zoo"), data="d", output="o", annotations="a")
    assert (zoo.task, zoo.optimizer, zoo.momentum, zoo.weight_decay) == ("detection", "sgd", 0.9,
                                                                          4e-5)  # fmt: skip
    assert (zoo.bn_momentum, zoo.image_size, zoo.lr_reference_batch) == (0.03, 320, 512)
    schedule = LRSchedule(zoo, 118287 // 512)

    def tf_cosine(step: int) -> float:  # TF's cosine_decay_with_warmup, as documented
        if step < 2000:
            return 0.13333 + (0.4 - 0.13333) * step / 2000
        return 0.5 * 0.4 * (1 + math.cos(math.pi * (step - 2000) / (400000 - 2000)))

    for step in (0, 1000, 2000, 100000, 201000, 300000):
        assert 0.4 * schedule(step) == pytest.approx(tf_cosine(step), rel=1e-3, abs=2e-4), step
    deeplab = load_config(bundled_config("lraspp_deeplab"), data="d", output="o", masks="m")
    assert (deeplab.task, deeplab.image_size, deeplab.scale_range) == ("segmentation", 769,
                                                                       [0.5, 2.0])  # fmt: skip
    schedule = LRSchedule(deeplab, 2975 // 16)
    for step, rel in ((0, 1e-9), (45000, 2e-3), (80000, 1e-2)):  # 487 epochs: 90095 steps
        poly = 0.01 * (1 - step / 90000) ** 0.9  # tf.train.polynomial_decay, power 0.9
        assert 0.01 * schedule(step) == pytest.approx(poly, rel=rel), step


def test_without_pycocotools_detection_validation_says_why_there_is_no_map(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import fails, find_spec gives None
    coco = read_coco(_coco_folder(tmp_path / "val", 1, 0), tmp_path / "val", 3)
    metric = CocoMAP(lambda raw: pytest.fail("no detections are needed"), coco)
    metric.add({}, {"image_id": torch.tensor([10]), "size": torch.tensor([[SIDE, SIDE]])})
    result = metric.result(DistInfo(0, 1, 0, torch.device("cpu")))
    assert result["val_map"] is None and "pycocotools is not installed" in result["val_note"]
