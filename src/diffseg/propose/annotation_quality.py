"""``annotation_quality``: how well the planner's masks match the source annotations.

Reviewers of DiffSeg30k asked for a measure of mask quality. Where an edit's target is a known
instance (the target phrase names the category of an instance annotated in the image), the ``vlm``
planner records the IoU of the segmenter's mask (before hole filling and dilation) with the best
matching annotated instance of that category (``annotation_iou`` in the plan manifest).

``propose@<turn>`` writes the turn's summary (:func:`summarise`) to
``metrics/annotation_quality/<turn>.json``; this stage adds the turns up into
``metrics/annotation_quality.json`` and a Markdown table, ``metrics/annotation_quality.md``. The
annotations planner's masks *are* the annotations, so its turns measure nothing and say so.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from diffseg import records
from diffseg.params import Params

THRESHOLDS = (0.5, 0.75)  # shares of targets segmented at least this well


def _stats(ious: pd.Series) -> dict:
    out = {"n": int(len(ious)), "iou_sum": round(float(ious.sum()), 6),
           "mean_iou": round(float(ious.mean()), 4) if len(ious) else None}
    for t in THRESHOLDS:
        out[f"n_iou_{int(t * 100)}"] = int((ious >= t).sum())
    return out


def summarise(manifest: pd.DataFrame, turn: str, params: Params, categories: dict[int, str]) -> dict:
    """One turn's summary, overall and per category, from its plan manifest."""
    planned = manifest[manifest["status"] == records.OK]
    summary = {"turn": turn, "planner": params.propose.planner, "n_planned": int(len(planned))}
    if "annotation_iou" not in manifest.columns:
        return {**summary, "segmenter": "none (masks are the annotations)", **_stats(pd.Series([], dtype=float)),
                "by_category": {}}
    known = planned[planned["annotation_iou"] >= 0]
    by_category = {categories.get(int(c), f"category {c}"): _stats(g["annotation_iou"])
                   for c, g in known.groupby("category_id")}
    return {**summary, "segmenter": params.propose.grounding.segmenter, **_stats(known["annotation_iou"]),
            "by_category": dict(sorted(by_category.items()))}


def aggregate(turns: list[dict]) -> dict:
    """Every turn's summary plus the totals over turns (sums, so no raw IoU list is needed)."""
    def total(parts: list[dict]) -> dict:
        n = sum(p["n"] for p in parts)
        out = {"n": n, "iou_sum": round(sum(p["iou_sum"] for p in parts), 6),
               "mean_iou": round(sum(p["iou_sum"] for p in parts) / n, 4) if n else None}
        for t in THRESHOLDS:
            key = f"n_iou_{int(t * 100)}"
            out[key] = sum(p[key] for p in parts)
        return out

    names = sorted({c for t in turns for c in t["by_category"]})
    return {"turns": {t["turn"]: t for t in turns},
            "total": {"n_planned": sum(t["n_planned"] for t in turns), **total(turns)},
            "by_category": {c: total([t["by_category"][c] for t in turns if c in t["by_category"]]) for c in names}}


def _share(part: dict, t: float) -> str:
    return f"{part[f'n_iou_{int(t * 100)}'] / part['n']:.0%}" if part["n"] else "-"


def _mean(part: dict) -> str:
    return f"{part['mean_iou']:.3f}" if part["mean_iou"] is not None else "-"


def table(summary: dict) -> str:
    """The Markdown report: one row per turn, one per category."""
    shares = " | ".join(f"IoU >= {t}" for t in THRESHOLDS)
    lines = ["# Annotation quality", "",
             "IoU of the planner's segmentation (before hole filling and dilation) with the annotated instance, "
             "where the edit's target names a category annotated in the image. The annotations planner's masks are "
             "the annotations, so it measures nothing; on the offline profile the segmenter is a random twin, so "
             "its numbers prove the bookkeeping, not Grounded-SAM.", "",
             f"| turn | planner | segmenter | planned edits | known-instance targets | mean IoU | {shares} |",
             "|" + "---|" * (6 + len(THRESHOLDS))]
    for name, t in summary["turns"].items():
        lines.append(f"| {name} | {t['planner']} | {t['segmenter']} | {t['n_planned']} | {t['n']} | {_mean(t)} | "
                     + " | ".join(_share(t, x) for x in THRESHOLDS) + " |")
    total = summary["total"]
    lines.append(f"| all | | | {total['n_planned']} | {total['n']} | {_mean(total)} | "
                 + " | ".join(_share(total, x) for x in THRESHOLDS) + " |")
    lines += ["", f"| category | known-instance targets | mean IoU | {shares} |", "|" + "---|" * (3 + len(THRESHOLDS))]
    for name, part in summary["by_category"].items():
        lines.append(f"| {name} | {part['n']} | {_mean(part)} | " + " | ".join(_share(part, x) for x in THRESHOLDS)
                     + " |")
    if not summary["by_category"]:
        lines.append("| (none) | 0 | - | " + " | ".join("-" for _ in THRESHOLDS) + " |")
    return "\n".join(lines) + "\n"


def run(params: Params, turns_dir: Path, json_path: Path, md_path: Path) -> dict:
    """Add up ``turns_dir/<turn>.json`` of every turn in params into ``json_path`` and ``md_path``."""
    missing = [t for t in params.turn_names if not (turns_dir / f"{t}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"annotation_quality: no summary for turn(s) {missing} in {turns_dir} "
                                f"(written by propose@<turn>)")
    summary = aggregate([records.read_json(turns_dir / f"{t}.json") for t in params.turn_names])
    records.write_json(json_path, summary)
    records.write_bytes(md_path, table(summary).encode())
    total = summary["total"]
    print(f"annotation_quality: {total['n']} known-instance targets, mean IoU {_mean(total)}")
    return summary
