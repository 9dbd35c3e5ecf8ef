"""`evaluate --task detection|segmentation`: COCO mAP against pycocotools' own evaluation of the
same detections file, hand-computable boxes and confusions, Cityscapes' label table, and one
clear line for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenetv3.cli import main
from mobilenetv3.data.cityscapes import LABEL_TO_TRAIN, TRAIN_NAMES
from mobilenetv3.data.coco import read_coco
from mobilenetv3.runtime.evaluate_tasks import (
    confusion,
    evaluate_detection,
    evaluate_segmentation,
    iou_summary,
)

FIXTURES = Path(__file__).parent / "fixtures"
DETECTOR = FIXTURES / "detection_ssdlite_v3_small" / "model.ckpt"  # 20 classes
SEGMENTER = FIXTURES / "segmentation_lraspp_v3_small" / "model.ckpt"  # 19 classes


def _noise(path: Path, height: int, width: int, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _coco_file(folder: Path, **changes) -> Path:
    """Three noise images, boxes of three categories (ids with gaps, as COCO's); the fixture's
    random detector finds class 15 in 11x9 boxes down the left edge, so category 15 has such
    boxes and the AP is not 0."""
    sizes = {1: (60, 80), 2: (96, 64), 7: (50, 50)}  # image id: (height, width)
    for image_id, (h, w) in sizes.items():
        _noise(folder / "images" / f"{image_id:012d}.png", h, w, image_id)
    boxes = [(1, 1, [5, 5, 30, 20]), (1, 3, [40, 10, 35, 45]), (2, 1, [0, 0, 64, 96]),
             (2, 13, [10, 20, 20, 20]), (7, 3, [1.5, 2.5, 40, 30]), (7, 13, [20, 20, 29, 29]),
             (7, 1, [0, 0, 10, 10])]  # fmt: skip
    boxes += [(i, 15, [0, y, 11, 9]) for i, (h, _) in sizes.items() for y in range(0, h - 9, 12)]
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.png", "width": w, "height": h}
                   for i, (h, w) in sizes.items()],  # fmt: skip
        "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0}
                        for n, (i, c, b) in enumerate(boxes, 1)],  # fmt: skip
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                       {"id": 13, "name": "stop sign"},
                       {"id": 15, "name": "bench"}],  # fmt: skip
    } | changes
    path = folder / "instances.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def pycocotools() -> None:
    """The [coco] extra (in [all]); missing, a skip that fails under CI=true."""
    pytest.importorskip("pycocotools")


def _pycocotools(annotations: Path, detections: Path) -> list[float]:
    """The 12 COCO metrics as pycocotools' own documented use computes them, in percent."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO(str(annotations))
    evaluation = COCOeval(truth, truth.loadRes(str(detections)), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return [None if s < 0 else round(100 * s, 2) for s in evaluation.stats]


@pytest.mark.usefixtures("pycocotools")
def test_detection_map_equals_pycocotools_on_the_written_detections(tmp_path: Path) -> None:
    annotations = _coco_file(tmp_path)
    found, out = tmp_path / "detections.json", tmp_path / "result.json"
    assert main(["evaluate", str(tmp_path / "images"), "--task", "detection", "--annotations",
                 str(annotations), "--weights", str(DETECTOR), "--detections", str(found),
                 "--json", str(out)]) == 0  # fmt: skip
    result, detections = json.loads(out.read_text()), json.loads(found.read_text())
    assert result["images"] == 3 and result["detections"] == len(detections) > 0
    assert {d["category_id"] for d in detections} <= {1, 3, 13, 15}  # the fixture: 1..20
    for d in detections:  # [x, y, w, h] inside the image the detector saw
        h, w = {1: (60, 80), 2: (96, 64), 7: (50, 50)}[d["image_id"]]
        x, y, bw, bh = d["bbox"]
        assert min(x, y) >= -0.01 and x + bw <= w + 0.02 and y + bh <= h + 0.02
    assert list(result["metrics"].values()) == _pycocotools(annotations, found)
    assert result["metrics"]["AP50"] > 0
    assert result["per_category_ap"]["bench"] > 0 == result["per_category_ap"]["person"]


def _one_box(tmp_path: Path, shift: float) -> dict:
    """One 40x40 box in a 100x100 image against one detection shifted right by `shift`."""
    _noise(tmp_path / "a.png", 100, 100, 0)
    data = {"images": [{"id": 5, "file_name": "a.png", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 2, "bbox": [10, 20, 40, 40]}],
            "categories": [{"id": 2, "name": "bicycle"}]}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(data))
    coco = read_coco(tmp_path / "a.json", tmp_path, num_classes=90)
    box = {"class": 2, "score": 0.9, "box": [10 + shift, 20, 50 + shift, 60]}  # xmin ymin xmax ymax
    wrong = {"class": 3, "score": 0.95, "box": [10, 20, 50, 60]}  # no category 3 in the file
    result, written = evaluate_detection(lambda path: [wrong, box], coco, progress=False)
    assert written == [{"image_id": 5, "category_id": 2, "bbox": [10 + shift, 20, 40, 40],
                        "score": 0.9}]  # fmt: skip
    return result["metrics"]


@pytest.mark.usefixtures("pycocotools")
def test_a_perfect_box_scores_100_and_a_box_of_iou_0_6_only_at_iou_0_5(tmp_path: Path) -> None:
    perfect = _one_box(tmp_path, 0)
    assert perfect["AP"] == perfect["AP50"] == perfect["AP75"] == perfect["AR100"] == 100.0
    assert perfect["AP_medium"] == 100.0 and perfect["AP_small"] is None  # 1600 px: medium
    shifted = _one_box(tmp_path, 10)  # overlap 30x40 = 1200, union 2000: IoU 0.6
    assert shifted["AP50"] == 100.0 and shifted["AP75"] == 0.0


def test_miou_of_a_hand_computed_confusion() -> None:
    truth = np.array([[0, 0, 1], [1, 255, 2]], dtype=np.uint8)
    predicted = np.array([[0, 1, 1], [1, 0, 1]], dtype=np.uint8)
    matrix = confusion(truth, predicted, 3)
    # class 0: TP 1, FN 1 (predicted 1), FP 0 -> 1/2; class 1: TP 2, FP 2 (truth 0 and 2) -> 2/4;
    # class 2: TP 0, FN 1 -> 0; the ignored pixel (predicted 0) counts nowhere
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    summary = iou_summary(matrix, ("a", "b", "c"))
    assert summary["per_class_iou"] == {"a": 50.0, "b": 50.0, "c": 0.0}
    assert summary["miou"] == round(100 / 3, 2) and summary["pixel_accuracy"] == 60.0
    absent = iou_summary(confusion(truth, truth, 4), "abcd")
    assert absent["per_class_iou"]["d"] is None and absent["miou"] == 100.0


def _numpy_miou(truths: list[np.ndarray], predictions: list[np.ndarray]) -> tuple[float, list]:
    """mIoU by counting set sizes per class over all pixels (not from a confusion matrix)."""
    truth, predicted = np.concatenate([t.ravel() for t in truths]), np.concatenate(
        [p.ravel() for p in predictions])  # fmt: skip
    valid = truth != 255
    ious = []
    for c in range(19):
        inter = np.sum((truth == c) & (predicted == c) & valid)
        union = np.sum(((truth == c) | (predicted == c)) & valid)
        ious.append(inter / union if union else None)
    present = [v for v in ious if v is not None]
    return round(100 * sum(present) / len(present), 2), ious


def _cityscapes(tmp_path: Path, n: int = 2) -> tuple[Path, Path, list[np.ndarray]]:
    rng = np.random.default_rng(3)
    images, masks, label_ids = tmp_path / "leftImg8bit", tmp_path / "gtFine", []
    for i in range(n):
        stem = f"city/city_{i:06d}_000019"
        _noise(images / f"{stem}_leftImg8bit.png", 48, 80, i)
        ids = rng.integers(0, 34, (48, 80), dtype=np.uint8)
        (masks / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids).save(masks / f"{stem}_gtFine_labelIds.png")
        label_ids.append(ids)
    return images, masks, label_ids


def test_segmentation_miou_equals_a_numpy_count_over_the_predicted_masks(tmp_path: Path) -> None:
    images, masks, label_ids = _cityscapes(tmp_path)
    out = tmp_path / "result.json"
    assert main(["evaluate", str(images), "--task", "segmentation", "--masks", str(masks),
                 "--weights", str(SEGMENTER), "--json", str(out)]) == 0  # fmt: skip
    assert main(["segment", str(images), "--weights", str(SEGMENTER), "--output",
                 str(tmp_path / "seg")]) == 0  # fmt: skip
    predictions = [np.asarray(Image.open(tmp_path / "seg" / f"city_{i:06d}_000019_leftImg8bit"
                                         "_mask.png")) for i in range(2)]  # fmt: skip
    truths = [LABEL_TO_TRAIN[ids] for ids in label_ids]
    result = json.loads(out.read_text())
    miou, ious = _numpy_miou(truths, predictions)
    assert result["miou"] == miou and result["images"] == 2
    assert list(result["per_class_iou"]) == list(TRAIN_NAMES)
    assert [v is None for v in result["per_class_iou"].values()] == [v is None for v in ious]


def test_cityscapes_label_ids_map_to_train_ids_as_cityscapes_scripts_table() -> None:
    # cityscapesScripts helpers/labels.py, ids 0..33: trainId (255 = ignored)
    table = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12,
                         13, 14, 15, 255, 255, 16, 17, 18]  # fmt: skip
    assert LABEL_TO_TRAIN[:34].tolist() == table
    assert TRAIN_NAMES[0] == "road" and TRAIN_NAMES[11] == "person" and TRAIN_NAMES[18] == "bicycle"


def test_ctrl_c_reports_the_images_done_as_partial(tmp_path: Path) -> None:
    images, masks, label_ids = _cityscapes(tmp_path, n=3)
    pairs = sorted(zip(sorted(images.rglob("*.png")), sorted(masks.rglob("*.png")), strict=True))
    calls = []

    def segment(path: Path) -> np.ndarray:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((48, 80), dtype=np.uint8)

    result = evaluate_segmentation(segment, pairs, progress=False)
    truth = LABEL_TO_TRAIN[label_ids[0]]
    assert result["partial"] and result["images"] == 1
    assert result["pixels"] == int((truth != 255).sum())
    road = np.mean(truth[truth != 255] == 0)  # everything predicted road: IoU = share of road
    assert result["per_class_iou"]["road"] == round(100 * float(road), 2)


BAD_COCO = {
    "image id": ({"annotations": [{"id": 1, "image_id": 4, "category_id": 1,
                                   "bbox": [1, 1, 2, 2]}]},  # fmt: skip
                 "annotation 1: image_id 4 is not among the file's images"),
    "category id": ({"annotations": [{"id": 1, "image_id": 1, "category_id": 2,
                                      "bbox": [1, 1, 2, 2]}]},  # fmt: skip
                    "annotation 1: category_id 2 is not among the file's categories"),
    "missing id": ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}]},
                   "annotation None: no int 'id' (got None)"),
    "box out of the image": ({"annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                               "bbox": [70, 1, 20, 2]}]},  # fmt: skip
                             "annotation 1: bbox [70, 1, 20, 2] is not [x, y, w, h] inside its "
                             "80x60 image"),
    "class beyond the detector": ({"categories": [{"id": 1, "name": "person"},
                                                  {"id": 91, "name": "x"}]},  # fmt: skip
                                  "category 91: a repeated id, or outside the detector's "
                                  "classes 1..20"),
    "image absent": ({"images": [{"id": 1, "file_name": "000000000001.png", "width": 80,
                                  "height": 60},
                                 {"id": 8, "file_name": "gone.jpg", "width": 8, "height": 8}],
                      "annotations": []},  # fmt: skip
                     "1 of 2 images are absent under"),
    "no categories": ({"categories": None}, "no categories list"),
}


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_a_bad_coco_file_is_one_clear_line(case: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    changes, message = BAD_COCO[case]
    annotations = _coco_file(tmp_path, **changes)
    code = main(["evaluate", str(tmp_path / "images"), "--task", "detection", "--annotations",
                 str(annotations), "--weights", str(DETECTOR)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{annotations}: " in err[0] and message in err[0]


def test_bad_segmentation_data_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, masks, _ = _cityscapes(tmp_path, n=1)
    [mask] = masks.rglob("*.png")
    args = ["evaluate", str(images), "--task", "segmentation", "--masks", str(masks),
            "--weights", str(SEGMENTER)]  # fmt: skip
    Image.fromarray(np.full((48, 80), 40, dtype=np.uint8)).save(mask)
    assert main(args) == 2
    assert "value 40 is no Cityscapes label id (0..33)" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 80), dtype=np.uint8)).save(mask)
    assert main(args) == 2
    assert "the mask is 80x40 pixels, its image" in capsys.readouterr().err
    mask.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its mask is absent (looked for" in err[0]
    assert main([*args[:-2], "--weights", str(DETECTOR)]) == 2
    assert "is not a segmentation model" in capsys.readouterr().err
