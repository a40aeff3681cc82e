"""Segmentation, detection and attribution metrics, accumulated over a test set.

Pixel metrics come from one confusion matrix (rows = truth, columns = prediction). mIoU averages the
classes that occur in the truth or the prediction (a class absent from both has no defined IoU and
is left out, as in mmsegmentation); ``tests/test_metrics.py`` cross-checks every figure against
torchmetrics. Image-level detection scores each image by the mean of its top 1% "edited"
probabilities, so one noisy pixel cannot flag an image but a small edit still can.

The functions after :class:`Accumulator` read a model's class probabilities ``(C, H, W)`` through one
binary view, P(edited) = 1 - p(authentic): localisation, the image score and the pixel histograms all
use that map, and attribution only names a generator where the binary view says "edited", so the
three tasks can never contradict one another. Pixel AUC, AP and F1 over a whole test set come from two
fixed-bin histograms of P(edited) (edited and authentic pixels), which cost the same memory for ten
images as for ten thousand.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

TOP_SHARE = 0.01  # share of pixels whose edited-probability is averaged into the image score


def confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    index = truth.astype(np.int64).ravel() * n_classes + pred.astype(np.int64).ravel()
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def image_score(edited_prob: np.ndarray) -> float:
    """Image-level 'is anything edited?' score from a per-pixel probability map."""
    flat = np.sort(edited_prob.ravel())[::-1]
    k = max(1, int(round(flat.size * TOP_SHARE)))
    return float(flat[:k].mean())


def dominant(label: np.ndarray) -> int:
    """The generator class covering most edited pixels (0 when nothing is edited)."""
    counts = np.bincount(label.ravel(), minlength=2)[1:]
    return int(counts.argmax() + 1) if counts.sum() else 0


class Accumulator:
    """Feed it (truth, prediction, edited-probability) per image; read :meth:`summary` at the end."""

    def __init__(self, classes: list[str]):
        self.classes = classes
        self.matrix = np.zeros((len(classes), len(classes)), np.int64)
        self.scores: list[float] = []
        self.edited: list[bool] = []
        self.attributions: list[tuple[int, int]] = []

    def add(self, truth: np.ndarray, pred: np.ndarray, edited_prob: np.ndarray) -> None:
        self.matrix += confusion(truth, pred, len(self.classes))
        self.scores.append(image_score(edited_prob))
        is_edited = bool((truth > 0).any())
        self.edited.append(is_edited)
        if is_edited:
            self.attributions.append((dominant(truth), dominant(pred)))

    def summary(self) -> dict:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), np.nan)
        f1_den = m.sum(0) + m.sum(1)
        f1 = np.where(present, 2 * tp / np.maximum(f1_den, 1), np.nan)
        edited = np.asarray(self.edited)
        scores = np.asarray(self.scores)
        detected = scores >= 0.5
        both = edited.any() and (~edited).any()
        out = {
            "miou": _r(np.nanmean(iou)), "pixel_accuracy": _r(tp.sum() / max(m.sum(), 1)),
            "mean_f1": _r(np.nanmean(f1)),
            "per_class_iou": {c: _r(v) for c, v in zip(self.classes, iou)},
            "per_class_f1": {c: _r(v) for c, v in zip(self.classes, f1)},
            "detection_accuracy": _r((detected == edited).mean()) if len(edited) else None,
            "detection_auc": _r(roc_auc_score(edited, scores)) if both else None,
            "n_images": int(len(edited)), "n_edited": int(edited.sum()),
        }
        if len(self.classes) > 2:
            hits = [t == p for t, p in self.attributions]
            out["attribution_accuracy"] = _r(np.mean(hits)) if hits else None
        return out


def _r(value: float) -> float | None:
    """Rounded for small, stable JSON; NaN (an undefined class) becomes null."""
    return None if value is None or np.isnan(value) else round(float(value), 6)


EDITED_THRESHOLD = 0.5  # P(edited) at or above this reads as edited
HIST_BINS = 1000  # P(edited) bins of width 0.001: AUC and AP within about 1e-3 of the exact values


def binary_view(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(edited) and the edited mask from class probabilities ``(C, H, W)`` (class 0 authentic).

    P(edited) is 1 - p(authentic), the total mass of the generators: a pixel with p = [0.30, 0.10 x 7]
    is edited with P = 0.70 although its argmax is "authentic", because the generators split the mass
    that together outweighs authentic. Edited means P(edited) >= 0.5. The same map is the input of
    :func:`image_score` and :func:`edited_histograms`.
    """
    edited_prob = np.clip(1.0 - probs[0], 0.0, 1.0)
    return edited_prob, edited_prob >= EDITED_THRESHOLD


def attribution_pred(probs: np.ndarray) -> np.ndarray:
    """Label map: the most probable generator (classes 1..C-1) where :func:`binary_view` says edited, else 0."""
    _, edited = binary_view(probs)
    generator = probs[1:].argmax(axis=0) + 1
    return np.where(edited, generator, 0).astype(np.uint8)


def attribution_counts(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Generator confusion ``(n_classes-1, n_classes-1)`` (rows truth, columns prediction, index k-1 for
    generator k) over the pixels both truly edited and predicted edited.

    Attribution is only asked of pixels the localisation got right, so naming the right generator in the
    wrong place earns nothing: it adds no pixel, or a wrong one where it overlaps another generator.
    """
    found = (truth > 0) & (pred > 0)
    return confusion(truth[found] - 1, pred[found] - 1, n_classes - 1)


def attribution_accuracy(counts: np.ndarray) -> float | None:
    """Share of correctly found edited pixels given the right generator; None when there is none."""
    total = counts.sum()
    return float(np.trace(counts) / total) if total else None


def edited_counts(truth_edited: np.ndarray, pred_edited: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) of the edited class for one image, from boolean masks."""
    t, p = truth_edited.astype(bool), pred_edited.astype(bool)
    return int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())


def image_iou_f1(truth_edited: np.ndarray, pred_edited: np.ndarray,
                 both_empty: float = 1.0) -> tuple[float, float]:
    """IoU and F1 of the edited class on one image, for per-image averaging.

    Both are undefined when neither the truth nor the prediction has an edited pixel (an authentic image
    correctly left clean); that case scores ``both_empty``, 1.0 by default, so a clean prediction on an
    authentic image counts as perfect rather than as a miss. (Implementations that add a small epsilon to
    the denominator, as IMDL-BenCo's PixelIOU and PixelF1 do, give 0.0 there: pass ``both_empty=0.0`` to
    match them.) Exactly one empty gives 0.0 for both, as the formulas do.
    """
    tp, fp, fn = edited_counts(truth_edited, pred_edited)
    if tp + fp + fn == 0:
        return both_empty, both_empty
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def bin_edges(n_bins: int = HIST_BINS) -> np.ndarray:
    """The ``n_bins + 1`` edges on [0, 1] of :func:`edited_histograms`; bin k is [edge k, edge k+1)."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def edited_histograms(edited_prob: np.ndarray, truth_edited: np.ndarray,
                      n_bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts of P(edited) per bin for the truly edited pixels and for the authentic ones; sum them over
    images to accumulate a test set. The last bin also holds P = 1."""
    # float64 so the bin of a value is decided against the same edges as bin_edges() (float32 input
    # would otherwise bin against float32 edges)
    prob = np.clip(np.asarray(edited_prob, np.float64).ravel(), 0.0, 1.0)
    truth = np.asarray(truth_edited).astype(bool).ravel()
    hist_pos, _ = np.histogram(prob[truth], bins=n_bins, range=(0.0, 1.0))
    hist_neg, _ = np.histogram(prob[~truth], bins=n_bins, range=(0.0, 1.0))
    return hist_pos.astype(np.int64), hist_neg.astype(np.int64)


def _above(hist: np.ndarray) -> np.ndarray:
    """Entry k: the count in bins k.. (pixels predicted edited at threshold edge k); entry n_bins is 0."""
    return np.concatenate([np.cumsum(hist[::-1])[::-1], [0]])


def histogram_auc(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float | None:
    """Pixel ROC AUC from the histograms: the trapezoid over the ROC points at every bin edge.

    Pixels sharing a bin count as tied, so it equals sklearn's ``roc_auc_score`` when every bin holds one
    value and is within about a bin width otherwise. None without both edited and authentic pixels.
    """
    n_pos, n_neg = hist_pos.sum(), hist_neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    tpr = _above(hist_pos)[::-1] / n_pos
    fpr = _above(hist_neg)[::-1] / n_neg
    return float(np.trapezoid(tpr, fpr))


def histogram_ap(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float | None:
    """Pixel average precision from the histograms: sum over bins (from the top) of the recall gained
    times the precision there, sklearn's step-wise ``average_precision_score`` with one threshold per bin.
    None without edited pixels."""
    n_pos = hist_pos.sum()
    if n_pos == 0:
        return None
    tp, fp = _above(hist_pos)[:-1], _above(hist_neg)[:-1]
    gained = hist_pos > 0  # precision where no recall is gained does not enter and may be 0/0
    precision = tp[gained] / (tp[gained] + fp[gained])
    return float(np.sum(hist_pos[gained] / n_pos * precision))


def _threshold_index(t: float, n_bins: int) -> int:
    """Index of the first bin edge >= t; edges within 1e-9 of t count as equal to it."""
    return int(np.clip(np.ceil(t * n_bins - 1e-9), 0, n_bins))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2TP / (2TP + FP + FN), NaN where nothing is edited in truth or prediction."""
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), np.nan)


def f1_at_threshold(hist_pos: np.ndarray, hist_neg: np.ndarray,
                    t: float = EDITED_THRESHOLD) -> float | None:
    """Global pixel F1 of the edited class when P(edited) >= t reads as edited.

    Exact for t on a bin edge (multiples of 0.001 with the default bins, 0.5 included); otherwise t is
    raised to the next edge. None when no pixel is edited in truth or prediction.
    """
    k = _threshold_index(t, len(hist_pos))
    tp, fp = _above(hist_pos)[k], _above(hist_neg)[k]
    f1 = _f1(np.float64(tp), np.float64(fp), np.float64(hist_pos.sum() - tp))
    return None if np.isnan(f1) else float(f1)


def best_threshold(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float | None:
    """The bin edge maximising :func:`f1_at_threshold` (chosen on validation, then applied to test).

    Several edges often tie (any edge between the classes of a separable set); the middle of the first
    run of tied edges is taken, so the threshold keeps the widest margin on both sides instead of sitting
    against the highest authentic pixel. None without edited pixels.
    """
    n_pos = hist_pos.sum()
    if n_pos == 0:
        return None
    tp, fp = _above(hist_pos).astype(np.float64), _above(hist_neg).astype(np.float64)
    f1 = np.nan_to_num(_f1(tp, fp, n_pos - tp), nan=-1.0)
    best = np.flatnonzero(f1 == f1.max())
    breaks = np.flatnonzero(np.diff(best) != 1)
    last = best[breaks[0]] if breaks.size else best[-1]
    return float(bin_edges(len(hist_pos))[(best[0] + last) // 2])


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> float | None:
    """Image-level TPR at the ROC point with FPR <= ``fpr``: the highest TPR among the ROC curve's points
    whose FPR does not exceed the target, i.e. at the lowest threshold (an image is called edited when
    its score is >= the threshold) that keeps FPR <= ``fpr``. No interpolation between points, so the
    figure never claims an FPR above the target. None unless both classes occur.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(tprs[fprs <= fpr + 1e-12].max())


def image_level(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> dict:
    """Image detection: ROC AUC, accuracy with score >= 0.5 as edited, and :func:`tpr_at_fpr` at ``fpr``."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    both = labels.any() and not labels.all()
    return {
        "auc": float(roc_auc_score(labels, scores)) if both else None,
        "accuracy": float(((scores >= EDITED_THRESHOLD) == labels).mean()) if len(labels) else None,
        "tpr_at_fpr": tpr_at_fpr(labels, scores, fpr),
    }
