"""Post-processing a detector meets in the wild: JPEG, resizing, Gaussian blur, Gaussian noise.

Each distortion is a function of (uint8 RGB image, level) -> uint8 RGB image and works on the image at
its own, full size: the robustness stage distorts the dataset image itself, never a copy already shrunk
to the detector's working size (which would average away JPEG blocks and noise before they are applied,
and make every resize level the same). Only ``resize`` changes the size; the label map is never touched
by any of them. Noise is seeded by the image content, so a rerun distorts identically.

Levels are numbers (a JPEG quality, a scale, a sigma, a standard deviation). They are keyed by
:func:`level_key` in the metric files and always listed in numeric order (:func:`ordered_levels`), so
``[10.0, 5.0, 1.5]`` reads 1.5, 5.0, 10.0 and never the string order 1.5, 10.0, 5.0.
"""
from __future__ import annotations

import hashlib
import io
from functools import partial
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageFilter

Distortion = Callable[[np.ndarray], np.ndarray]


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """The image after one JPEG round trip at ``quality`` (1..100), decoded back to RGB."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """The image rescaled by ``scale`` (bilinear), each side rounded and at least one pixel."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def noise(image: np.ndarray, std: float) -> np.ndarray:
    """Additive Gaussian noise of ``std`` 8-bit levels, rounded and clipped; seeded by the pixels."""
    seed = int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "big")
    noisy = image.astype(np.float32) + np.random.default_rng(seed).normal(0.0, std, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


DISTORTIONS = {"jpeg": jpeg, "resize": resize, "blur": blur, "noise": noise}
KINDS = tuple(DISTORTIONS)  # the order of the params section `robustness` and of the metric file


def distortion(kind: str, level: float) -> Distortion:
    """The one-argument distortion ``kind`` at ``level`` (a JPEG quality is passed on as an integer)."""
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; known: {list(DISTORTIONS)}")
    return partial(_apply, DISTORTIONS[kind], level)


def _apply(fn: Callable[[np.ndarray, float], np.ndarray], level: float, image: np.ndarray) -> np.ndarray:
    # a module-level function under partial (not a lambda), so the distortion pickles into worker processes
    return fn(image, level)


def ordered_levels(levels: Iterable[float]) -> list[float]:
    """The distinct levels in increasing numeric order (not string order: 5.0 before 10.0)."""
    return sorted(set(levels), key=float)


def level_key(level: float) -> str:
    """A level as a metric-file key: its params spelling, '90' for quality 90, '0.5' for scale 0.5."""
    return str(level)
