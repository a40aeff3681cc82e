"""Percentile-bootstrap confidence intervals over test images.

Images, not pixels, are resampled: the pixels of one image are strongly correlated, so resampling them
would give intervals far too narrow. Each image contributes one row of sufficient statistics (its
(TP, FP, FN) counts, its generator confusion matrix, its (label, score) pair, ...) and a statistic maps
a resampled set of rows to one number, so pooled metrics (sum the counts, then take the ratio) and
per-image means are bootstrapped the same way.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy.stats import rankdata

Statistic = Callable[[np.ndarray], "float | None"]


class BootstrapCI(NamedTuple):
    """The statistic on the full set, the interval bounds (None when too few resamples were usable) and
    how many of the resamples the interval rests on."""

    value: float | None
    low: float | None
    high: float | None
    n_used: int


def bootstrap_ci(per_image_stats, statistic: Statistic, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> BootstrapCI:
    """Percentile bootstrap interval (level 1 - ``alpha``) of ``statistic`` over images.

    ``per_image_stats`` holds one row per image (anything ``np.asarray`` stacks along axis 0);
    ``statistic`` receives the rows of one resample, ``stats[idx]`` with repeats, and returns a number,
    or None or NaN where it is undefined on that resample (an AUC over one class). Those resamples are
    skipped; fewer than half usable gives no interval. All ``n_boot`` resamples are drawn at once as an
    ``n_boot x n_images`` index matrix from ``numpy.random.default_rng(seed)``, so a seed fixes the result.
    """
    stats = np.asarray(per_image_stats)
    n = len(stats)
    if n == 0:
        return BootstrapCI(None, None, None, 0)
    value = _defined(statistic(stats))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    draws = [_defined(statistic(stats[row])) for row in idx]
    usable = np.array([d for d in draws if d is not None], np.float64)
    if 2 * len(usable) < n_boot:
        return BootstrapCI(value, None, None, len(usable))
    low, high = np.percentile(usable, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return BootstrapCI(value, float(low), float(high), len(usable))


def _defined(x) -> float | None:
    """The statistic as a float, None where it is undefined (None or NaN)."""
    return None if x is None or np.isnan(x) else float(x)


def pooled_iou(counts: np.ndarray) -> float | None:
    """IoU of the pooled counts, rows (TP, FP, FN) per image: sum TP / sum (TP + FP + FN)."""
    tp, fp, fn = np.asarray(counts).sum(axis=0)
    return tp / (tp + fp + fn) if tp + fp + fn else None


def pooled_f1(counts: np.ndarray) -> float | None:
    """F1 of the pooled counts, rows (TP, FP, FN) per image: 2 sum TP / (2 sum TP + sum FP + sum FN)."""
    tp, fp, fn = np.asarray(counts).sum(axis=0)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None


def pooled_attribution_accuracy(matrices: np.ndarray) -> float | None:
    """Trace over total of the summed per-image generator confusion matrices, shape (n, G, G)."""
    total = np.asarray(matrices).sum(axis=0)
    return np.trace(total) / total.sum() if total.sum() else None


def image_auc(label_score: np.ndarray) -> float | None:
    """ROC AUC of rows (label, score); None when a resample holds only one class.

    The Mann-Whitney form (mid-ranks for ties) equals ``sklearn.metrics.roc_auc_score`` and skips its
    input checks, which would dominate a thousand resamples.
    """
    labels, scores = np.asarray(label_score, np.float64).T
    positive = labels > 0
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = rankdata(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
