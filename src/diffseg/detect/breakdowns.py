"""Where a detector succeeds and fails: test metrics by number of edits, action, edited area, generator
and turn, each with a bootstrap interval over images.

Image groups (number of accepted edits, edited area) report the edited-class IoU pooled over the group's
images, their mean per-image IoU and the detection AUC of the group against all never-edited images.
Pixel groups (action, generator, turn) report the binary recall of the edited pixels of that kind: a
pixel belongs to its *owner turn* (the last turn that edited it, whose label survives), to that turn's
action (``metadata.parquet``) and to the generator of its label.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from diffseg import bootstrap
from diffseg.detect.scoring import ImageStats, ci

ACTIONS = ("add", "remove", "change")
# (name, lower bound inclusive, upper bound exclusive) of the image's edited fraction
AREAS = (("<5%", 0.0, 0.05), ("5-15%", 0.05, 0.15), (">=15%", 0.15, np.inf))


def turn_actions(metadata: pd.DataFrame) -> dict[tuple[str, int], str]:
    """(image id, turn index) -> that turn's action, from ``metadata.parquet`` rows."""
    if not len(metadata):
        return {}
    return {(str(i), int(t)): str(a) for i, t, a in
            metadata[["image_id", "turn_index", "action"]].itertuples(index=False)}


def _interval(rows: np.ndarray, statistic: Callable[[np.ndarray], float | None], n_boot: int, seed: int) -> dict:
    return ci(bootstrap.bootstrap_ci(rows, statistic, n_boot, seed))


def image_group(group: list[ImageStats], negatives: list[ImageStats], n_boot: int, seed: int) -> dict:
    """{"images", "iou_edited", "image_mean_iou", "detection_auc"} of a group of edited images; the AUC
    ranks the group against ``negatives``."""
    counts = np.array([[s.tp, s.fp, s.fn] for s in group], np.float64).reshape(-1, 3)
    ious = np.array([s.iou for s in group], np.float64)
    label_score = np.array([[1.0, s.score] for s in group] + [[0.0, s.score] for s in negatives],
                           np.float64).reshape(-1, 2)
    return {"images": len(group),
            "iou_edited": _interval(counts, bootstrap.pooled_iou, n_boot, seed),
            "image_mean_iou": _interval(ious, lambda v: float(v.mean()), n_boot, seed),
            # no AUC for an empty group: the negatives alone would make it undefined anyway
            "detection_auc": _interval(label_score if group else label_score[:0], bootstrap.image_auc, n_boot, seed)}


def pixel_group(pixels: np.ndarray, found: np.ndarray, n_boot: int, seed: int) -> dict:
    """{"pixels", "recall"}: pooled found / pixels over the images that have pixels of this kind."""
    rows = np.stack([pixels, found], axis=1).astype(np.float64).reshape(-1, 2)
    rows = rows[rows[:, 0] > 0]

    def recall(r: np.ndarray) -> float | None:
        total = r[:, 0].sum()
        return r[:, 1].sum() / total if total else None

    return {"pixels": int(rows[:, 0].sum()), "recall": _interval(rows, recall, n_boot, seed)}


def compute(image_stats: list[ImageStats], n_edits: dict[str, int], actions: dict[tuple[str, int], str],
            generators: list[str], n_turns: int, n_boot: int, seed: int) -> dict:
    """The ``breakdowns`` block of ``metrics/eval/<detector>.json``.

    ``n_edits`` maps image ids to their accepted edits (manifest), ``actions`` (image id, turn) to the
    turn's action, ``generators`` are the dataset's generator names (classes.json without authentic),
    indexed like :attr:`ImageStats.class_px`; ``n_turns`` fixes the turn and edit-count keys.
    """
    negatives = [s for s in image_stats if n_edits.get(s.image_id, 0) == 0]
    edited = [s for s in image_stats if n_edits.get(s.image_id, 0) > 0]
    out: dict[str, dict] = {"n_edits": {}, "action": {}, "area": {}, "generator": {}, "turn": {}}
    for k in range(1, n_turns + 1):
        group = [s for s in edited if n_edits[s.image_id] == k]
        out["n_edits"][str(k)] = image_group(group, negatives, n_boot, seed)
    for name, low, high in AREAS:
        group = [s for s in edited if low <= s.edited_fraction < high]
        out["area"][name] = image_group(group, negatives, n_boot, seed)
    turn_px = _column_stack([_padded(s.turn_px, n_turns) for s in image_stats], n_turns)
    turn_found = _column_stack([_padded(s.turn_found, n_turns) for s in image_stats], n_turns)
    for action in ACTIONS:
        # per image, the turns whose action this is: their owned pixels add up
        mask = np.array([[actions.get((s.image_id, t), "") == action for t in range(1, n_turns + 1)]
                         for s in image_stats], bool).reshape(-1, n_turns)
        out["action"][action] = pixel_group((turn_px * mask).sum(1), (turn_found * mask).sum(1), n_boot, seed)
    n_gen = len(generators)
    class_px = _column_stack([_padded(s.class_px, n_gen) for s in image_stats], n_gen)
    class_found = _column_stack([_padded(s.class_found, n_gen) for s in image_stats], n_gen)
    for k, name in enumerate(generators):
        out["generator"][name] = pixel_group(class_px[:, k], class_found[:, k], n_boot, seed)
    for t in range(n_turns):
        out["turn"][str(t + 1)] = pixel_group(turn_px[:, t], turn_found[:, t], n_boot, seed)
    return out


def _padded(v: np.ndarray, n: int) -> np.ndarray:
    """``v`` cut or zero-padded to length ``n`` (a binary model's stats know only the classes it saw)."""
    out = np.zeros(n, np.int64)
    out[:min(n, len(v))] = v[:n]
    return out


def _column_stack(rows: list[np.ndarray], n: int) -> np.ndarray:
    return np.array(rows, np.int64).reshape(-1, n)
