"""A small COCO-format raw folder with the awkward images real sources contain.

Each image carries one square instance annotation so every one is eligible for selection. The
``expect`` table says what ingestion must do with each file.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# file name -> (expected status, words expected in the reason or note)
EXPECT = {
    "rgb.jpg": ("ok", ""),
    "gray.png": ("ok", "converted from L"),
    "cmyk.jpg": ("ok", "converted from CMYK"),
    "deep.png": ("ok", "converted from I;16"),
    "alpha.png": ("ok", "converted from RGBA"),
    "large.png": ("ok", "downscaled from 800x600"),
    "tiny.png": ("skipped", "smaller than min_side"),
    "corrupt.jpg": ("skipped", "corrupt"),
}


def _image(name: str, rng: np.random.Generator) -> tuple[bytes, int, int]:
    w, h = (800, 600) if name == "large.png" else (40, 30) if name == "tiny.png" else (160, 120)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    if name == "gray.png":
        Image.fromarray(rgb[..., 0]).save(buf, format="PNG")
    elif name == "cmyk.jpg":
        Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG")
    elif name == "deep.png":
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(buf, format="PNG")
    elif name == "alpha.png":
        Image.fromarray(np.dstack([rgb, np.full((h, w), 128, np.uint8)])).save(buf, format="PNG")
    elif name == "corrupt.jpg":
        Image.fromarray(rgb).save(buf, format="JPEG")
        return buf.getvalue()[:300], w, h  # truncated mid-scan
    else:
        Image.fromarray(rgb).save(buf, format="JPEG" if name.endswith(".jpg") else "PNG")
    return buf.getvalue(), w, h


def build_raw(root: Path, seed: int = 0) -> dict:
    """Write ``root/images/*``, ``instances.json``, ``captions.json``; return the instances dict."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns, caps = [], [], []
    for i, name in enumerate(EXPECT, start=1):
        data, w, h = _image(name, rng)
        (root / "images" / name).write_bytes(data)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        x, y, s = w // 4, h // 4, min(w, h) // 2
        anns.append({"id": 100 + i, "image_id": i, "category_id": 47, "iscrowd": 0, "area": float(s * s),
                     "bbox": [x, y, s, s], "segmentation": [[x, y, x + s, y, x + s, y + s, x, y + s]]})
        caps.append({"id": 200 + i, "image_id": i, "caption": f"A cup on a table number {i}."})
    instances = {"images": images, "annotations": anns, "categories": [{"id": 47, "name": "cup",
                                                                        "supercategory": "kitchen"}]}
    (root / "instances.json").write_text(json.dumps(instances))
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": caps}))
    return instances


def build_coco_site(www: Path, split: str = "val2017") -> None:
    """The raw folder laid out as COCO's server serves it: images under /<split>/, annotations zipped."""
    raw = www / "raw"
    build_raw(raw)
    (www / split).mkdir(parents=True)
    for img in (raw / "images").iterdir():
        (www / split / img.name).write_bytes(img.read_bytes())
    (www / "annotations").mkdir()
    with zipfile.ZipFile(www / "annotations" / "annotations_trainval2017.zip", "w") as zf:
        zf.write(raw / "instances.json", f"annotations/instances_{split}.json")
        zf.write(raw / "captions.json", f"annotations/captions_{split}.json")
