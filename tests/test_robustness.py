"""Robustness: distortions at full size, the label never touched, predictions back at the label's size,
numeric level order in the metric file and the plot rows, and scores counted by hand with a stub detector."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_params
from dataset_fixture import build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import distortions, evaluate, robustness, scoring, train, zoo
from test_crossgen import Bright, write_dataset

CLASSES = ["authentic", "sd2", "sdxl"]
RED, GREEN = 0, 1  # Bright reads sd2 from the red channel and sdxl from the green one
# Test images of 32 x 32 (the working size too). t1: one sd2 column (column 5, 32 px); t2: an sdxl band,
# columns 16:24 of every row (256 px); t3: never edited. Train/val images only make the manifest realistic.
ITEMS = [
    {"id": "t1", "split": "test", "generators": "sd2", "label": {1: [(0, 32, 5, 6)]}, "white": {RED: [(0, 32, 5, 6)]}},
    {"id": "t2", "split": "test", "generators": "sdxl", "label": {2: [(0, 32, 16, 24)]},
     "white": {GREEN: [(0, 32, 16, 24)]}},
    {"id": "t3", "split": "test"},
    {"id": "u1", "split": "train", "generators": "sd2", "label": {1: [(0, 4, 0, 4)]}, "white": {RED: [(0, 4, 0, 4)]}},
    {"id": "v1", "split": "val"},
]


@pytest.fixture
def tiny(workdir):
    return write_dataset(workdir / "data" / "dataset", CLASSES, ITEMS)


@pytest.mark.parametrize("kind, level", [("jpeg", 30), ("resize", 0.5), ("blur", 2.0), ("noise", 10.0)])
def test_distortions_change_the_image_deterministically(kind, level):
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = distortions.distortion(kind, level)(image)
    assert out.dtype == np.uint8 and out.shape == ((20, 30, 3) if kind == "resize" else (40, 60, 3))
    if kind != "resize":
        assert not np.array_equal(out, image)
    assert np.array_equal(out, distortions.DISTORTIONS[kind](image, level))


def test_resize_works_on_the_full_size_image():
    image = np.zeros((40, 60, 3), np.uint8)
    assert distortions.resize(image, 0.5).shape == (20, 30, 3)
    assert distortions.resize(image, 1.5).shape == (60, 90, 3)
    assert distortions.resize(image, 0.75).shape == (30, 45, 3)


def test_levels_in_numeric_order():
    assert distortions.ordered_levels([10.0, 5.0, 1.5]) == [1.5, 5.0, 10.0]
    assert distortions.ordered_levels([90, 50, 70, 90]) == [50, 70, 90]
    assert [distortions.level_key(v) for v in [1.5, 5.0, 10.0, 90, 0.75]] == ["1.5", "5.0", "10.0", "90", "0.75"]


def test_distorting_a_full_size_image_keeps_the_label_untouched(workdir):
    root = write_dataset(workdir / "ds", CLASSES, [
        {"id": "x", "split": "test", "generators": "sd2", "size": (40, 60), "label": {1: [(3, 17, 5, 29)]},
         "white": [(3, 17, 5, 29)]},
        {"id": "y", "split": "train"}])
    data = records.StateDir(root)
    stored = records.read_gray(data.label_path("x"))
    for kind, level in [("resize", 0.5), ("resize", 1.5), ("jpeg", 50), ("blur", 2.0), ("noise", 10.0)]:
        items = robustness.distorted_test_split(root, distortions.distortion(kind, level))
        assert len(items) == 1
        sample = items[0]
        assert sample.image_id == "x"
        assert sample.image.shape == {0.5: (20, 30, 3), 1.5: (60, 90, 3)}.get(level, (40, 60, 3))
        assert sample.truth.shape == (40, 60) and np.array_equal(sample.truth, stored)
        assert int((sample.truth == 1).sum()) == 14 * 24
    assert np.array_equal(robustness.distorted_test_split(root, None)[0].image, data.image("x"))


def test_prediction_on_a_resized_image_comes_back_at_the_label_size(workdir):
    root = write_dataset(workdir / "ds", CLASSES, [
        {"id": "x", "split": "test", "generators": "sd2", "size": (40, 60), "label": {1: [(0, 40, 0, 30)]},
         "white": {RED: [(0, 40, 0, 30)]}}])  # left half sd2
    shapes = {}

    def seen(image_id, probs):
        shapes[image_id] = probs.shape
        # far from the border each half keeps its class after half size and back
        assert (probs[0][:, :24] < 0.01).all() and (probs[0][:, 36:] > 0.99).all()
        assert np.allclose(probs.sum(0), 1.0, atol=1e-5)

    (stats,) = robustness.score(Bright(3), root, "attribution", distortions.distortion("resize", 0.5), 32, "cpu", 4,
                                on_prediction=seen)
    assert shapes == {"x": (3, 40, 60)}
    assert stats.tp + stats.fn == 40 * 30 and stats.tp + stats.fp + stats.fn + stats.tn == 40 * 60


def test_curve_rows_sorted_by_level():
    m = {k: {"value": v, "low": None, "high": None} for k, v in [("iou_edited", 0.5), ("miou", 0.4),
                                                                   ("detection_auc", 0.9)]}
    rows = robustness.curve_rows({"10.0": m, "5.0": m, "1.5": m})
    assert [r["level"] for r in rows] == [1.5, 5.0, 10.0]
    assert rows[0] == {"level": 1.5, "iou_edited": 0.5, "miou": 0.4, "detection_auc": 0.9}


def test_robustness_scores_at_the_label_size_in_numeric_order(tiny, workdir, monkeypatch):
    """Clean: every white pixel is found with the right generator -> edited IoU 1, mIoU 1, AUC 1.
    Noise up to std 10 moves no pixel across 128 (0 + noise stays far below, 255 - noise far above), so
    every noise level is exact too. Resize 0.5: t1's one-pixel sd2 column is averaged with its black
    neighbours (at most 3/8 of white at half size, so P(edited) < 0.1) and read as authentic; t2's band has
    only vertical edges at even columns, which half size blurs to 1/8 and 7/8 of green on either side, and
    the probabilities brought back to 32 columns cross 0.5 exactly there -> TP 256, FN 32, FP 0, edited IoU
    256/288 = 8/9; the label keeps its 288 edited pixels (the old code resized it with the image). mIoU:
    authentic 2784/2816 (t1's 32 missed pixels predicted authentic), sd2 0/32, sdxl 256/256 ->
    (2784/2816 + 0 + 1) / 3. t1 (faint column) still scores above t3 (black): detection AUC 1.
    """
    p = params_mod.load(write_params(workdir, {
        "detect": {"dataset": "data/dataset", "image_size": 32, "batch_size": 2},
        "robustness": {"jpeg": [90], "resize": [0.5], "blur": [1.0], "noise": [10.0, 5.0, 1.5]}}))
    config = {"task": "attribution", "classes": CLASSES, "image_size": 32}
    monkeypatch.setattr(zoo, "load", lambda folder, device="cpu": (Bright(3), config))
    monkeypatch.setattr(scoring, "N_BOOT", 200)  # the values asserted do not depend on the resamples
    metrics_path, plots = workdir / "metrics" / "robustness" / "stub.json", workdir / "curves" / "stub"
    result = robustness.run(p, "stub", metrics_path, plots)

    written = json.loads(metrics_path.read_text())  # json keeps the file's key order
    assert written == result
    assert list(written) == ["detector", "task", "clean", "jpeg", "resize", "blur", "noise"]
    assert list(written["noise"]) == ["1.5", "5.0", "10.0"]
    assert list(written["clean"]) == ["iou_edited", "miou", "detection_auc"]
    rows = records.read_json(plots / "noise.json")
    assert [r["level"] for r in rows] == [1.5, 5.0, 10.0]
    assert sorted(p.name for p in plots.iterdir()) == ["blur.json", "jpeg.json", "noise.json", "resize.json"]

    def values(m):
        return [m[k]["value"] for k in ("iou_edited", "miou", "detection_auc")]

    assert values(written["clean"]) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    for level in ("1.5", "5.0", "10.0"):
        assert values(written["noise"][level]) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert values(written["resize"]["0.5"]) == pytest.approx([8 / 9, (2784 / 2816 + 0 + 1) / 3, 1.0], abs=1e-6)
    assert rows[0] == {"level": 1.5, "iou_edited": 1.0, "miou": 1.0, "detection_auc": 1.0}


def test_resize_half_keeps_the_truth_pixels(tiny):
    """Per image at resize 0.5: truth edited pixels = TP + FN stay 32 (t1) and 256 (t2)."""
    stats = robustness.score(Bright(3), tiny, "attribution", distortions.distortion("resize", 0.5), 32, "cpu", 2)
    assert [(s.image_id, s.tp, s.fp, s.fn) for s in stats] == [("t1", 0, 0, 32), ("t2", 256, 0, 0), ("t3", 0, 0, 0)]


def test_clean_block_of_a_trained_checkpoint_equals_evaluate(workdir, monkeypatch):
    """Same test images, same scoring, evaluate's bootstrap seed: the clean row is the evaluation itself.
    A distortion without levels is left out of the file."""
    monkeypatch.setattr(scoring, "N_BOOT", 100)  # both stages read it: equality holds for any count
    build_dataset(workdir / "data" / "dataset")
    p = params_mod.load(write_params(workdir, {
        "detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 2, "batch_size": 4},
        "robustness": {"jpeg": [], "resize": [1.5, 0.5], "blur": [], "noise": []}}))
    train.run(p, "segformer", workdir / "models" / "detectors" / "segformer", workdir / "log")
    ev = evaluate.run(p, "segformer", workdir / "eval.json", workdir / "confusion.json", workdir / "predictions")
    robust = robustness.run(p, "segformer", workdir / "robust.json", workdir / "curves")
    assert (robust["detector"], robust["task"]) == ("segformer", "attribution")
    assert robust["clean"] == {"iou_edited": ev["binary"]["iou_edited"], "miou": ev["attribution"]["miou"],
                               "detection_auc": ev["binary"]["detection_auc"]}
    assert list(robust) == ["detector", "task", "clean", "resize"] and list(robust["resize"]) == ["0.5", "1.5"]
    assert [r["level"] for r in records.read_json(workdir / "curves" / "resize.json")] == [0.5, 1.5]
    assert sorted(f.name for f in (workdir / "curves").iterdir()) == ["resize.json"]
