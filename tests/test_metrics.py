"""``diffseg.detect.metrics`` against torchmetrics, on random maps, perfect maps and a hand-worked case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import (BinaryAUROC, MulticlassAccuracy, MulticlassF1Score,
                                         MulticlassJaccardIndex)

from diffseg.detect.metrics import Accumulator, image_score

TOL = 1e-6  # the summary rounds to 6 decimals


def _random_maps(n_classes: int, seed: int, n_images: int = 6, size: int = 24):
    """Truth and prediction maps where every class occurs; every other image is never edited."""
    rng = np.random.default_rng(seed)
    truths, preds, probs = [], [], []
    for i in range(n_images):
        truth = np.zeros((size, size), np.int64)
        if i % 2 == 0:
            truth = rng.integers(0, n_classes, (size, size))
        truths.append(truth)
        preds.append(rng.integers(0, n_classes, (size, size)))
        probs.append(rng.random((size, size)))
    return truths, preds, probs


def _accumulate(classes, truths, preds, probs) -> dict:
    acc = Accumulator(classes)
    for t, p, e in zip(truths, preds, probs):
        acc.add(t, p, e)
    return acc.summary()


@pytest.mark.parametrize("n_classes, seed", [(2, 0), (5, 1), (9, 2)])
def test_pixel_metrics_agree_with_torchmetrics(n_classes, seed):
    classes = ["authentic"] + [f"g{k}" for k in range(1, n_classes)]
    truths, preds, probs = _random_maps(n_classes, seed)
    ours = _accumulate(classes, truths, preds, probs)
    truth, pred = torch.from_numpy(np.stack(truths)), torch.from_numpy(np.stack(preds))

    iou = MulticlassJaccardIndex(num_classes=n_classes, average=None)(pred, truth).numpy()
    assert np.allclose([ours["per_class_iou"][c] for c in classes], iou, atol=TOL)
    miou = MulticlassJaccardIndex(num_classes=n_classes, average="macro")(pred, truth).item()
    assert ours["miou"] == pytest.approx(miou, abs=TOL)
    accuracy = MulticlassAccuracy(num_classes=n_classes, average="micro")(pred, truth).item()
    assert ours["pixel_accuracy"] == pytest.approx(accuracy, abs=TOL)
    f1 = MulticlassF1Score(num_classes=n_classes, average=None)(pred, truth).numpy()
    assert np.allclose([ours["per_class_f1"][c] for c in classes], f1, atol=TOL)
    assert ours["mean_f1"] == pytest.approx(float(f1.mean()), abs=TOL)


def test_detection_auc_agrees_with_torchmetrics():
    truths, preds, probs = _random_maps(4, seed=3, n_images=12)
    ours = _accumulate(["authentic", "a", "b", "c"], truths, preds, probs)
    scores = torch.tensor([image_score(e) for e in probs], dtype=torch.float64)
    edited = torch.tensor([bool((t > 0).any()) for t in truths]).long()
    assert ours["detection_auc"] == pytest.approx(BinaryAUROC()(scores, edited).item(), abs=TOL)
    assert ours["n_images"] == 12 and ours["n_edited"] == 6


def test_ground_truth_as_prediction_is_perfect():
    classes = ["authentic", "sd2", "sdxl", "flux"]
    truths, _, _ = _random_maps(len(classes), seed=4)
    # The edited probability of a perfect detector: 1 on edited pixels, 0 elsewhere.
    ours = _accumulate(classes, truths, truths, [(t > 0).astype(np.float64) for t in truths])
    assert ours["miou"] == 1.0 and ours["pixel_accuracy"] == 1.0 and ours["mean_f1"] == 1.0
    assert ours["detection_auc"] == 1.0 and ours["detection_accuracy"] == 1.0
    assert ours["attribution_accuracy"] == 1.0


def test_all_authentic_prediction_by_hand():
    """Two 4x4 images. A: 4 pixels sd2, 2 pixels sdxl, 10 authentic. B: never edited (16 authentic).

    Predicting "authentic" everywhere, with edited probability 0, gives the confusion matrix
    rows truth / columns prediction [[26, 0, 0], [4, 0, 0], [2, 0, 0]] (32 pixels), hence:
    IoU authentic = 26 / (32 + 26 - 26) = 0.8125; IoU sd2 = 0 / 4 = 0; IoU sdxl = 0 / 2 = 0;
    mIoU = 0.8125 / 3 = 0.2708333; pixel accuracy = 26 / 32 = 0.8125;
    F1 authentic = 2 * 26 / (32 + 26) = 52 / 58 = 0.8965517; F1 sd2 = F1 sdxl = 0; mean F1 = 0.2988506.
    Both image scores are 0 < 0.5, so A (edited) is missed and B is right: detection accuracy 0.5; the
    tied scores give AUC 0.5. A's dominant class is sd2 (4 > 2 pixels), predicted authentic: attribution 0.
    """
    a = np.zeros((4, 4), np.int64)
    a[0, :4] = 1
    a[1, :2] = 2
    b = np.zeros((4, 4), np.int64)
    zeros = np.zeros((4, 4))
    ours = _accumulate(["authentic", "sd2", "sdxl"], [a, b], [np.zeros_like(a), np.zeros_like(b)], [zeros, zeros])
    assert ours["per_class_iou"] == {"authentic": 0.8125, "sd2": 0.0, "sdxl": 0.0}
    assert ours["miou"] == pytest.approx(0.8125 / 3, abs=TOL)
    assert ours["pixel_accuracy"] == 0.8125
    assert ours["per_class_f1"]["authentic"] == pytest.approx(52 / 58, abs=TOL)
    assert ours["per_class_f1"]["sd2"] == 0.0 and ours["per_class_f1"]["sdxl"] == 0.0
    assert ours["mean_f1"] == pytest.approx(52 / 58 / 3, abs=TOL)
    assert ours["detection_accuracy"] == 0.5 and ours["detection_auc"] == 0.5
    assert ours["attribution_accuracy"] == 0.0
    assert ours["n_images"] == 2 and ours["n_edited"] == 1
