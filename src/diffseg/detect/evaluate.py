"""``evaluate@<detector>``: the trained detector on the test split, at each image's own size.

Writes

* ``metrics/eval/<detector>.json``: the binary view (P(edited) >= 0.5) for every detector, attribution
  figures for an attribution detector and breakdowns by edits, action, area, generator and turn, each a
  95% percentile-bootstrap interval over test images ({"value", "low", "high"}); the F1 at the P(edited)
  threshold that maximises F1 on the validation split;
* ``metrics/confusion/<detector>.json``: rows of (actual, predicted) task class names for DVC's
  confusion template;
* ``data/predictions/<detector>/``: ``per_image.parquet`` (image_id, edited, score, iou, f1, the binary
  view's tp, fp, fn pixel counts, n_edits, generators) and ``<image_id>.png``, the predicted label map at the image's size (generator ids for
  attribution, 0/1 for binary).

The detector's task, classes and working size come from its checkpoint's ``config.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffseg import records
from diffseg.detect import breakdowns, scoring, zoo
from diffseg.detect.data import seen_only
from diffseg.errors import UserError
from diffseg.params import Params
from diffseg.runtime import pick_device
from diffseg.seeding import keyed_seed

MAX_CONFUSION_ROWS = 20_000  # DVC renders one row per sample; pixel counts are scaled down to this


def confusion_rows(matrix: np.ndarray, classes: list[str]) -> list[dict]:
    """(actual, predicted) rows whose counts are proportional to the pixel confusion matrix."""
    scale = min(1.0, MAX_CONFUSION_ROWS / max(int(matrix.sum()), 1))
    rows = []
    for t, actual in enumerate(classes):
        for p, predicted in enumerate(classes):
            rows += [{"actual": actual, "predicted": predicted}] * int(round(matrix[t, p] * scale))
    return rows


def check_classes(config: dict, dataset_classes: list[str], dataset: Path) -> None:
    """An attribution detector names generators by index: refuse a dataset that numbers them otherwise."""
    if config["task"] == "attribution" and list(config["classes"]) != list(dataset_classes):
        raise UserError(f"{dataset}/classes.json is {list(dataset_classes)} but the detector "
                        f"'{config.get('name', '?')}' was trained on classes {list(config['classes'])}; "
                        f"retrain it on this dataset (dvc repro train)")


def prediction_writer(folder: Path, task: str):
    """Callback for scoring.score_set: the predicted label map as ``<folder>/<image_id>.png``."""
    def write(image_id: str, probs: np.ndarray) -> None:
        records.write_png(folder / f"{image_id}.png", scoring.task_prediction(probs, task))
    return write


def per_image_table(stats: list[scoring.ImageStats], items: pd.DataFrame) -> pd.DataFrame:
    """One row per test image for the report's figures and its paired-bootstrap ranking."""
    info = items.set_index("image_id")
    return pd.DataFrame({
        "image_id": [s.image_id for s in stats], "edited": [s.edited for s in stats],
        "score": [s.score for s in stats], "iou": [s.iou for s in stats], "f1": [s.f1 for s in stats],
        "tp": [s.tp for s in stats], "fp": [s.fp for s in stats], "fn": [s.fn for s in stats],
        "n_edits": [int(info.at[s.image_id, "n_edits"]) for s in stats],
        "generators": [str(info.at[s.image_id, "generators"]) for s in stats]})


def _fmt(c: dict) -> str:
    """A CI as 'v [l, h]' with three decimals ('n/a' where undefined)."""
    def one(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"
    return f"{one(c['value'])} [{one(c['low'])}, {one(c['high'])}]"


def run(params: Params, name: str, metrics_path: Path, confusion_path: Path,
        predictions_dir: Path | None = None) -> dict:
    device = pick_device(params.detect.device)
    model, config = zoo.load(Path("models/detectors") / name, device)
    task, classes, size = config["task"], list(config["classes"]), int(config["image_size"])
    root = Path(params.detect.dataset)
    dataset_classes = records.read_json(root / "classes.json")
    check_classes(config, dataset_classes, root)
    predictions_dir = records.fresh_dir(predictions_dir or Path("data/predictions") / name)
    batch = params.detect.batch_size

    keep = seen_only(params.crossgen.unseen)
    val = scoring.FullSizeSet(root, ["val"], keep=keep)
    threshold = scoring.pooled_best_threshold(scoring.score_set(model, val, size, device, batch, task))
    test = scoring.FullSizeSet(root, ["test"], keep=keep)
    stats = scoring.score_set(model, test, size, device, batch, task,
                              on_prediction=prediction_writer(predictions_dir, task))
    seed = keyed_seed(params.seed, "evaluate", name)
    summary = scoring.summarize(stats, classes, task, scoring.N_BOOT, seed, threshold)
    n_edits = dict(zip(test.items["image_id"], test.items["n_edits"].astype(int)))
    result = {"detector": name, "arch": config["arch"], "encoder": config["encoder"], "task": task,
              "classes": classes, "kept_epoch": config.get("kept_epoch"), "test_images": len(stats),
              "test_edited": sum(s.edited for s in stats), "test_negatives": sum(not s.edited for s in stats),
              "bootstrap": {"resamples": scoring.N_BOOT, "level": scoring.LEVEL, "seed": seed},
              **summary,
              "breakdowns": breakdowns.compute(stats, n_edits, breakdowns.turn_actions(scoring.metadata(root)),
                                               dataset_classes[1:], test.n_turns, scoring.N_BOOT, seed)}
    records.write_table(predictions_dir / "per_image.parquet", per_image_table(stats, test.items))
    records.write_json(metrics_path, result)
    records.write_json(confusion_path, confusion_rows(scoring.task_confusion(stats, len(classes)), classes))
    b = result["binary"]
    line = (f"evaluate@{name} ({task}, {len(stats)} test images): IoU edited {_fmt(b['iou_edited'])}, "
            f"F1 {_fmt(b['f1_edited'])}, detection AUC {_fmt(b['detection_auc'])}")
    if "attribution" in result:
        line += f", attribution mIoU {_fmt(result['attribution']['miou'])}"
    print(line + f", val threshold {b['val_threshold']}")
    return result
