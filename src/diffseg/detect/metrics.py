"""Segmentation, detection and attribution metrics, accumulated over a test set.

Pixel metrics come from one confusion matrix (rows = truth, columns = prediction). mIoU averages the
classes that occur in the truth or the prediction (a class absent from both has no defined IoU and
is left out, as in mmsegmentation); ``tests/test_metrics.py`` cross-checks every figure against
torchmetrics. Image-level detection scores each image by the mean of its top 1% "edited"
probabilities, so one noisy pixel cannot flag an image but a small edit still can.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

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
