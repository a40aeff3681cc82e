"""Markdown tables in the shape of the paper's: binary, attribution, robustness, cross-generator and the
segmentation-versus-classifier comparison, built from the metric JSON files only."""
from __future__ import annotations


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def binary(evals: dict[str, dict]) -> str:
    rows = [[name, e["arch"], e["encoder"], e["binary"]["miou"], e["binary"]["pixel_accuracy"], e["binary"]["mean_f1"],
             e["binary"]["detection_accuracy"], e["binary"]["detection_auc"]] for name, e in evals.items()]
    return table(["detector", "arch", "encoder", "mIoU", "pixel acc.", "mean F1", "detection acc.", "detection AUC"],
                 rows)


def attribution(evals: dict[str, dict]) -> str:
    evals = {n: e for n, e in evals.items() if e["task"] == "attribution"}
    if not evals:
        return "_No detector was trained on the attribution task._"
    classes = list(next(iter(evals.values()))["task"]["per_class_iou"])
    rows = [[name, e["task"]["miou"], *[e["task"]["per_class_iou"][c] for c in classes],
             e["task"].get("attribution_accuracy")] for name, e in evals.items()]
    return table(["detector", "mIoU", *[f"IoU {c}" for c in classes], "attribution acc."], rows)


def robustness(robust: dict[str, dict]) -> str:
    parts = []
    for kind, unit in [("jpeg", "quality"), ("resize", "scale"), ("blur", "sigma"), ("noise", "std")]:
        levels = list(next(iter(robust.values()))[kind]) if robust else []
        rows = [[name, r["clean"]["miou"], *[r[kind][lv]["miou"] for lv in levels]] for name, r in robust.items()]
        parts.append(f"**{kind}** (mIoU of the detector's task; columns: {unit})\n\n"
                     + table(["detector", "clean", *levels], rows))
    return "\n\n".join(parts)


def crossgen(results: dict[str, dict]) -> str:
    if not results:
        return "_Cross-generator tests are switched off (`crossgen.held_out` is empty)._"
    rows = [[g, r["detector"], r["train_images"], r["test_unseen_images"], r["test_negatives"], r["binary_miou"],
             r["detection_accuracy"], r["detection_auc"]] for g, r in results.items()]
    return table(["held-out generator", "detector", "train images", "unseen-generator images", "negatives",
                  "binary mIoU", "detection acc.", "detection AUC"], rows)


def classifiers(evals: dict[str, dict], baselines: dict[str, dict]) -> str:
    rows = [[name, "segmentation", e["binary"]["detection_accuracy"], e["binary"]["detection_auc"]]
            for name, e in evals.items()]
    rows += [[name, "image classifier", b.get("detection_accuracy"), b.get("detection_auc")]
             for name, b in baselines.items()]
    return table(["model", "kind", "detection acc.", "detection AUC"], rows)
