"""Binary masks: COCO RLE encoding, dilation, resizing and compositing.

The composite contract lives here: after an edit, every pixel outside the mask is bit-identical to
the image before the edit, and the label changes exactly on the mask.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage


def rle_encode(mask: np.ndarray) -> dict:
    """COCO RLE of a boolean HxW mask, with ``counts`` as text so it fits JSON."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict) -> np.ndarray:
    counts = rle["counts"]
    encoded = {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask.copy()
    disk = _disk(pixels)
    return ndimage.binary_dilation(mask, structure=disk)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``size`` = (width, height): keeps the mask binary."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize(size, Image.Resampling.NEAREST)) > 127


def composite(before: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Generated pixels inside ``mask``, the untouched ``before`` pixels everywhere else."""
    if before.shape != generated.shape or before.shape[:2] != mask.shape:
        raise ValueError(f"composite shapes differ: {before.shape}, {generated.shape}, mask {mask.shape}")
    return np.where(mask[..., None], generated, before)


def update_label(label: np.ndarray, mask: np.ndarray, class_id: int) -> np.ndarray:
    """The last generator to modify a pixel owns it."""
    out = label.copy()
    out[mask] = class_id
    return out


def update_turnmask(turnmask: np.ndarray, mask: np.ndarray, turn_index: int) -> np.ndarray:
    """Set bit ``turn_index - 1`` where turn ``turn_index`` (1-based) edited."""
    if not 1 <= turn_index <= 8:
        raise ValueError(f"turn index {turn_index} does not fit a uint8 turn mask (1..8)")
    out = turnmask.copy()
    out[mask] |= np.uint8(1 << (turn_index - 1))
    return out


def ellipse(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The ellipse inscribed in ``box`` (x0, y0, x1, y1), sampled at pixel centres: an added object's region."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    cx, cy, rx, ry = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
