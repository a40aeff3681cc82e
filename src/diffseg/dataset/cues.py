"""Shortcut cues of a dataset (``cues.json``, written when ``assemble.cues`` is set).

Two traces can tell edited pixels from authentic ones without learning anything about the generators:

* **resampling**: with ``edit.output_resolution: source`` every generated region is made at the
  generator's native size and resized back, so it alone carries a resampling trace; with ``generator``
  the whole image is resampled instead. ``edit_scale`` summarises, per accepted edit, the factor
  between the generator's native size and the image it edited; ``image_scale``, per image, the factor
  between the final image and its source.
* **JPEG grid**: COCO photographs are JPEGs, so their 8x8 block boundaries show small steps. A region
  that was regenerated (or resampled by a non-integer factor) loses them. :func:`blockiness` measures the
  mean absolute luma step across block boundaries minus the mean step within blocks: about 0 for an
  image without a grid, positive for a JPEG-compressed one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffseg import records, resampling
from diffseg.params import Params

BLOCK = 8  # the JPEG block side


def blockiness_sums(image: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """[boundary step sum, boundary pairs, within-block step sum, within pairs] over neighbouring pixel pairs
    with both pixels in ``region`` (all pixels when None); the grid starts at the image's top-left corner."""
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    inside = np.ones(luma.shape, bool) if region is None else region.astype(bool)
    sums = np.zeros(4)
    for axis in (0, 1):
        steps = np.abs(np.diff(luma, axis=axis))
        both = np.logical_and(np.delete(inside, -1, axis), np.delete(inside, 0, axis))
        # a pair (k, k+1) straddles a block boundary when k+1 is a multiple of the block side
        at_boundary = (np.arange(luma.shape[axis] - 1) + 1) % BLOCK == 0
        boundary = both & (at_boundary[:, None] if axis == 0 else at_boundary[None, :])
        within = both & ~boundary
        sums += [steps[boundary].sum(), boundary.sum(), steps[within].sum(), within.sum()]
    return sums


def blockiness(image: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean step across 8x8 block boundaries minus mean step within blocks; None without pairs of both kinds."""
    return _difference(blockiness_sums(image, region))


def _difference(sums: np.ndarray) -> float | None:
    if sums[1] == 0 or sums[3] == 0:
        return None
    return round(float(sums[0] / sums[1] - sums[2] / sums[3]), 4)


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values, dtype=float)
    return {"n": int(v.size), "min": round(float(v.min()), 4), "median": round(float(np.median(v)), 4),
            "mean": round(float(v.mean()), 4), "max": round(float(v.max()), 4)}


def edit_scales(params: Params, accepted: pd.DataFrame, source_sizes: pd.DataFrame) -> tuple[list, list]:
    """Per accepted edit, the per-axis factor between its generator's native size and the image it edited."""
    if params.edit.output_resolution == "generator":  # the state's size changes by turn: the recorded factors
        return list(accepted["resample_x"]), list(accepted["resample_y"])
    xs, ys = [], []
    for row in accepted.to_dict("records"):  # the state keeps its source size: the size rule gives the factor
        width, height = (int(v) for v in source_sizes.loc[row["image_id"], ["width", "height"]])
        native = resampling.generator_size(params.generator(row["generator"]), width, height)
        x, y = resampling.scale_factors((width, height), native)
        xs.append(x)
        ys.append(y)
    return xs, ys


def summarise(params: Params, images: pd.DataFrame, metadata: pd.DataFrame, source_sizes: pd.DataFrame,
              out: records.StateDir) -> dict:
    """The cues of the dataset in ``out``; ``images`` is its manifest, ``source_sizes`` width and height by id."""
    accepted = metadata[metadata["decision"] == "accepted"]
    edit_x, edit_y = edit_scales(params, accepted, source_sizes)
    image_x, image_y = [], []
    inside, outside, never = np.zeros(4), np.zeros(4), np.zeros(4)
    for row in images.to_dict("records"):
        image = out.image(row["image_id"])
        x, y = resampling.scale_factors(tuple(int(v) for v in source_sizes.loc[row["image_id"], ["width", "height"]]),
                                        (image.shape[1], image.shape[0]))
        image_x.append(x)
        image_y.append(y)
        if row["n_edits"] == 0:
            never += blockiness_sums(image)
            continue
        edited = records.read_gray(out.label_path(row["image_id"])) > 0
        inside += blockiness_sums(image, edited)
        outside += blockiness_sums(image, ~edited)
    return {
        "output_resolution": params.edit.output_resolution,
        "edited_images": int((images["n_edits"] > 0).sum()),
        "never_edited_images": int((images["n_edits"] == 0).sum()),
        "edit_scale": {"x": _summary(edit_x), "y": _summary(edit_y)},
        "image_scale": {"x": _summary(image_x), "y": _summary(image_y),
                        "resampled_images": int(sum(x != 1 or y != 1 for x, y in zip(image_x, image_y)))},
        # pooled over the images' pixel pairs; inside/outside the edited pixels of the edited images
        "blockiness": {"inside_edits": _difference(inside), "outside_edits": _difference(outside),
                       "never_edited": _difference(never)},
    }
