"""Turn a raw COCO folder (images + ``instances.json`` + ``captions.json``) into the source state.

Both sources (real COCO, offline) end here, so everything after ``source`` has one code path.
Each image is decoded and normalised to 8-bit RGB (grayscale, palette, CMYK, 16-bit and alpha images
are converted, with a note); corrupt, too small or mismatched images are skipped with a recorded
reason; large images are downscaled together with their instance masks.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pycocotools.coco import COCO

from diffseg import masks, records
from diffseg.images import BadImage, to_rgb

MIN_INSTANCE_PIXELS = 16  # an instance smaller than this after downscaling is dropped


def image_key(coco_id: int) -> str:
    return f"{coco_id:012d}"


def load_image(path: Path) -> tuple[np.ndarray, str]:
    """Decode ``path`` fully; raise :class:`BadImage` for anything unreadable."""
    if not path.is_file():
        raise BadImage("missing file")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImage(f"corrupt or unsupported image: {type(err).__name__}: {err}") from None


def _quiet_coco(instances: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints index progress
        return COCO(str(instances))


def ingest(raw_dir: Path, out_dir: Path, *, min_side: int, max_side: int) -> pd.DataFrame:
    """Write the source state into ``out_dir`` and return its manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    coco = _quiet_coco(raw_dir / "instances.json")
    captions_path = raw_dir / "captions.json"
    captions = json.loads(captions_path.read_text())["annotations"] if captions_path.is_file() else []
    state = records.StateDir(out_dir)

    rows, kept_images, kept_anns = [], [], []
    for coco_id in sorted(coco.imgs):
        info = coco.imgs[coco_id]
        row = {
            "image_id": image_key(coco_id), "coco_id": int(coco_id), "file": info["file_name"],
            "origin": info.get("origin", ""), "source_id": str(info.get("source_id", image_key(coco_id))),
            "license": str(info.get("license", "")), "url": info.get("coco_url") or info.get("flickr_url") or "",
            "width": 0, "height": 0, "status": records.OK, "reason": "", "note": "",
        }
        try:
            pixels, note = load_image(raw_dir / "images" / info["file_name"])
            height, width = pixels.shape[:2]
            if (width, height) != (info["width"], info["height"]):
                raise BadImage(f"size {width}x{height} differs from the annotation's "
                               f"{info['width']}x{info['height']}")
            if min(width, height) < min_side:
                raise BadImage(f"smaller than min_side={min_side} ({width}x{height})")
            scale = min(1.0, max_side / max(width, height))
            if scale < 1.0:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
                note = "; ".join(filter(None, [note, f"downscaled from {width}x{height}"]))
            anns = _instances(coco, coco_id, pixels.shape[:2])
        except BadImage as err:
            row.update(status=records.SKIPPED, reason=str(err))
            rows.append(row)
            continue
        records.write_png(state.image_path(row["image_id"]), pixels)
        row.update(width=int(pixels.shape[1]), height=int(pixels.shape[0]), note=note)
        rows.append(row)
        kept_images.append({"id": int(coco_id), "file_name": f"{row['image_id']}.png",
                            "width": row["width"], "height": row["height"]})
        kept_anns.extend(anns)

    kept_ids = {img["id"] for img in kept_images}
    records.write_json(out_dir / records.ANNOTATIONS, {
        "images": kept_images,
        "annotations": kept_anns,
        "categories": sorted(coco.dataset["categories"], key=lambda c: c["id"]),
        "captions": [c for c in captions if c["image_id"] in kept_ids],
    })
    manifest = pd.DataFrame(rows)
    records.write_table(out_dir / records.MANIFEST, manifest)
    return manifest


def _instances(coco: COCO, coco_id: int, shape: tuple[int, int]) -> list[dict]:
    """The image's non-crowd instances as RLE at ``shape``, through pycocotools' decoder."""
    out = []
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[coco_id], iscrowd=False)):
        try:
            mask = coco.annToMask(ann).astype(bool)
        except Exception as err:  # noqa: BLE001 - pycocotools raises bare exceptions on bad polygons
            raise BadImage(f"annotation {ann['id']} does not decode: {err}") from None
        if mask.shape != shape:
            mask = masks.resize_mask(mask, (shape[1], shape[0]))
        if mask.sum() < MIN_INSTANCE_PIXELS:
            continue
        out.append({"id": int(ann["id"]), "image_id": int(coco_id), "category_id": int(ann["category_id"]),
                    "segmentation": masks.rle_encode(mask), "area": float(mask.sum()),
                    "bbox": masks.bbox(mask), "iscrowd": 0})
    return out
