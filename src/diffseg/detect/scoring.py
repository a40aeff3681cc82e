"""Scoring a detector at each image's own size, one row of sufficient statistics per image.

The model runs at its working size (the square ``image_size`` it was trained at); its class
probabilities are resized back, bilinearly, to the size of the image's label and compared with the
untouched label, so no metric depends on how a label would survive a resize. Everything a summary
needs is kept per image (:class:`ImageStats`): pixel counts of the binary view, the task confusion,
the generator confusion on correctly found pixels, P(edited) histograms and per-generator and per-turn
recall counts. Pooled metrics, per-image means and their bootstrap intervals over images
(:func:`summarize`) are all built from those rows, so memory does not grow with image size and
resampling never touches a pixel again.

Label value :data:`IGNORE` (255, never a class) marks pixels that count nowhere: not in the counts,
the confusion, the histograms nor the image score.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from diffseg import bootstrap, records
from diffseg.detect import metrics
from diffseg.detect.data import IGNORE, prepare
from diffseg.detect.infer import probabilities

# IGNORE (255): the label value excluded from every count (e.g. other generators' pixels in cross-generator tests)
N_BOOT = 1000  # bootstrap resamples of every interval
TURN_BITS = 8  # a turn mask is uint8: at most eight turns
LEVEL = 0.95  # bootstrap interval level
DETECTION_FPR = 0.05  # the FPR of the "TPR at 5% FPR" image-level figure

# OWNER[v]: the owner turn (1-based, 0 for none) of a pixel whose turn-mask byte is v, the highest set bit
OWNER = np.array([v.bit_length() for v in range(256)], np.int64)


# --------------------------------------------------------------------------------------------- prediction

def resize_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities ``(C, h, w)`` resized bilinearly to ``shape``; a convex mix, so they still sum to 1."""
    if probs.shape[1:] == tuple(shape):
        return probs.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(probs, np.float32))[None]
    out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)
    return out[0].numpy()


def _predict(model: torch.nn.Module, images: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
             image_size: int, device: str) -> list[np.ndarray]:
    """One batch: each image at the working size through the model, probabilities back at its ``shapes`` entry."""
    x = torch.stack([prepare(image, None, image_size)[0] for image in images])
    probs = probabilities(model, x, device)
    return [resize_probs(p, shape) for p, shape in zip(probs, shapes)]


def predict_probs(model: torch.nn.Module, images: list[np.ndarray], image_size: int,
                  device: str) -> list[np.ndarray]:
    """uint8 HxWx3 images of any sizes -> per image float32 ``(C, H, W)`` probabilities at its own size.

    The images form one batch; callers batch (see :func:`score_set`).
    """
    if not images:
        return []
    return _predict(model, images, [image.shape[:2] for image in images], image_size, device)


# ------------------------------------------------------------------------------------------ per image

@dataclass
class ImageStats:
    """The per-image sufficient statistics every summary is built from (ignored pixels excluded)."""

    image_id: str
    edited: bool  # any truth pixel > 0
    score: float  # metrics.image_score of P(edited)
    tp: int  # edited class, pixels, binary view P(edited) >= 0.5
    fp: int
    fn: int
    tn: int
    iou: float  # per-image edited-class IoU / F1, 1.0 when truth and prediction are both clean
    f1: float
    conf: np.ndarray  # (C, C) task confusion: 2x2 binary view, or C x C on metrics.attribution_pred
    attr: np.ndarray | None  # (G, G) metrics.attribution_counts, attribution task only
    hist_pos: np.ndarray  # P(edited) histograms (metrics.HIST_BINS) of edited / authentic pixels
    hist_neg: np.ndarray
    class_px: np.ndarray  # per dataset class k > 0 (index k-1): truth pixels of k
    class_found: np.ndarray  # ... and of those, pixels predicted edited
    turn_px: np.ndarray  # per owner turn t = 1..T (index t-1): truth edited pixels owned by t
    turn_found: np.ndarray  # ... and of those, pixels predicted edited

    @property
    def pixels(self) -> int:
        """Scored (not ignored) pixels."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def edited_fraction(self) -> float:
        """Share of the scored pixels that are truly edited."""
        return (self.tp + self.fn) / self.pixels if self.pixels else 0.0


def task_prediction(probs: np.ndarray, task: str) -> np.ndarray:
    """The predicted label map of ``task``: metrics.attribution_pred, or the binary view's 0/1 mask."""
    if task == "attribution":
        return metrics.attribution_pred(probs)
    return metrics.binary_view(probs)[1].astype(np.uint8)


def image_stats(image_id: str, truth: np.ndarray, probs: np.ndarray, task: str,
                turnmask: np.ndarray | None = None, n_turns: int = TURN_BITS,
                n_classes: int | None = None) -> ImageStats:
    """Statistics of one image: ``truth`` holds dataset class ids (0 authentic, k generator k, IGNORE) and
    ``probs`` the model's ``(C, H, W)`` probabilities at the truth's size.

    ``n_classes`` is the dataset's class count (authentic included), the length of ``class_px`` plus one;
    by default the model's for attribution, and enough for the truth's largest class otherwise.
    ``turnmask`` (bit t-1 where turn t edited; None = unknown) assigns each edited pixel to its owner turn.
    """
    if probs.shape[1:] != truth.shape:
        raise ValueError(f"{image_id}: probabilities {probs.shape[1:]} do not match the truth {truth.shape}")
    valid = truth != IGNORE
    t = truth[valid].astype(np.int64)
    t_edited = t > 0
    edited_prob, edited_mask = metrics.binary_view(probs)
    p_prob, p_edited = edited_prob[valid], edited_mask[valid]
    tp, fp, fn = metrics.edited_counts(t_edited, p_edited)
    iou, f1 = metrics.image_iou_f1(t_edited, p_edited, both_empty=1.0)
    n_task = probs.shape[0]
    attr = None
    if task == "attribution":
        pred = metrics.attribution_pred(probs)[valid]
        conf = metrics.confusion(t, pred, n_task)
        attr = metrics.attribution_counts(t, pred, n_task)
    else:
        conf = metrics.confusion(t_edited, p_edited, 2)
    hist_pos, hist_neg = metrics.edited_histograms(p_prob, t_edited)
    if n_classes is None:
        n_classes = n_task if task == "attribution" else max(2, int(t.max(initial=0)) + 1)
    class_px = np.bincount(t, minlength=n_classes)[1:n_classes]
    class_found = np.bincount(t[p_edited], minlength=n_classes)[1:n_classes]
    owner = OWNER[turnmask[valid]] if turnmask is not None else np.zeros_like(t)
    owner = np.where(t_edited, owner, 0)  # a turn owns only pixels that are still edited
    turn_px = np.bincount(owner, minlength=n_turns + 1)[1:n_turns + 1]
    turn_found = np.bincount(owner[p_edited], minlength=n_turns + 1)[1:n_turns + 1]
    # scored pixels only, so an ignored region (another generator's edit) cannot raise the image score
    score = metrics.image_score(p_prob if p_prob.size else edited_prob)
    return ImageStats(image_id=image_id, edited=bool(t_edited.any()), score=score, tp=tp, fp=fp, fn=fn,
                      tn=int(t.size) - tp - fp - fn, iou=float(iou), f1=float(f1), conf=conf, attr=attr,
                      hist_pos=hist_pos, hist_neg=hist_neg, class_px=class_px, class_found=class_found,
                      turn_px=turn_px, turn_found=turn_found)


# ------------------------------------------------------------------------------------------- datasets

class Sample(NamedTuple):
    """One full-size item: the (possibly distorted) image, the truth its prediction is compared with, and
    its turn mask (None when unknown). The prediction is resized to the truth's size, not the image's."""

    image_id: str
    image: np.ndarray
    truth: np.ndarray
    turnmask: np.ndarray | None


class FullSizeSet:
    """Items of one or more splits of an assembled dataset at their own size, read lazily.

    ``keep`` filters the manifest rows; ``distort`` transforms the uint8 image (the truth stays as it is);
    ``truth`` rewrites a label given its manifest row (e.g. other generators' pixels to IGNORE).
    """

    def __init__(self, root: Path, splits: list[str], keep: Callable[[pd.DataFrame], pd.Series] | None = None,
                 distort: Callable[[np.ndarray], np.ndarray] | None = None,
                 truth: Callable[[np.ndarray, dict], np.ndarray] | None = None):
        self.root = Path(root)
        self.data = records.StateDir(self.root)
        manifest = self.data.manifest()
        manifest = manifest[manifest["split"].isin(splits)]
        if keep is not None:
            manifest = manifest[keep(manifest)]
        self.items = manifest.sort_values("image_id").reset_index(drop=True)
        self.classes: list[str] = records.read_json(self.root / "classes.json")
        self.distort, self.truth = distort, truth
        self.n_turns = dataset_turns(self.root)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        row = self.items.iloc[index].to_dict()
        image_id = row["image_id"]
        image = self.data.image(image_id)
        shape = image.shape[:2]
        label, turnmask = self.data.label(image_id, shape), self.data.turnmask(image_id, shape)
        if self.truth is not None:
            label = self.truth(label, row)
        if self.distort is not None:
            image = self.distort(image)
        return Sample(image_id, image, label, turnmask)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))


def metadata(root: Path) -> pd.DataFrame:
    """The dataset's ``metadata.parquet`` (one row per image and turn), empty when the dataset has none
    (an imported release without provenance)."""
    path = Path(root) / "metadata.parquet"
    return records.read_table(path) if path.is_file() else pd.DataFrame(columns=["image_id", "turn_index", "action"])


def dataset_turns(root: Path) -> int:
    """The number of turns of the dataset: the largest turn index of its metadata, else of its edit counts."""
    meta = metadata(root)
    manifest = records.StateDir(root).manifest()
    found = [int(meta["turn_index"].max()) if len(meta) else 0,
             int(manifest["n_edits"].max()) if len(manifest) else 0]
    return min(max(found), TURN_BITS)


def score_set(model: torch.nn.Module, dataset: Iterable[Sample], image_size: int, device: str,
              batch_size: int, task: str, *, n_turns: int | None = None, n_classes: int | None = None,
              on_prediction: Callable[[str, np.ndarray], None] | None = None) -> list[ImageStats]:
    """:func:`image_stats` of every item of ``dataset`` (full-size :class:`Sample` items, e.g. a
    :class:`FullSizeSet`), predicted ``batch_size`` at a time. ``n_turns`` and ``n_classes`` default to the
    dataset's attributes of those names; ``on_prediction(image_id, probs)`` sees each image's
    probabilities at its truth's size (e.g. to save the predicted map) before they are dropped.
    """
    model.eval()
    n_turns = n_turns if n_turns is not None else getattr(dataset, "n_turns", TURN_BITS)
    if n_classes is None and hasattr(dataset, "classes"):
        n_classes = len(dataset.classes)
    out: list[ImageStats] = []
    batch: list[Sample] = []

    def flush() -> None:
        probs = _predict(model, [s.image for s in batch], [s.truth.shape for s in batch], image_size, device)
        for sample, p in zip(batch, probs):
            if on_prediction is not None:
                on_prediction(sample.image_id, p)
            out.append(image_stats(sample.image_id, sample.truth, p, task, sample.turnmask, n_turns, n_classes))
        batch.clear()

    for sample in dataset:
        batch.append(sample)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return out


# ------------------------------------------------------------------------------------------ summaries

def ci(result: stats.BootstrapCI) -> dict:
    """A bootstrap interval as JSON: value, low, high rounded to 6 places, None where undefined."""
    return {"value": _r(result.value), "low": _r(result.low), "high": _r(result.high)}


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


class Rows:
    """Per-image arrays of a list of :class:`ImageStats` and bootstrap intervals of statistics over them.

    A statistic receives the indices of one resample (with repeats). Pooled figures weight each image's
    row by how often it was drawn (``np.bincount(idx) @ rows``), which costs one pass over the rows instead
    of copying them; every interval draws from the same seed, so they all rest on the same resamples.
    """

    def __init__(self, image_stats: list[ImageStats], n_boot: int, seed: int):
        s = image_stats
        self.n, self.n_boot, self.seed = len(s), n_boot, seed
        self.counts = np.array([[x.tp, x.fp, x.fn, x.tn] for x in s], np.float64).reshape(-1, 4)
        self.iou = np.array([x.iou for x in s], np.float64)
        self.f1 = np.array([x.f1 for x in s], np.float64)
        self.label_score = np.array([[x.edited, x.score] for x in s], np.float64).reshape(-1, 2)
        bins = metrics.HIST_BINS
        self.hists = np.array([np.concatenate([x.hist_pos, x.hist_neg]) for x in s], np.float64).reshape(-1, 2 * bins)

    def weights(self, idx: np.ndarray) -> np.ndarray:
        """How many times each image is in the resample ``idx``."""
        return np.bincount(idx, minlength=self.n).astype(np.float64)

    def pooled(self, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Sum of the resampled images' ``rows`` (one row per image, any trailing shape)."""
        return np.tensordot(self.weights(idx), rows, axes=1)

    def interval(self, statistic: Callable[[np.ndarray], float | None]) -> dict:
        return ci(bootstrap.bootstrap_ci(np.arange(self.n), statistic, self.n_boot, self.seed, 1 - LEVEL))

    def hist(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self.pooled(self.hists, idx)
        return h[:metrics.HIST_BINS], h[metrics.HIST_BINS:]


def _binary_iou(c: np.ndarray) -> list[float]:
    """IoU of the edited and the authentic class from pooled (TP, FP, FN, TN), for the classes that occur."""
    tp, fp, fn, tn = c
    return [v / (v + fp + fn) for v in (tp, tn) if v + fp + fn > 0]


def _class_iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU of a pooled confusion matrix, NaN for a class absent from truth and prediction."""
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def _nanmean(v: np.ndarray) -> float | None:
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def binary_block(rows: Rows, val_threshold: float | None) -> dict:
    """The edited-vs-authentic figures of the binary view, for both tasks."""
    def counts(i):
        return rows.pooled(rows.counts, i)

    def detection(fn):
        return lambda i: fn(rows.label_score[i])

    def accuracy(ls):
        return float(((ls[:, 1] >= metrics.EDITED_THRESHOLD) == (ls[:, 0] > 0)).mean())

    block = {
        "iou_edited": rows.interval(lambda i: bootstrap.pooled_iou(counts(i)[None, :3])),
        "f1_edited": rows.interval(lambda i: bootstrap.pooled_f1(counts(i)[None, :3])),
        "miou": rows.interval(lambda i: _mean_or_none(_binary_iou(counts(i)))),
        "pixel_accuracy": rows.interval(lambda i: _ratio(counts(i)[[0, 3]].sum(), counts(i).sum())),
        "image_mean_iou": rows.interval(lambda i: float(rows.iou[i].mean())),
        "image_mean_f1": rows.interval(lambda i: float(rows.f1[i].mean())),
        "pixel_auc": rows.interval(lambda i: metrics.histogram_auc(*rows.hist(i))),
        "pixel_ap": rows.interval(lambda i: metrics.histogram_ap(*rows.hist(i))),
        "val_threshold": _r(val_threshold),
        "f1_edited_at_val_threshold": rows.interval(
            lambda i: None if val_threshold is None else metrics.f1_at_threshold(*rows.hist(i), val_threshold)),
        "detection_auc": rows.interval(detection(bootstrap.image_auc)),
        "detection_accuracy": rows.interval(detection(accuracy)),
        "tpr_at_5_fpr": rows.interval(detection(lambda ls: tpr_at_fpr(ls, DETECTION_FPR))),
    }
    return block


def tpr_at_fpr(label_score: np.ndarray, fpr: float) -> float | None:
    """metrics.tpr_at_fpr on rows (label, score), without sklearn's input checks (a thousand resamples).

    The ROC points are one per distinct score s (images with score >= s called edited) plus (0, 0); the
    highest TPR among the points with FPR <= ``fpr`` is returned, None unless both labels occur.
    """
    labels, scores = label_score[:, 0] > 0, label_score[:, 1]
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    if not len(pos) or not len(neg):
        return None
    thresholds = np.unique(scores)
    tpr = (len(pos) - np.searchsorted(pos, thresholds, side="left")) / len(pos)
    fprs = (len(neg) - np.searchsorted(neg, thresholds, side="left")) / len(neg)
    return float(max(0.0, tpr[fprs <= fpr + 1e-12].max(initial=0.0)))


def attribution_block(image_stats: list[ImageStats], rows: Rows, classes: list[str]) -> dict:
    """Attribution figures: task mIoU and per-class IoU on attribution_pred, accuracy on found pixels."""
    n = len(classes)
    conf = np.array([s.conf for s in image_stats], np.float64).reshape(-1, n, n)
    attr = np.array([s.attr for s in image_stats], np.float64).reshape(-1, n - 1, n - 1)

    def class_iou(k):
        return lambda i: _nan_none(_class_iou(rows.pooled(conf, i))[k])

    return {
        "miou": rows.interval(lambda i: _nanmean(_class_iou(rows.pooled(conf, i)))),
        "per_class_iou": {c: rows.interval(class_iou(k)) for k, c in enumerate(classes)},
        "accuracy_on_found": rows.interval(lambda i: bootstrap.pooled_attribution_accuracy(rows.pooled(attr, i)[None])),
        "confusion_on_found": {"classes": list(classes[1:]),
                               "matrix": attr.sum(0).astype(np.int64).tolist()},
    }


def summarize(image_stats: list[ImageStats], classes: list[str], task: str, n_boot: int, seed: int,
              val_threshold: float | None = None) -> dict:
    """The ``binary`` block (both tasks) and, for the attribution task, the ``attribution`` block, every
    figure a 95% percentile-bootstrap interval over images (``n_boot`` resamples from ``seed``).

    ``classes`` are the task's classes (the checkpoint's); ``val_threshold`` is the P(edited) threshold
    chosen on validation (:func:`pooled_best_threshold`), applied here to the test pixels.
    """
    rows = Rows(image_stats, n_boot, seed)
    out = {"binary": binary_block(rows, val_threshold)}
    if task == "attribution":
        out["attribution"] = attribution_block(image_stats, rows, classes)
    return out


def pooled_best_threshold(image_stats: list[ImageStats]) -> float | None:
    """metrics.best_threshold on the pooled P(edited) histograms of (validation) images."""
    if not image_stats:
        return None
    pos = np.sum([s.hist_pos for s in image_stats], axis=0)
    neg = np.sum([s.hist_neg for s in image_stats], axis=0)
    return metrics.best_threshold(pos, neg)


def task_confusion(image_stats: list[ImageStats], n: int) -> np.ndarray:
    """The summed (n, n) task confusion matrix (rows truth, columns prediction)."""
    return np.array([s.conf for s in image_stats], np.int64).reshape(-1, n, n).sum(0)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _nan_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
