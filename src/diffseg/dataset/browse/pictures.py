"""The pictures of the browse site: label views, outlined regions and grid thumbnails, as uint8 RGB arrays.

Overlays blend a class colour into the image, which disappears on busy or similarly coloured edits; here
every region is drawn as a solid outline in its class colour with a black halo outside it, so it shows on
any background, and the label view paints the classes solid over a dimmed grey copy of the image.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from diffseg.overlays import class_colours

THUMB_SIDE = 192  # grid thumbnails: larger images are shrunk to fit this square, smaller ones kept as they are
HALO = np.array([0, 0, 0], np.uint8)  # drawn just outside each outline, so a light colour shows on light pixels


def palette(n_classes: int) -> np.ndarray:
    """The classes' colours as uint8 RGB (the colours of the dataset's sample figure)."""
    return np.round(class_colours(n_classes) * 255).astype(np.uint8)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbour dilation by one pixel, without wrapping around the borders."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def edge(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that touch a pixel outside it (the image border counts as outside)."""
    inside = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    inside[1:-1, 1:-1] = ~mask
    return mask & _dilate(inside)[1:-1, 1:-1]


def halo(mask: np.ndarray) -> np.ndarray:
    """The pixels just outside ``mask``."""
    return _dilate(mask) & ~mask


def outlined(image: np.ndarray, regions: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``image`` with each (mask, colour) region outlined; halos first, so no halo covers an outline."""
    out = image.copy()
    for mask, _ in regions:
        out[halo(mask)] = HALO
    for mask, colour in regions:
        out[edge(mask)] = colour
    return out


def label_outlines(image: np.ndarray, label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    return outlined(image, [(label == k, colours[k]) for k in np.unique(label) if k > 0])


def label_view(image: np.ndarray, label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Every edited pixel in its class colour over the image in dimmed grey (authentic pixels)."""
    # Grey levels 24..126: darker than the class colours, yet the scene stays recognisable.
    grey = (image.astype(np.uint16).sum(axis=2) // 3 * 2 // 5 + 24).astype(np.uint8)
    out = np.repeat(grey[:, :, None], 3, axis=2)
    out[label > 0] = colours[label[label > 0]]
    return out


def thumbnail(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = THUMB_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
