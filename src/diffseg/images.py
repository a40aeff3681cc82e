"""Decoding any image into 8-bit RGB and fitting it to the size bounds: shared by ``source``, ``synthesize``, the
official-release loader and ``predict``."""
from __future__ import annotations

import numpy as np
from PIL import Image


class BadImage(ValueError):
    """An image that cannot enter the dataset; the message is the manifest's reason."""


def to_rgb(img: Image.Image) -> tuple[np.ndarray, str]:
    """8-bit RGB pixels of ``img`` and a note saying what was converted ('' if nothing)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8), ""
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: map the full range onto 8 bits.
        wide = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") else max(float(wide.max()), 1.0)
        gray = np.clip(np.round(wide * 255.0 / peak), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), f"converted from {mode}"
    if mode == "F":
        gray = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), "converted from F"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels take a white backdrop rather than whatever colour they hide.
        rgba = img.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(backdrop, rgba).convert("RGB")), f"converted from {mode}"
    return np.asarray(img.convert("RGB"), dtype=np.uint8), f"converted from {mode}"


def fit_sides(pixels: np.ndarray, note: str, *, min_side: int, max_side: int) -> tuple[np.ndarray, str]:
    """Skip images under ``min_side`` (:class:`BadImage`); downscale those over ``max_side``, adding a note."""
    height, width = pixels.shape[:2]
    if min(width, height) < min_side:
        raise BadImage(f"smaller than min_side={min_side} ({width}x{height})")
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
        note = "; ".join(filter(None, [note, f"downscaled from {width}x{height}"]))
    return pixels, note
