"""Heuristic quality checks of one edit: cheap, model-free, and each with a readable reason."""
from __future__ import annotations

import numpy as np

from diffseg.params import Filter


def score(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Measurements the decision is based on (kept in the manifest for audit)."""
    inside = mask.astype(bool)
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16))
    return {
        "mask_area": float(inside.mean()),
        "change_in_mask": float(diff[inside].mean()) if inside.any() else 0.0,
        "brightness_in_mask": float(after[inside].mean()) if inside.any() else 0.0,
        "changed_outside_mask": float(diff[~inside].max()) if (~inside).any() else 0.0,
    }


def decide(scores: dict[str, float], cfg: Filter) -> tuple[bool, str]:
    """Accept or reject an edit; the reason names the first failed check."""
    if scores["changed_outside_mask"] > 0:
        return False, "pixels outside the mask changed (composite contract broken)"
    if not cfg.min_area <= scores["mask_area"] <= cfg.max_area:
        return False, f"mask area {scores['mask_area']:.4f} outside [{cfg.min_area}, {cfg.max_area}]"
    if scores["brightness_in_mask"] < cfg.black_level:
        return False, f"black output (mean level {scores['brightness_in_mask']:.2f} < {cfg.black_level})"
    if scores["change_in_mask"] < cfg.min_change:
        return False, f"edit barely changed the region (mean change {scores['change_in_mask']:.2f} < {cfg.min_change})"
    return True, "passed heuristics"
