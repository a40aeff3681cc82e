"""The detectors ranked, with how sure the ranking is: a paired bootstrap over the common test images.

Each detector's interval in ``metrics/eval/<d>.json`` comes from its own resamples, so two overlapping
intervals do not say whether one detector beats the other on the same images. Here every resample draws
one set of test images and scores every detector on it (a paired bootstrap), which gives

* each detector's rank interval (the 2.5th and 97.5th percentile of its rank over resamples) and the share
  of resamples in which it ranks first;
* the paired difference to the next-ranked detector with its interval: where the interval excludes 0 the
  two are told apart on this test split, otherwise their order is not supported by the data.

Metrics: the pooled IoU of the edited class (the paper's headline, from the per-image TP/FP/FN of the
binary view in ``data/predictions/<d>/per_image.parquet``) and the image-level detection AUC (from the
per-image score). The values equal those of ``metrics/eval/<d>.json``; the ranking is written to
``metrics/ranking.json`` and the report's table is rendered from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from diffseg import bootstrap, records
from diffseg.errors import UserError

N_BOOT = 1000
LEVEL = 0.95
# metric -> the per-image columns it is computed from, and the statistic on a resample of those rows.
METRICS = {"iou_edited": (["tp", "fp", "fn"], bootstrap.pooled_iou),
           "detection_auc": (["edited", "score"], bootstrap.image_auc)}


def load(predictions: Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each detector's per-image table, rows in one image order; every detector must cover the same images."""
    tables = {n: records.read_table(predictions / n / "per_image.parquet").set_index("image_id").sort_index()
              for n in names}
    reference = next(iter(tables.values())).index if tables else None
    for name, frame in tables.items():
        if not frame.index.equals(reference):
            raise UserError(f"{predictions / name}/per_image.parquet covers other test images than "
                            f"{predictions / names[0]}: re-run evaluate@{name} on the current dataset")
    return tables


def _rank_rows(values: np.ndarray) -> np.ndarray:
    """Ranks (1 = best, ties share the best rank) of each row of ``values``: resamples x detectors."""
    return np.stack([rankdata(-row, method="min") for row in values]).astype(int)


def rank(tables: dict[str, pd.DataFrame], metric: str, seed: int, n_boot: int = N_BOOT) -> list[dict]:
    """The detectors best first by ``metric`` on all test images, each with its rank interval, the share of
    resamples it ranks first and the paired difference to the detector below it."""
    columns, statistic = METRICS[metric]
    names = list(tables)
    rows = {n: tables[n][columns].to_numpy(np.float64) for n in names}
    full = np.array([_value(statistic(rows[n])) for n in names])
    n_images = len(next(iter(rows.values())))
    idx = np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))
    draws = np.array([[_value(statistic(rows[n][i])) for n in names] for i in idx])
    # A resample where the metric is undefined for any detector (one class only, for the AUC) is dropped
    # for all of them, so every kept resample compares the same images.
    draws = draws[~np.isnan(draws).any(axis=1)]
    if 2 * len(draws) < n_boot:
        raise UserError(f"ranking by {metric}: only {len(draws)} of {n_boot} resamples define it for every "
                        f"detector; the test split is too small to rank them")
    ranks = _rank_rows(draws)
    low_q, high_q = 100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2
    order = sorted(range(len(names)), key=lambda k: (-full[k], names[k]))
    full_ranks = rankdata(-full, method="min").astype(int)
    out = []
    for position, k in enumerate(order):
        entry = {"detector": names[k], "rank": int(full_ranks[k]), "value": round(float(full[k]), 6),
                 "rank_low": int(np.floor(np.percentile(ranks[:, k], low_q))),
                 "rank_high": int(np.ceil(np.percentile(ranks[:, k], high_q))),
                 "p_best": round(float((ranks[:, k] == 1).mean()), 4), "diff_next": None}
        if position + 1 < len(order):
            below = order[position + 1]
            diff = draws[:, k] - draws[:, below]
            low, high = np.percentile(diff, [low_q, high_q])
            entry["diff_next"] = {"detector": names[below], "value": round(float(full[k] - full[below]), 6),
                                  "low": round(float(low), 6), "high": round(float(high), 6),
                                  "separated": bool(low > 0 or high < 0)}
        out.append(entry)
    return out


def _value(x) -> float:
    return np.nan if x is None else float(x)


def compute(predictions: Path, names: list[str], seed: int) -> dict:
    """``metrics/ranking.json``: the ranking by each metric, with the resampling that produced it."""
    tables = load(predictions, names)
    return {"resamples": N_BOOT, "level": LEVEL, "seed": seed,
            "test_images": len(next(iter(tables.values()))) if tables else 0,
            "by": {metric: rank(tables, metric, seed) for metric in METRICS} if len(tables) > 1 else {}}
