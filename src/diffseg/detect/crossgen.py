"""``crossgen@<generator>``: can a detector find edits by a generator it never saw?

Two protocols share this stage:

* the paper's (Tab. 4): a generator of ``crossgen.unseen`` is never used for training at all; every
  ``train`` stage and every ``crossgen`` stage leaves its images out, and its own stage tests it here;
* leave-one-out (an extension): any other generator of ``crossgen.held_out`` is left out of this
  stage's training only.

The ``crossgen.detector`` architecture is trained on the binary task by the same code as ``train``
(:func:`diffseg.detect.train.fit`, best-on-validation checkpoint) on the train-split images that
neither the held-out generator nor any ``crossgen.unseen`` generator touched, and its checkpoint is
chosen on the val-split images they never touched either. "Touched" reads the manifest's
``generators`` column (:func:`diffseg.detect.data.touched_by`): every accepted edit counts, even one
whose pixels a later turn painted over, so no trace of those generators reaches training.

The same model is then scored at each image's own size (:mod:`diffseg.detect.scoring`) on two groups
that share one set of negatives, the never-edited images of the val and test splits:

* ``unseen``: every image, whatever its split, whose final label still holds pixels of the held-out
  generator (none of them was trained or validated on). Truth: the held-out generator's pixels are
  edited; pixels of the *other* generators on those images are ignored (:data:`IGNORE`), since the
  model has seen those generators and finding them says nothing about the unseen one.
* ``seen``: the control, test-split edited images that neither the held-out generator nor an unseen one
  touched, with all their edited pixels as truth. The gap between the two is the cost of an unseen
  generator.

Writes ``metrics/crossgen/<generator>.json``: per group the number of positive images and negatives,
pooled edited-class IoU, image-level detection AUC and pixel AUC, each with a 95% bootstrap interval;
with ``crossgen.unseen`` set, also ``never_trained_on``, those generators.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Collection

import numpy as np
import pandas as pd
import torch

from diffseg import records
from diffseg.detect import scoring, zoo
from diffseg.detect.data import IGNORE, SegmentationSet, ignored_label, touched_by
from diffseg.detect.train import fit, kept_epoch
from diffseg.errors import UserError
from diffseg.params import Params
from diffseg.runtime import pick_device
from diffseg.seeding import keyed_seed

BINARY = ["authentic", "edited"]
TruthOf = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Selection:
    """Which images play which part for one held-out generator (image ids, sorted)."""

    held_out: str
    class_id: int  # the held-out generator's value in the dataset's label maps
    train: list[str]  # train split, never touched by the held-out generator or an unseen one
    val: list[str]  # val split, never touched by them: the checkpoint is chosen on these
    unseen: list[str]  # any split, final label still has held-out pixels
    negatives: list[str]  # never-edited images of val + test
    seen: list[str]  # test split, edited, never touched by them: the control


def class_id(classes: list[str], generator: str) -> int:
    """The label value of ``generator`` in the dataset's ``classes.json``."""
    if generator not in classes[1:]:
        raise UserError(f"crossgen@{generator}: '{generator}' is not a generator of the dataset "
                        f"(classes.json lists {classes[1:]})")
    return classes.index(generator)


def select(root: Path, held_out: str, never_trained_on: Collection[str] = ()) -> Selection:
    """The images of each group; unseen positives are confirmed on their final label maps.

    ``never_trained_on``: the ``crossgen.unseen`` generators, kept out of training like the held-out one.
    """
    data = records.StateDir(root)
    classes = records.read_json(Path(root) / "classes.json")
    k = class_id(classes, held_out)
    m = data.manifest().sort_values("image_id").reset_index(drop=True)
    excluded = touched_by({held_out, *never_trained_on})(m)
    never_edited = m["n_edits"] == 0
    split = m["split"]

    def ids(rows: pd.Series) -> list[str]:
        return list(m.loc[rows, "image_id"])

    # Only touched images can hold its pixels; a touched image whose pixels were all painted over by a
    # later turn is neither a positive (nothing to find) nor a training image (it was touched).
    unseen = [i for i in ids(touched_by([held_out])(m)) if (records.read_gray(data.label_path(i)) == k).any()]
    return Selection(held_out=held_out, class_id=k,
                     train=ids((split == "train") & ~excluded), val=ids((split == "val") & ~excluded),
                     unseen=unseen, negatives=ids(split.isin(["val", "test"]) & never_edited),
                     seen=ids((split == "test") & ~excluded & ~never_edited))


def unseen_truth(label: np.ndarray, k: int) -> np.ndarray:
    """Binary truth for the unseen group: 1 on generator ``k``'s pixels, IGNORE on other generators'."""
    truth = np.where(label > 0, IGNORE, 0).astype(np.uint8)
    truth[label == k] = 1
    return truth


def seen_truth(label: np.ndarray) -> np.ndarray:
    """Binary truth for the seen control and the negatives: every edited pixel is 1."""
    return (label > 0).astype(np.uint8)


def score_images(model: torch.nn.Module, root: Path, ids: list[str], truth_of: TruthOf, image_size: int,
                 device: str, batch_size: int) -> list[scoring.ImageStats]:
    """Per-image statistics of the binary ``model`` on ``ids`` at each image's own size (sorted by id),
    compared with ``truth_of(label)``."""
    wanted = set(ids)
    images = scoring.FullSizeSet(root, ["train", "val", "test"], keep=lambda m: m["image_id"].isin(wanted),
                                 truth=lambda label, row: truth_of(label))
    return scoring.score_set(model, images, image_size, device, batch_size, "binary")


def group_summary(positives: list[scoring.ImageStats], negatives: list[scoring.ImageStats], n_boot: int,
                  seed: int) -> dict:
    """One group's block: image counts and the pooled IoU, detection AUC and pixel AUC with intervals."""
    binary = scoring.summarize(positives + negatives, BINARY, "binary", n_boot, seed)["binary"]
    return {"images": len(positives), "negatives": len(negatives), "iou_edited": binary["iou_edited"],
            "detection_auc": binary["detection_auc"], "pixel_auc": binary["pixel_auc"]}


def train_detector(params: Params, root: Path, selection: Selection, device: str) -> tuple[torch.nn.Module, dict]:
    """The ``crossgen.detector`` architecture trained on ``selection.train`` (checkpoint chosen on
    ``selection.val``) by the training stage's own :func:`fit`; returns it and a record of the run."""
    cfg, spec = params.detect.training(params.crossgen.detector), params.detect.detectors[params.crossgen.detector]

    def only(ids: list[str]) -> Callable[[pd.DataFrame], pd.Series]:
        return lambda m: m["image_id"].isin(ids)

    ignore = ignored_label(cfg.ignore_index)
    seed = keyed_seed(params.seed, "crossgen", selection.held_out)
    train_set = SegmentationSet(root, ["train"], "binary", cfg.image_size, keep=only(selection.train), ignore=ignore,
                                flip_seed=seed if cfg.flip else None)
    val_set = SegmentationSet(root, ["val"], "binary", cfg.image_size, keep=only(selection.val), ignore=ignore)
    torch.manual_seed(seed % (1 << 32))
    model = zoo.build(spec.arch, spec.encoder, len(BINARY), spec.encoder_weights, spec.frontend)
    # Class weights in params are per class of detect.task; this binary model trains unweighted.
    history = fit(model, train_set, val_set, replace(cfg, class_weights=None), BINARY, seed, device)
    kept = kept_epoch(history)
    val_iou = history[kept].get("val_iou_edited")
    return model, {"train_images": len(train_set), "val_images": len(val_set), "kept_epoch": kept,
                   "val_iou_edited": None if val_iou is None else round(val_iou, 6)}


def run(params: Params, held_out: str, metrics_path: Path) -> dict:
    cfg = params.detect
    root, device = Path(cfg.dataset), pick_device(cfg.device)
    never_trained_on = params.crossgen.unseen
    selection = select(root, held_out, never_trained_on)
    if not selection.unseen:
        raise UserError(f"crossgen@{held_out}: no image of {root} still holds pixels of '{held_out}'")
    without = sorted({held_out, *never_trained_on})
    print(f"crossgen@{held_out}: training {params.crossgen.detector} on {len(selection.train)} images "
          f"({len(selection.val)} val) without {without}; testing {len(selection.unseen)} unseen and "
          f"{len(selection.seen)} seen-generator images against {len(selection.negatives)} negatives")
    model, trained = train_detector(params, root, selection, device)

    def stats(ids: list[str], truth_of: TruthOf) -> list[scoring.ImageStats]:
        return score_images(model, root, ids, truth_of, cfg.image_size, device, cfg.batch_size)

    negatives = stats(selection.negatives, seen_truth)  # scored once, shared by both groups
    seed = keyed_seed(params.seed, "crossgen", held_out, "bootstrap")
    unseen = group_summary(stats(selection.unseen, lambda label: unseen_truth(label, selection.class_id)),
                           negatives, scoring.N_BOOT, seed)
    seen = group_summary(stats(selection.seen, seen_truth), negatives, scoring.N_BOOT, seed)
    result = {"held_out": held_out, "detector": params.crossgen.detector, **trained,
              "bootstrap": {"resamples": scoring.N_BOOT, "level": scoring.LEVEL, "seed": seed},
              "unseen": unseen, "seen": seen}
    if never_trained_on:  # absent otherwise, so leave-one-out results read as they always did
        result["never_trained_on"] = sorted(never_trained_on)
    records.write_json(metrics_path, result)
    print(f"crossgen@{held_out}: edited IoU unseen {_v(unseen['iou_edited'])} vs seen {_v(seen['iou_edited'])}, "
          f"detection AUC unseen {_v(unseen['detection_auc'])} vs seen {_v(seen['detection_auc'])}")
    return result


def _v(ci: dict) -> str:
    """A CI as 'v [l, h]' for the log line."""
    return f"{ci['value']} [{ci['low']}, {ci['high']}]"
