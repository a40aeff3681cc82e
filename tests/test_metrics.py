"""``diffseg.detect.metrics`` against torchmetrics and sklearn, on random maps, perfect maps and hand-worked cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import (BinaryAUROC, MulticlassAccuracy, MulticlassF1Score,
                                         MulticlassJaccardIndex)

from sklearn.metrics import average_precision_score, roc_auc_score

from diffseg.detect.metrics import (Accumulator, attribution_accuracy, attribution_counts, attribution_pred,
                                    best_threshold, bin_edges, binary_view, edited_histograms,
                                    f1_at_threshold, histogram_ap, histogram_auc, image_iou_f1, image_level,
                                    image_score, tpr_at_fpr)

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


def _probs(*pixels: list[float]) -> np.ndarray:
    """Class probabilities (C, 1, W) with one column per pixel."""
    return np.array(pixels, np.float64).T[:, None, :]


def test_binary_view_sums_the_generators():
    """Pixel A: p = [0.30, 0.10, 0.10, 0.16, 0.10, 0.10, 0.04, 0.10]; argmax is authentic (0.30), yet the
    generators hold 0.70 >= 0.5, so A is edited and attributed to the strongest generator, 3.
    Pixel B: p = [0.60, 0.40, 0, ...]: P(edited) = 0.40, authentic, attribution 0."""
    probs = _probs([0.30, 0.10, 0.10, 0.16, 0.10, 0.10, 0.04, 0.10], [0.60, 0.40, 0, 0, 0, 0, 0, 0])
    assert probs.argmax(axis=0)[0, 0] == 0
    edited_prob, edited = binary_view(probs)
    assert edited_prob[0] == pytest.approx([0.70, 0.40], abs=1e-12)
    assert edited.tolist() == [[True, False]]
    assert attribution_pred(probs).tolist() == [[3, 0]]
    assert attribution_pred(probs).dtype == np.uint8
    assert image_score(edited_prob) == pytest.approx(0.70)  # top 1% of 2 pixels = the larger one


def test_attribution_right_generator_in_the_wrong_place_scores_nothing():
    truth = np.array([[1, 1, 0, 0]], np.uint8)
    pred = np.array([[0, 0, 1, 1]], np.uint8)
    counts = attribution_counts(truth, pred, 4)
    assert counts.sum() == 0 and attribution_accuracy(counts) is None
    # Where it overlaps another generator's edit, the pixel counts, as a wrong attribution (truth 2, said 1).
    counts = attribution_counts(np.array([[2, 2, 0, 0]], np.uint8), np.array([[0, 1, 1, 0]], np.uint8), 4)
    assert counts.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]] and attribution_accuracy(counts) == 0.0


def test_attribution_over_correctly_found_pixels_by_hand():
    """Truth [1, 1, 2, 0, 3], prediction [1, 2, 2, 1, 0]: pixel 4 is a false alarm and pixel 5 a miss,
    so three pixels count: (1 -> 1), (1 -> 2), (2 -> 2); two right, accuracy 2/3."""
    truth = np.array([[1, 1, 2, 0, 3]], np.uint8)
    pred = np.array([[1, 2, 2, 1, 0]], np.uint8)
    counts = attribution_counts(truth, pred, 4)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert attribution_accuracy(counts) == pytest.approx(2 / 3)


def test_image_iou_f1_by_hand():
    """Truth [[1 1 0] [0 1 0]], prediction [[1 0 0] [1 1 1]]: TP 2 ((0,0), (1,1)), FP 2 ((1,0), (1,2)),
    FN 1 ((0,1)); IoU = 2 / 5 = 0.4, F1 = 2*2 / (2*2 + 2 + 1) = 4/7."""
    truth = np.array([[1, 1, 0], [0, 1, 0]], bool)
    pred = np.array([[1, 0, 0], [1, 1, 1]], bool)
    iou, f1 = image_iou_f1(truth, pred)
    assert iou == pytest.approx(0.4) and f1 == pytest.approx(4 / 7)
    empty = np.zeros((2, 3), bool)
    assert image_iou_f1(empty, empty) == (1.0, 1.0)
    assert image_iou_f1(empty, empty, both_empty=0.0) == (0.0, 0.0)
    assert image_iou_f1(empty, pred) == (0.0, 0.0) and image_iou_f1(truth, empty) == (0.0, 0.0)


def _histograms(prob: np.ndarray, truth: np.ndarray, n_images: int = 4):
    """Histograms summed over the pixels split into ``n_images`` images, as a test set accumulates them."""
    pos, neg = np.zeros(1000, np.int64), np.zeros(1000, np.int64)
    for p, t in zip(np.array_split(prob, n_images), np.array_split(truth, n_images)):
        hp, hn = edited_histograms(p, t)
        pos += hp
        neg += hn
    return pos, neg


def test_histogram_auc_ap_exact_on_bin_values():
    """Probabilities on the bin edges, with many ties across the classes: the binned ROC and PR curves are
    the exact ones."""
    rng = np.random.default_rng(5)
    truth = rng.random(20000) < 0.3
    level = np.clip(rng.normal(500 + 150 * truth, 200).round(), 0, 999).astype(int)
    prob = bin_edges()[level]
    pos, neg = _histograms(prob, truth)
    assert pos.sum() == truth.sum() and neg.sum() == (~truth).sum()
    assert abs(histogram_auc(pos, neg) - roc_auc_score(truth, prob)) < 1e-9
    assert abs(histogram_ap(pos, neg) - average_precision_score(truth, prob)) < 1e-9


def test_histogram_auc_ap_close_on_random_probabilities():
    rng = np.random.default_rng(6)
    truth = rng.random(50000) < 0.2
    prob = np.where(truth, rng.beta(3, 2, truth.size), rng.beta(2, 3, truth.size)).astype(np.float32)
    pos, neg = _histograms(prob, truth)
    assert abs(histogram_auc(pos, neg) - roc_auc_score(truth, prob)) < 1e-3
    assert abs(histogram_ap(pos, neg) - average_precision_score(truth, prob)) < 1e-3


def test_histogram_metrics_undefined_without_a_class():
    pos, neg = edited_histograms(np.array([0.2, 0.7]), np.array([False, False]))
    assert histogram_auc(pos, neg) is None and histogram_ap(pos, neg) is None
    assert best_threshold(pos, neg) is None
    assert f1_at_threshold(pos, neg, 0.9) is None  # nothing edited in truth nor prediction


def test_f1_at_threshold_by_hand():
    """P(edited) [0.9, 0.5, 0.4, 0.6, 0.2, 0.1], truth [1, 1, 1, 0, 0, 0]. At t = 0.5 the pixel at exactly
    0.5 reads as edited, as in binary_view: predicted 0.9, 0.5, 0.6 -> TP 2, FP 1, FN 1."""
    prob = np.array([0.9, 0.5, 0.4, 0.6, 0.2, 0.1])
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    pos, neg = edited_histograms(prob, truth)
    assert f1_at_threshold(pos, neg, 0.5) == pytest.approx(2 / 3)  # TP 2, FP 1, FN 1: 4 / (4 + 1 + 1)
    assert f1_at_threshold(pos, neg, 0.3) == pytest.approx(6 / 7)  # TP 3, FP 1, FN 0: 6 / (6 + 1)
    assert f1_at_threshold(pos, neg, 0.15) == pytest.approx(6 / 8)  # TP 3, FP 2
    assert f1_at_threshold(pos, neg, 0.95) == 0.0  # nothing predicted: TP 0, FN 3
    # 6/7 holds for every edge in (0.2, 0.4]; the middle of that run of edges is 0.3.
    assert best_threshold(pos, neg) == pytest.approx(0.3)


def test_best_threshold_on_a_separable_set():
    """Edited pixels at 0.8, authentic at 0.2: F1 = 1 for every edge in (0.2, 0.8]; the middle is 0.5."""
    prob = np.array([0.8] * 5 + [0.2] * 7)
    truth = np.array([True] * 5 + [False] * 7)
    pos, neg = edited_histograms(prob, truth)
    t = best_threshold(pos, neg)
    assert t == pytest.approx(0.5)
    assert f1_at_threshold(pos, neg, t) == 1.0


def test_image_level_by_hand():
    """20 authentic images scored 0.00, 0.01, ..., 0.19 and 5 edited ones scored 0.9, 0.5, 0.185, 0.17, 0.05.

    Lowering the threshold: 0.9 (TPR 1/5, FPR 0), 0.5 (2/5, 0), 0.19 (2/5, 1/20), 0.185 (3/5, 1/20),
    0.18 (3/5, 2/20 > 5%). So TPR at FPR <= 5% is 3/5; at FPR 0 it is 2/5.
    AUC = share of (edited, authentic) pairs ordered right, ties half:
    (20 + 20 + 19 + 17.5 + 5.5) / 100 = 0.82. Accuracy at 0.5: 2 edited found + 20 authentic = 22 / 25.
    """
    labels = np.array([0] * 20 + [1] * 5)
    scores = np.concatenate([np.arange(20) / 100, [0.9, 0.5, 0.185, 0.17, 0.05]])
    assert tpr_at_fpr(labels, scores, 0.05) == pytest.approx(0.6)
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.4)
    out = image_level(labels, scores)
    assert out["auc"] == pytest.approx(0.82)
    assert out["accuracy"] == pytest.approx(0.88)
    assert out["tpr_at_fpr"] == pytest.approx(0.6)
    assert tpr_at_fpr(np.ones(3), np.array([0.1, 0.2, 0.3])) is None
