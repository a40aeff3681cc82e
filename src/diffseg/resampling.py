"""Generator sizes and whole-state resampling: the size rule every family generates at, and what
``edit.output_resolution: generator`` does to a state (image, label, turn mask, instances) when it moves
to a generator's native size.

The image is resampled with Lanczos, as the edit stage resizes a generator's input; label and turn mask
with nearest neighbour, so they stay class ids and bit sets; instance masks likewise, their boxes and
areas recomputed from the resampled masks so the three always agree.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from diffseg import masks
from diffseg.params import Generator

SIZE_MULTIPLE = 64  # every family's latent grid divides evenly at multiples of 64 pixels
SQUARE_FAMILIES = frozenset({"glide"})  # checkpoints that only generate square images, at ``resolution``


def native_size(width: int, height: int, resolution: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) with the longer side at ``resolution``, both multiples of ``multiple``, aspect kept."""
    scale = resolution / max(width, height)
    return tuple(max(multiple, int(round(side * scale / multiple)) * multiple) for side in (width, height))


def generator_size(gen: Generator, width: int, height: int) -> tuple[int, int]:
    """The size ``gen`` generates at for a ``width`` x ``height`` image."""
    if gen.family in SQUARE_FAMILIES:
        return gen.resolution, gen.resolution
    return native_size(width, height, gen.resolution)


def resample_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 image at ``size`` = (width, height), Lanczos; the same pixels when the size is its own."""
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def resample_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 map (label, turn mask) at ``size``, nearest neighbour: every value stays one that was there."""
    return np.asarray(Image.fromarray(values).resize(size, Image.Resampling.NEAREST))


def scale_annotations(coco: dict, sizes: dict[int, tuple[int, int]]) -> dict:
    """``coco`` with the images of ``sizes`` (COCO id -> new (width, height)) and their instances resampled.

    Instance masks are RLE in every state (the source stage writes them so); an instance that vanishes at
    the new size (a sliver under one pixel) is dropped, since no edit could target it any more.
    """
    if not sizes:
        return coco
    images = [dict(img, width=sizes[img["id"]][0], height=sizes[img["id"]][1]) if img["id"] in sizes else img
              for img in coco["images"]]
    anns = []
    for ann in coco["annotations"]:
        if ann["image_id"] not in sizes:
            anns.append(ann)
            continue
        mask = masks.resize_mask(masks.rle_decode(ann["segmentation"]), sizes[ann["image_id"]])
        if mask.any():
            anns.append(dict(ann, segmentation=masks.rle_encode(mask), area=float(mask.sum()), bbox=masks.bbox(mask)))
    return dict(coco, images=images, annotations=anns)


def scale_factors(before: tuple[int, int], after: tuple[int, int]) -> tuple[float, float]:
    """Per-axis resampling factor from ``before`` to ``after`` (both (width, height)), rounded for the record."""
    return round(after[0] / before[0], 6), round(after[1] / before[1], 6)
