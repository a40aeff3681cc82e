"""The sample figure: per image, the image with its edits outlined beside its label map in flat class colours.

An overlay tinted over the image hides the class colours wherever an edit is a busy texture (as the offline
twins' edits are), so the label is drawn on its own, opaque, next to the untouched image. Tiles are composed
pixel by pixel (nearest-neighbour upscaling by a whole factor, no anti-aliasing), so each label tile shows
exactly the colour of the class the label holds at that pixel; the legend lists only the classes shown.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from diffseg import records
from diffseg.overlays import class_colours

TILE = 256  # side of the square cell an image (and its label) is fitted into
GAP = 8  # between the image and its label, and around every pair
PAIRS_PER_ROW = 2
TITLE_H = 20  # room for a pair's title above its tiles
SWATCH = 14  # legend colour square
LEGEND_ROW_H = 22
LEGEND_ENTRY_W = 150  # one legend entry: a swatch and a class name
OUTLINE = 2  # width in figure pixels of the edit outlines drawn on the image
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
FONT_SIZE = 13


class Placement(NamedTuple):
    """Where one image went: the top-left corner of its image tile and of its label tile, and the tiles' size."""

    image_id: str
    image_xy: tuple[int, int]
    label_xy: tuple[int, int]
    size: tuple[int, int]  # (width, height) of both tiles


def colours_uint8(n_classes: int) -> np.ndarray:
    return np.round(class_colours(n_classes) * 255).astype(np.uint8)


def fit(shape: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of an image of ``shape`` in a tile: a whole upscaling factor, or a downscale to TILE."""
    height, width = shape
    longer = max(height, width)
    scale = TILE // longer if longer <= TILE else TILE / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def outlined(image: np.ndarray, label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``image`` with an ``OUTLINE``-pixel border, in the class colour, just inside each edited region of ``label``."""
    out = image.copy()
    padded = np.pad(label, OUTLINE, mode="edge")
    height, width = label.shape
    border = np.zeros(label.shape, bool)
    for dy in range(-OUTLINE, OUTLINE + 1):
        for dx in range(-OUTLINE, OUTLINE + 1):
            border |= padded[OUTLINE + dy:OUTLINE + dy + height, OUTLINE + dx:OUTLINE + dx + width] != label
    border &= label > 0
    out[border] = colours[label[border]]
    return out


def sample_grid(dataset: records.StateDir, images: pd.DataFrame, classes: list[str], n: int,
                path: Path) -> list[Placement]:
    """The ``n`` images with the most edits (ties by edited share, then id), so the figure shows multi-turn
    examples; returns where each went."""
    chosen = images.sort_values(["n_edits", "edited_fraction", "image_id"], ascending=[False, False, True]).head(n)
    colours = colours_uint8(len(classes))
    font = ImageFont.load_default(size=FONT_SIZE)
    cols = min(PAIRS_PER_ROW, len(chosen))
    rows = -(-len(chosen) // cols)
    pair_w, pair_h = 2 * TILE + GAP, TITLE_H + TILE
    shown: set[int] = set()
    tiles = []
    for k, row in enumerate(chosen.itertuples()):
        image = dataset.image(row.image_id)
        label = records.read_gray(dataset.label_path(row.image_id))
        shown.update(np.unique(label).tolist())
        size = fit(label.shape)
        resample = Image.Resampling.NEAREST if size[0] >= label.shape[1] else Image.Resampling.LANCZOS
        label_tile = np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))
        image_tile = np.asarray(Image.fromarray(image).resize(size, resample))
        x0 = GAP + (k % cols) * (pair_w + GAP)
        y0 = GAP + (k // cols) * (pair_h + GAP) + TITLE_H
        by = f" by {row.generators.replace(',', ', ')}" if row.generators else ""
        title = f"{row.image_id}: {row.n_edits} edit(s){by}"
        tiles.append((Placement(str(row.image_id), (x0, y0), (x0 + TILE + GAP, y0), size), title,
                      outlined(image_tile, label_tile, colours), colours[label_tile]))
    legend = [k for k in range(len(classes)) if k in shown]
    per_row = max(1, (cols * (pair_w + GAP) - GAP) // LEGEND_ENTRY_W)
    legend_h = GAP + LEGEND_ROW_H * -(-len(legend) // per_row)
    width = GAP + cols * (pair_w + GAP)
    height = GAP + rows * (pair_h + GAP) + legend_h
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for place, title, image_tile, label_tile in tiles:
        canvas.paste(Image.fromarray(image_tile), place.image_xy)
        canvas.paste(Image.fromarray(label_tile), place.label_xy)
        draw.text((place.image_xy[0], place.image_xy[1] - TITLE_H + 3), title, fill=TEXT, font=font)
    top = GAP + rows * (pair_h + GAP)
    for i, k in enumerate(legend):
        x, y = GAP + (i % per_row) * LEGEND_ENTRY_W, top + (i // per_row) * LEGEND_ROW_H
        draw.rectangle((x, y, x + SWATCH - 1, y + SWATCH - 1), fill=tuple(int(c) for c in colours[k]))
        draw.text((x + SWATCH + 6, y), classes[k], fill=TEXT, font=font)
    records.write_png(path, np.asarray(canvas))
    return [tile[0] for tile in tiles]
