"""``diffseg.bootstrap``: the percentile bootstrap over images, on hand-worked and degenerate sets."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from diffseg.bootstrap import (bootstrap_ci, image_auc, pooled_attribution_accuracy, pooled_f1,
                                  pooled_iou)

# Per-image (TP, FP, FN) of three images; pooled: TP 7, FP 3, FN 4.
COUNTS = np.array([[2, 1, 0], [0, 0, 3], [5, 2, 1]])


def test_pooled_statistics_by_hand():
    """Pooled IoU = 7 / (7 + 3 + 4) = 0.5; pooled F1 = 14 / (14 + 3 + 4) = 2/3. Per-image IoUs are
    2/3, 0 and 5/8, whose mean (31/72) is a different figure."""
    ci = bootstrap_ci(COUNTS, pooled_iou, n_boot=200, seed=0)
    assert ci.value == 0.5
    assert bootstrap_ci(COUNTS, pooled_f1, n_boot=200, seed=0).value == pytest.approx(2 / 3)
    per_image = COUNTS[:, 0] / COUNTS.sum(axis=1)
    assert bootstrap_ci(per_image, np.mean, n_boot=200, seed=0).value == pytest.approx(31 / 72)
    # Two images' generator confusions: 3 + 1 right out of 3 + 1 + 2 + 1 + 1 = 8 pixels.
    matrices = np.array([[[3, 1], [0, 0]], [[0, 2], [1, 1]]])
    assert pooled_attribution_accuracy(matrices) == pytest.approx(4 / 8)


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 50, (40, 3))
    a = bootstrap_ci(counts, pooled_iou, seed=7)
    assert a == bootstrap_ci(counts, pooled_iou, seed=7)
    assert a != bootstrap_ci(counts, pooled_iou, seed=8)
    assert a.n_used == 1000


def test_interval_brackets_the_full_set_value():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 100, (60, 3))
    value, low, high, used = bootstrap_ci(counts, pooled_iou, seed=0)
    assert low < value < high and used == 1000
    assert high - low < 0.2


def test_constant_data_gives_a_degenerate_interval():
    ci = bootstrap_ci(np.full(25, 0.75), np.mean, seed=3)
    assert ci.value == ci.low == ci.high == 0.75


def test_image_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200) / 10  # heavy ties
    assert image_auc(np.column_stack([labels, scores])) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_auc(np.column_stack([np.zeros(5), np.arange(5)])) is None


def test_undefined_resamples_are_skipped():
    """One edited image among 20: a resample misses it with probability (19/20)^20 = 0.358, and its AUC is
    then undefined, so about 642 of 1000 resamples are used."""
    labels = np.array([1] + [0] * 19)
    scores = np.linspace(1, 0, 20)
    ci = bootstrap_ci(np.column_stack([labels, scores]), image_auc, seed=4)
    assert ci.value == 1.0
    assert 590 < ci.n_used < 700
    assert ci.low is not None and ci.high == 1.0


def test_no_interval_when_most_resamples_are_undefined():
    """Defined only when image 0 is drawn twice or more: 1 - (4/5)^5 - 5 (1/5)(4/5)^4 = 0.263 of resamples."""
    stats = np.array([1.0, 0, 0, 0, 0])
    ci = bootstrap_ci(stats, lambda s: s.sum() if s.sum() >= 2 else None, seed=5)
    assert ci.value is None
    assert 200 < ci.n_used < 330
    assert ci.low is None and ci.high is None


def test_empty_set():
    assert bootstrap_ci(np.zeros((0, 3)), pooled_iou) == (None, None, None, 0)
