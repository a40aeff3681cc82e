"""``evaluate@<detector>``: the trained detector on the test split.

Writes ``metrics/eval/<detector>.json`` (mIoU, per-class IoU and F1, pixel accuracy, mean F1,
image-level detection accuracy and AUC, attribution accuracy on edited images; for an attribution
model also the binary view) and ``metrics/confusion/<detector>.json``, rows of (actual,
predicted) class names for DVC's confusion template.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg import records
from diffseg.detect import zoo
from diffseg.detect.data import SegmentationSet
from diffseg.detect.infer import score_dataset
from diffseg.params import Params
from diffseg.runtime import pick_device

MAX_CONFUSION_ROWS = 20_000  # DVC renders one row per sample; pixel counts are scaled down to this


def confusion_rows(matrix: np.ndarray, classes: list[str]) -> list[dict]:
    """(actual, predicted) rows whose counts are proportional to the pixel confusion matrix."""
    scale = min(1.0, MAX_CONFUSION_ROWS / max(int(matrix.sum()), 1))
    rows = []
    for t, actual in enumerate(classes):
        for p, predicted in enumerate(classes):
            rows += [{"actual": actual, "predicted": predicted}] * int(round(matrix[t, p] * scale))
    return rows


def run(params: Params, name: str, metrics_path: Path, confusion_path: Path) -> dict:
    device = pick_device(params.detect.device)
    model, config = zoo.load(Path("models/detectors") / name, device)
    test = SegmentationSet(Path(params.detect.dataset), ["test"], config["task"], config["image_size"])
    scores = score_dataset(model, test, config["classes"], device, params.detect.batch_size)
    matrix = scores.pop("_matrix")
    result = {"detector": name, "arch": config["arch"], "encoder": config["encoder"], "task": config["task"],
              "test_images": len(test), **scores}
    records.write_json(metrics_path, result)
    records.write_json(confusion_path, confusion_rows(matrix, config["classes"]))
    print(f"evaluate@{name}: mIoU {scores['task']['miou']}, binary mIoU {scores['binary']['miou']}, "
          f"detection AUC {scores['binary']['detection_auc']}")
    return result
