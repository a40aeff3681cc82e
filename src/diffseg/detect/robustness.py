"""``robustness@<detector>``: test-split metrics under each distortion level from params.

Each test image is distorted at its own, full size (:mod:`diffseg.detect.distortions`); the detector
sees it at its working size as it was trained (:func:`diffseg.detect.scoring.score_set`), and its class
probabilities are resized to the image's *original* label map, which is never distorted, resized or
otherwise touched. So a resize level changes what the detector sees, not what it is scored against, and
every level is scored on exactly the pixels of the clean run. (The step down to the working size still
averages away part of the JPEG blocks and the noise of an image much larger than it: that is what the
detector meets in use, not an artefact of the scoring.)

Writes ``metrics/robustness/<detector>.json``::

    {"detector": ..., "task": ..., "clean": M, "jpeg": {"50": M, "70": M, "90": M}, "resize": {...}, ...}

with M = {"iou_edited": CI, "miou": CI (of the detector's task), "detection_auc": CI} and the levels of
each distortion in increasing numeric order (the file keeps that order; a distortion without levels
is left out), and one plot table per distortion, ``metrics/robustness_curves/<detector>/<distortion>.json``: rows (level, iou_edited, miou,
detection_auc) sorted by level, for DVC's line plots. Every level resamples the same test images in its
bootstrap (evaluate's seed), so the intervals of two levels are paired and the clean ones are those of
``metrics/eval/<detector>.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import torch

from diffseg import records
from diffseg.detect import scoring, zoo
from diffseg.detect.data import seen_only
from diffseg.detect.distortions import KINDS, Distortion, distortion, level_key, ordered_levels
from diffseg.errors import UserError
from diffseg.params import Params
from diffseg.runtime import pick_device
from diffseg.seeding import keyed_seed

METRICS = ("iou_edited", "miou", "detection_auc")  # the keys of M, in file order


def distorted_test_split(root: Path, distort: Distortion | None, unseen: Collection[str] = ()) -> scoring.FullSizeSet:
    """The test split at full size, less the images ``unseen`` generators touched (:func:`seen_only`): each
    image passed through ``distort``, its label map as stored."""
    return scoring.FullSizeSet(root, ["test"], keep=seen_only(unseen), distort=distort)


def score(model: torch.nn.Module, root: Path, task: str, distort: Distortion | None, image_size: int, device: str,
          batch_size: int, on_prediction: Callable[[str, np.ndarray], None] | None = None,
          unseen: Collection[str] = ()) -> list[scoring.ImageStats]:
    """Per-image statistics of ``model`` on the (distorted) test split (less ``unseen`` generators' images),
    its probabilities resized from the working size to each *label's* size
    (:func:`diffseg.detect.scoring.score_set` sizes them by the truth), so a resized image is still scored
    on every pixel of its original label."""
    return scoring.score_set(model, distorted_test_split(root, distort, unseen), image_size, device, batch_size,
                             task, on_prediction=on_prediction)


def level_metrics(stats: list[scoring.ImageStats], classes: list[str], task: str, n_boot: int, seed: int) -> dict:
    """M for one level: edited-class IoU, the task's mIoU and detection AUC, each a CI."""
    summary = scoring.summarize(stats, classes, task, n_boot, seed)
    block = summary["attribution"] if task == "attribution" else summary["binary"]
    return {"iou_edited": summary["binary"]["iou_edited"], "miou": block["miou"],
            "detection_auc": summary["binary"]["detection_auc"]}


def curve_rows(per_level: dict[str, dict]) -> list[dict]:
    """Plot rows of one distortion, sorted by the numeric level; CI values only."""
    rows = [{"level": float(level), **{k: m[k]["value"] for k in METRICS}} for level, m in per_level.items()]
    return sorted(rows, key=lambda row: row["level"])


def run(params: Params, name: str, metrics_path: Path, plots_dir: Path) -> dict:
    device = pick_device(params.detect.device)
    model, config = zoo.load(Path("models/detectors") / name, device)
    root, task, classes = Path(params.detect.dataset), config["task"], list(config["classes"])
    dataset_classes = records.read_json(root / "classes.json")
    if task == "attribution" and classes != dataset_classes:  # generator ids would mean other generators
        raise UserError(f"{root}/classes.json is {dataset_classes} but the detector '{name}' was trained on "
                        f"classes {classes}; retrain it on this dataset (dvc repro train)")
    # evaluate's bootstrap seed at every level: the same image resamples, so levels compare pairwise and
    # the clean intervals are exactly those of metrics/eval/<detector>.json.
    seed = keyed_seed(params.seed, "evaluate", name)

    def measure(distort: Distortion | None) -> dict:
        stats = score(model, root, task, distort, int(config["image_size"]), device, params.detect.batch_size,
                      unseen=params.crossgen.unseen)
        return level_metrics(stats, classes, task, scoring.N_BOOT, seed)

    result: dict[str, Any] = {"detector": name, "task": task, "clean": measure(None)}
    plots_dir = records.fresh_dir(plots_dir)
    for kind in KINDS:
        levels = ordered_levels(getattr(params.robustness, kind))
        if not levels:  # switched off: no column in the report, no empty plot
            continue
        per_level = {level_key(level): measure(distortion(kind, level)) for level in levels}
        result[kind] = per_level
        records.write_json(plots_dir / f"{kind}.json", curve_rows(per_level), sort_keys=False)
        print(f"robustness@{name}: {kind}: clean {result['clean']['miou']['value']}, "
              + ", ".join(f"{lv}: {m['miou']['value']}" for lv, m in per_level.items()))
    records.write_json(metrics_path, result, sort_keys=False)
    return result
