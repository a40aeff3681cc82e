"""``crossgen@<generator>``: can a detector find edits by a generator it never saw?

The ``crossgen.detector`` architecture is trained on the binary task without any image that the
held-out generator touched (whatever its split), then tested on every such image (none of which was
trained on) plus the test split's never-edited images as negatives. Writes
``metrics/crossgen/<generator>.json`` with binary mIoU, detection accuracy and AUC.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset

from diffseg import records
from diffseg.detect import zoo
from diffseg.detect.data import SegmentationSet
from diffseg.detect.infer import score_dataset
from diffseg.detect.train import fit
from diffseg.params import Params
from diffseg.runtime import pick_device
from diffseg.seeding import keyed_seed


def touched_by(generator: str):
    """Manifest filter: images whose accepted edits include ``generator``."""
    return lambda m: m["generators"].str.split(",").apply(lambda gens: generator in gens)


def run(params: Params, held_out: str, metrics_path: Path) -> dict:
    cfg, spec = params.detect, params.detect.detectors[params.crossgen.detector]
    root, classes, device = Path(cfg.dataset), ["authentic", "edited"], pick_device(params.detect.device)
    seen = touched_by(held_out)
    train_set = SegmentationSet(root, ["train"], "binary", cfg.image_size, keep=lambda m: ~seen(m))
    unseen = SegmentationSet(root, ["train", "val", "test"], "binary", cfg.image_size, keep=seen)
    negatives = SegmentationSet(root, ["test"], "binary", cfg.image_size, keep=lambda m: m["n_edits"] == 0)
    if not len(unseen):
        raise ValueError(f"crossgen@{held_out}: no image in the dataset was edited by '{held_out}'")
    seed = keyed_seed(params.seed, "crossgen", held_out)
    torch.manual_seed(seed % (1 << 32))
    model = zoo.build(spec.arch, spec.encoder, 2, spec.encoder_weights)
    print(f"crossgen@{held_out}: training {params.crossgen.detector} on {len(train_set)} images without "
          f"'{held_out}', testing on {len(unseen)} unseen-generator images + {len(negatives)} negatives")
    # Class weights in params are per class of detect.task; this binary model trains unweighted.
    fit(model, train_set, None, replace(cfg, class_weights=None), classes, seed, device)
    scores = score_dataset(model, ConcatDataset([unseen, negatives]), classes, device, cfg.batch_size)["binary"]
    result = {"held_out": held_out, "detector": params.crossgen.detector, "train_images": len(train_set),
              "test_unseen_images": len(unseen), "test_negatives": len(negatives), "binary_miou": scores["miou"],
              "detection_accuracy": scores["detection_accuracy"], "detection_auc": scores["detection_auc"]}
    records.write_json(metrics_path, result)
    print(f"crossgen@{held_out}: binary mIoU {result['binary_miou']}, detection AUC {result['detection_auc']}")
    return result
