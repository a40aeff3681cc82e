"""Torch datasets over an assembled dataset folder: images, label maps and image-level labels.

Items are resized to a square ``image_size`` (bilinear for images, nearest for labels) so batches
stack; the ``binary`` task maps every generator class k > 0 to 1 and keeps the ignored label value
(:data:`IGNORE`, 255) as it is, so the loss still skips those pixels. Images are read lazily, one item
at a time, so memory does not grow with the dataset. :func:`touched_by` picks the images a set of
generators edited (the generators ``crossgen.unseen`` keeps away from every detector's training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from diffseg import records
from diffseg.seeding import keyed_unit

TASKS = ("binary", "attribution")
IGNORE = 255  # the label value no class uses (labels are uint8): pixels that count nowhere
NO_IGNORE = -100  # torch's "nothing ignored" value; params accept it as a synonym of null


def touched_by(generators: Collection[str]) -> Callable[[pd.DataFrame], pd.Series]:
    """Manifest filter: images with an accepted edit by any of ``generators``, painted over or not.

    It reads the manifest's ``generators`` column, so an edit whose pixels a later turn covered still
    counts: no trace of those generators reaches a detector trained on the other images.
    """
    wanted = set(generators)
    return lambda m: (m["generators"].fillna("").str.split(",")
                      .apply(lambda gens: not wanted.isdisjoint(gens)).astype(bool))


def seen_only(unseen: Collection[str]) -> Callable[[pd.DataFrame], pd.Series] | None:
    """Manifest filter for ``evaluate``, ``robustness`` and the baselines: images no ``crossgen.unseen``
    generator touched (those are scored by their ``crossgen`` stage only); None keeps every image."""
    if not unseen:
        return None
    touched = touched_by(unseen)
    return lambda m: ~touched(m)


def ignored_label(ignore_index: int | None) -> int | None:
    """The label value to ignore from the ``detect.ignore_index`` param: None when nothing is ignored."""
    return None if ignore_index is None or ignore_index == NO_IGNORE else int(ignore_index)


def task_classes(classes: list[str], task: str) -> list[str]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return ["authentic", "edited"] if task == "binary" else list(classes)


def to_task(label: np.ndarray, task: str, ignore: int | None = IGNORE) -> np.ndarray:
    """Dataset class ids -> the task's class ids (int64); ``ignore`` pixels keep their value in both tasks."""
    if task != "binary":
        return label.astype(np.int64)
    out = (label > 0).astype(np.int64)
    if ignore is not None:
        out[label == ignore] = ignore
    return out


def prepare(image: np.ndarray, label: np.ndarray | None, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An RGB uint8 image (and its label map) as tensors at ``size`` x ``size``."""
    pixels = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(pixels / 255.0).permute(2, 0, 1).contiguous()
    if label is None:
        return x, None
    y = np.asarray(Image.fromarray(label).resize((size, size), Image.Resampling.NEAREST))
    return x, torch.from_numpy(y.astype(np.int64))


class SegmentationSet(Dataset):
    """Items of one or more splits of ``root``: (image, target, image_id).

    ``keep`` optionally filters the manifest rows (e.g. cross-generator tests drop a generator);
    ``distort`` optionally transforms the uint8 image before resizing (robustness tests); label pixels
    equal to ``ignore`` stay ``ignore`` in the target (None: nothing is set aside). With ``flip_seed``
    (training only) each item is mirrored left-right with probability 1/2, drawn per (epoch, image id) so a
    run is exactly repeatable; the training loop calls :meth:`set_epoch`.
    """

    def __init__(self, root: Path, splits: list[str], task: str, image_size: int,
                 keep: Callable[[pd.DataFrame], pd.Series] | None = None,
                 distort: Callable[[np.ndarray], np.ndarray] | None = None, ignore: int | None = IGNORE,
                 flip_seed: int | None = None):
        self.data = records.StateDir(root)
        manifest = self.data.manifest()
        manifest = manifest[manifest["split"].isin(splits)]
        if keep is not None:
            manifest = manifest[keep(manifest)]
        self.items = manifest.sort_values("image_id").reset_index(drop=True)
        self.classes = records.read_json(Path(root) / "classes.json")
        self.task, self.image_size, self.distort, self.ignore = task, image_size, distort, ignore
        self.flip_seed, self.epoch = flip_seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def image_ids(self) -> list[str]:
        return list(self.items["image_id"])

    def is_edited(self) -> np.ndarray:
        return (self.items["n_edits"] > 0).to_numpy()

    def __getitem__(self, index: int):
        image_id = self.items.at[index, "image_id"]
        image = self.data.image(image_id)
        label = records.read_gray(self.data.label_path(image_id))
        if self.distort is not None:
            image = self.distort(image)
            if image.shape[:2] != label.shape:
                label = np.asarray(Image.fromarray(label).resize(image.shape[1::-1], Image.Resampling.NEAREST))
        x, y = prepare(image, to_task(label, self.task, self.ignore).astype(np.uint8), self.image_size)
        if self.flip_seed is not None and keyed_unit(self.flip_seed, "flip", self.epoch, image_id) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y, image_id
