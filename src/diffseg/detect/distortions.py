"""Post-processing a detector meets in the wild: JPEG, resizing, Gaussian blur, Gaussian noise.

Each distortion is a function of (uint8 RGB image, level) -> uint8 RGB image; noise is seeded by the
image content so a rerun distorts identically.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageFilter


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def noise(image: np.ndarray, std: float) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "big")
    noisy = image.astype(np.float32) + np.random.default_rng(seed).normal(0.0, std, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


DISTORTIONS = {"jpeg": jpeg, "resize": resize, "blur": blur, "noise": noise}
