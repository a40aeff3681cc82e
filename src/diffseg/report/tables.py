"""Markdown tables in the shape of the paper's, built from the metric JSON files only.

Every metric with a bootstrap interval renders as ``v [l, h]`` (three decimals, ``-`` where a bound or the
value is undefined); counts render as integers and the baselines' plain floats with three decimals.
Group and level keys are ordered by their numbers (the JSON files are written with sorted keys, which
would put "10.0" before "5.0" and "5-15%" before "<5%").
"""
from __future__ import annotations

import re
from typing import Iterable

# The breakdowns of metrics/eval/<d>.json, in report order; B = image groups, R = pixel-recall groups.
BREAKDOWNS = {"n_edits": "number of accepted edits", "action": "action of the edit owning the pixel",
              "area": "edited fraction of the image", "generator": "generator owning the pixel",
              "turn": "turn owning the pixel"}
B_METRICS = {"iou_edited": "IoU edited", "image_mean_iou": "image mean IoU", "detection_auc": "detection AUC"}
ROBUST_METRICS = {"iou_edited": "IoU edited", "miou": "mIoU (task)", "detection_auc": "detection AUC"}
CROSS_METRICS = {"iou_edited": "IoU edited", "detection_auc": "detection AUC", "pixel_auc": "pixel AUC"}
# Keys of a robustness file that are not distortion kinds.
ROBUST_META = ("detector", "task", "clean")


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def cell(value) -> str:
    """One table cell: a CI dict as ``v [l, h]``, a float with three decimals, None as ``-``."""
    if isinstance(value, dict):
        if value.get("value") is None:
            return "-"
        return f"{_num(float(value['value']))} [{_num(_float(value.get('low')))}, {_num(_float(value.get('high')))}]"
    return _num(value)


def _float(value) -> float | None:
    return None if value is None else float(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def group_key(label: str) -> tuple:
    """Sort key of a group or level label: by its first number ("<5%" before "5-15%"), words after numbers."""
    match = re.search(r"\d*\.?\d+", label)
    if match is None:
        return (1, 0.0, 0, label)
    return (0, float(match.group()), 0 if label.lstrip().startswith("<") else 1, label)


def ordered(keys: Iterable[str], preferred: Iterable[str] = ()) -> list[str]:
    """The distinct ``keys``: those in ``preferred`` first, in its order, then the rest by :func:`group_key`."""
    keys = set(keys)
    first = [k for k in preferred if k in keys]
    return first + sorted(keys - set(first), key=group_key)


def binary(evals: dict[str, dict]) -> str:
    """Two tables (pixel level, image level) of every detector's binary view."""
    pixel = [[n, e["binary"]["iou_edited"], e["binary"]["f1_edited"], e["binary"]["val_threshold"],
              e["binary"]["f1_edited_at_val_threshold"], e["binary"]["miou"], e["binary"]["pixel_accuracy"],
              e["binary"]["pixel_auc"], e["binary"]["pixel_ap"]] for n, e in evals.items()]
    image = [[n, e["binary"]["image_mean_iou"], e["binary"]["image_mean_f1"], e["binary"]["detection_auc"],
              e["binary"]["detection_accuracy"], e["binary"]["tpr_at_5_fpr"]] for n, e in evals.items()]
    return ("**Pixel level** (pooled over test pixels; F1 @0.5 and at the threshold chosen on validation)\n\n"
            + table(["detector", "IoU edited", "F1 @0.5", "val threshold", "F1 @val threshold", "mIoU",
                     "pixel acc.", "pixel AUC", "pixel AP"], pixel)
            + "\n\n**Image level** (per-image means; detection from the top-1% mean of P(edited))\n\n"
            + table(["detector", "image mean IoU", "image mean F1", "detection AUC", "detection acc.",
                     "TPR @5% FPR"], image))


def attribution(evals: dict[str, dict]) -> str:
    """mIoU, per-class IoU and accuracy on found pixels of the attribution-task detectors, then each one's
    generator confusion on the edited pixels it found."""
    evals = {n: e for n, e in evals.items() if e["task"] == "attribution" and "attribution" in e}
    if not evals:
        return "_No detector was trained on the attribution task._"
    classes = list(dict.fromkeys(c for e in evals.values() for c in e["classes"]))
    rows = [[n, e["attribution"]["miou"], *[e["attribution"]["per_class_iou"].get(c) for c in classes],
             e["attribution"]["accuracy_on_found"]] for n, e in evals.items()]
    parts = [table(["detector", "mIoU", *[f"IoU {c}" for c in classes], "accuracy on found"], rows)]
    for name, e in evals.items():
        conf = e["attribution"]["confusion_on_found"]
        parts.append(f"**Confusion on found pixels: {name}** (rows: true generator, columns: predicted)\n\n"
                     + table(["true \\ predicted", *conf["classes"]],
                             [[c, *row] for c, row in zip(conf["classes"], conf["matrix"])]))
    return "\n\n".join(parts)


def _counts(evals: dict[str, dict], kind: str, groups: list[str], unit: str) -> str:
    """The group sizes, from the first detector that has the group (every detector sees one test split)."""
    sizes = []
    for g in groups:
        found = [e["breakdowns"][kind][g][unit] for e in evals.values() if g in e["breakdowns"].get(kind, {})]
        sizes.append(f"{g}: {found[0]}")
    return f"{unit} per group: " + ", ".join(sizes)


def breakdowns(evals: dict[str, dict], generators: list[str]) -> str:
    """One table per breakdown, one row per detector: IoU/mean IoU/AUC per image group, recall per pixel group."""
    parts = []
    for kind, title in BREAKDOWNS.items():
        groups = ordered((g for e in evals.values() for g in e["breakdowns"].get(kind, {})),
                         generators if kind == "generator" else ())
        if not groups:
            continue
        first = next(e["breakdowns"][kind][g] for e in evals.values() for g in groups
                     if g in e["breakdowns"].get(kind, {}))
        is_pixels = "recall" in first
        metrics = {"recall": "recall"} if is_pixels else B_METRICS
        header = ["detector", *[f"{g}: {label}" for g in groups for label in metrics.values()]]
        rows = [[n, *[e["breakdowns"].get(kind, {}).get(g, {}).get(m) for g in groups for m in metrics]]
                for n, e in evals.items()]
        parts.append(f"**By {kind}** ({title}; {_counts(evals, kind, groups, 'pixels' if is_pixels else 'images')})"
                     "\n\n" + table(header, rows))
    return "\n\n".join(parts) if parts else "_No breakdowns in the evaluation files._"


def robust_kinds(robust: dict[str, dict]) -> list[str]:
    return ordered(k for r in robust.values() for k in r if k not in ROBUST_META)


def robust_levels(robust: dict[str, dict], kind: str) -> list[str]:
    return ordered(lv for r in robust.values() for lv in r.get(kind, {}))


def robustness(robust: dict[str, dict]) -> str:
    """Per distortion kind, one row per detector and metric: clean, then each level in numeric order."""
    if not robust:
        return "_No robustness results._"
    parts = []
    for kind in robust_kinds(robust):
        levels = robust_levels(robust, kind)
        rows = [[n, label, r["clean"].get(m), *[r.get(kind, {}).get(lv, {}).get(m) for lv in levels]]
                for n, r in robust.items() for m, label in ROBUST_METRICS.items()]
        parts.append(f"**Robustness: {kind}** (columns: distortion level)\n\n"
                     + table(["detector", "metric", "clean", *levels], rows))
    return "\n\n".join(parts)


def crossgen(results: dict[str, dict]) -> str:
    """One row per held-out generator: the unseen-generator test beside the seen-generator control."""
    if not results:
        return "_Cross-generator tests are switched off (`crossgen.held_out` is empty)._"
    header = ["held-out generator", "detector", "train images", "unseen images", "seen images", "negatives",
              *[f"{label} {side}" for label in CROSS_METRICS.values() for side in ("unseen", "seen")]]
    rows = [[g, r["detector"], r["train_images"], r["unseen"]["images"], r["seen"]["images"],
             r["unseen"]["negatives"], *[r[side][m] for m in CROSS_METRICS for side in ("unseen", "seen")]]
            for g, r in results.items()]
    return table(header, rows)


def classifiers(evals: dict[str, dict], baselines: dict[str, dict]) -> str:
    """Image-level detection: segmentation detectors (with intervals) and the image classifiers (floats)."""
    rows = [[n, "segmentation", e["binary"]["detection_accuracy"], e["binary"]["detection_auc"]]
            for n, e in evals.items()]
    rows += [[n, "image classifier", b.get("detection_accuracy"), b.get("detection_auc")]
             for n, b in baselines.items()]
    return table(["model", "kind", "detection acc.", "detection AUC"], rows)


RANK_METRICS = {"iou_edited": "IoU edited", "detection_auc": "detection AUC"}


def ranking(ranked: dict, evals: dict[str, dict]) -> str:
    """Per metric of ``metrics/ranking.json``: the detectors best first, each with its value and interval from
    ``metrics/eval/<d>.json``, its rank interval, how often it ranks first, and the paired difference to the
    detector below it (``yes`` where that difference's interval excludes 0)."""
    if not ranked.get("by"):
        return "_Fewer than two detectors: nothing to rank._"
    parts = []
    for metric, label in RANK_METRICS.items():
        rows = []
        for entry in ranked["by"][metric]:
            diff = entry["diff_next"]
            rows.append([entry["rank"], entry["detector"], evals[entry["detector"]]["binary"][metric],
                         f"{entry['rank_low']}-{entry['rank_high']}", entry["p_best"],
                         "-" if diff is None else f"{diff['detector']}: {cell(diff)}",
                         "-" if diff is None else "yes" if diff["separated"] else "no"])
        parts.append(f"**By {label}**\n\n" + table(
            ["rank", "detector", label, "rank interval", "P(rank 1)", "difference to the next", "told apart"], rows))
    return "\n\n".join(parts)
