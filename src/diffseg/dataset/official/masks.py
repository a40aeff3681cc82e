"""The release's mask values and the project's classes: an explicit mapping, never a threshold.

``official.mask_values`` maps pixel value -> class name, one of them 'authentic'. A mask holding any
other value stops the conversion, naming the file and the values: a threshold at 127 would silently
erase class ids 1..8.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from diffseg.errors import UserError
from diffseg.params import ParamsError


class MaskMismatch(UserError):
    """A mask holds values that ``official.mask_values`` does not map: the mapping is wrong, not the item."""


class BadItem(ValueError):
    """An item that cannot enter the dataset; the message is its recorded reason."""


def class_table(mask_values: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """``classes.json`` (authentic first, then names in mask-value order) and a value -> class-index table."""
    if "authentic" not in mask_values.values():
        raise ParamsError("params.yaml: key 'official.mask_values': set the mask value -> class mapping of the "
                          "release, with one value mapped to 'authentic' (e.g. {0: authentic, 255: edited}); "
                          "`diffseg official --inspect` shows the values the masks hold")
    classes = ["authentic"]
    for value in sorted(mask_values):
        if mask_values[value] not in classes:
            classes.append(mask_values[value])
    table = np.zeros(max(mask_values) + 1, np.uint8)
    for value, name in mask_values.items():
        table[value] = classes.index(name)
    return classes, table


def mask_array(img: Image.Image, origin: str) -> np.ndarray:
    """The mask's raw values, whatever PNG mode stores them; colour masks are refused, never guessed."""
    if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.int64)  # a palette mask's values are its indices
    if img.mode == "1":
        return np.asarray(img.convert("L")).astype(np.int64)  # 1-bit masks read as 0 / 255
    if img.mode in ("RGB", "RGBA", "LA"):
        pixels = np.asarray(img)
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and (pixels[..., -1] != 255).any():
            raise BadItem(f"mask {origin} is partly transparent ({img.mode}); cannot tell its values")
        colour = pixels[..., :3] if img.mode != "LA" else pixels[..., :1]
        if (colour != colour[..., :1]).any():
            raise BadItem(f"mask {origin} is a colour image ({img.mode} with differing channels); expected one "
                          f"value per pixel")
        return colour[..., 0].astype(np.int64)
    raise BadItem(f"mask {origin}: unsupported image mode {img.mode}")


def check_values(values: np.ndarray, mask_values: dict[int, str], origin: str) -> None:
    """Refuse a mask whose values do not all appear in the mapping, naming the file and the values."""
    present, counts = np.unique(values, return_counts=True)
    unexpected = [(int(v), int(c)) for v, c in zip(present, counts) if int(v) not in mask_values]
    if unexpected:
        shown = ", ".join(f"{v} ({c} px)" for v, c in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        raise MaskMismatch(
            f"mask {origin} holds value(s) {shown} that official.mask_values {dict(sorted(mask_values.items()))} "
            f"does not map (values present: {[int(v) for v in present][:20]}). Values 0/255 mean a binary mask, "
            f"0..8 class ids: set official.mask_values to the release's encoding; no threshold is applied")
