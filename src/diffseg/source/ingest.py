"""Turn a raw COCO folder (images + ``instances.json`` + ``captions.json``) into the source state.

Every COCO-format source (a COCO download, a COCO copy on disk, the offline source) ends here, so
everything after ``source`` has one code path; a folder of plain images (:mod:`folder`) writes the same
state through :class:`SourceState`. Each image is decoded and normalised to 8-bit RGB (grayscale,
palette, CMYK, 16-bit and alpha images are converted, with a note); corrupt, too small or mismatched
images are skipped with a recorded reason; large images are downscaled together with their instance masks.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from pycocotools.coco import COCO

from diffseg import masks, records
from diffseg.images import BadImage, fit_sides, to_rgb

MIN_INSTANCE_PIXELS = 16  # an instance smaller than this after downscaling is dropped
# annotations.json of a source without instance annotations carries this key, set to false; later states
# keep it (filter copies every key it does not update), so a planner that needs instances can refuse.
ANNOTATED = "annotated"
_EXIF_ORIENTATION = 0x0112


def image_key(coco_id: int) -> str:
    return f"{coco_id:012d}"


def load_image(path: Path, upright: bool = False, name: str | None = None) -> tuple[np.ndarray, str]:
    """Decode ``path`` fully; raise :class:`BadImage` for anything unreadable.

    ``upright`` applies the EXIF orientation tag (a camera's portrait photo is stored sideways). COCO's
    images are not turned: their annotations are in stored pixel order. ``name`` is the file as its source
    names it (default: the file name); a reason quotes it, never the folder the file was read from.
    """
    if not path.is_file():
        raise BadImage("missing file")
    try:
        with Image.open(path) as img:
            img.load()
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if upright else 1
            if orientation in range(2, 9):
                pixels, note = to_rgb(ImageOps.exif_transpose(img))
                return pixels, "; ".join(filter(None, [note, f"turned upright (EXIF orientation {orientation})"]))
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImage(f"corrupt or unsupported image: {type(err).__name__}: "
                       f"{_without_path(str(err), path, name or path.name)}") from None


def _without_path(message: str, path: Path, name: str) -> str:
    """Pillow's ``message`` with ``path`` replaced by ``name``: the path names a temporary or user folder, and
    Pillow quotes it with ``repr`` (which escapes backslashes and unprintable characters) or as it is."""
    return message.replace(repr(str(path)), f"'{name}'").replace(str(path), name)


class SourceState:
    """The source state being written: images as they are kept, manifest rows, annotations at the end."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.state = records.StateDir(self.out_dir)
        self.rows: list[dict] = []
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    @staticmethod
    def row(coco_id: int, file: str, *, origin: str, source_id: str, license: str, url: str) -> dict:
        """A manifest row; ``file`` is the image's name as its source names it (what a skip reports)."""
        return {"image_id": image_key(coco_id), "coco_id": int(coco_id), "file": file, "origin": origin,
                "source_id": source_id, "license": license, "url": url, "width": 0, "height": 0,
                "status": records.OK, "reason": "", "note": ""}

    def skip(self, row: dict, reason: str) -> None:
        self.rows.append({**row, "status": records.SKIPPED, "reason": reason})

    def keep(self, row: dict, pixels: np.ndarray, note: str, annotations: list[dict]) -> None:
        records.write_png(self.state.image_path(row["image_id"]), pixels)
        height, width = pixels.shape[:2]
        self.rows.append({**row, "width": int(width), "height": int(height), "note": note})
        self.images.append({"id": row["coco_id"], "file_name": f"{row['image_id']}.png", "width": int(width),
                            "height": int(height)})
        self.annotations.extend(annotations)

    def finish(self, categories: list[dict], captions: list[dict], annotated: bool = True) -> pd.DataFrame:
        """Write ``annotations.json`` and the manifest; return the manifest."""
        kept_ids = {img["id"] for img in self.images}
        coco = {"images": self.images, "annotations": self.annotations,
                "categories": sorted(categories, key=lambda c: c["id"]),
                "captions": [c for c in captions if c["image_id"] in kept_ids]}
        if not annotated:
            coco[ANNOTATED] = False
        records.write_json(self.out_dir / records.ANNOTATIONS, coco)
        manifest = pd.DataFrame(self.rows)
        records.write_table(self.out_dir / records.MANIFEST, manifest)
        return manifest


def _quiet_coco(instances: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints index progress
        return COCO(str(instances))


def ingest(raw_dir: Path, out_dir: Path, *, min_side: int, max_side: int,
           images_dir: Path | None = None) -> pd.DataFrame:
    """Write the source state into ``out_dir`` and return its manifest.

    ``images_dir`` holds the images the annotations name (``raw_dir/images`` unless given: a COCO copy
    on disk is read where it lies).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    images_dir = raw_dir / "images" if images_dir is None else Path(images_dir)
    coco = _quiet_coco(raw_dir / "instances.json")
    captions_path = raw_dir / "captions.json"
    captions = json.loads(captions_path.read_text())["annotations"] if captions_path.is_file() else []
    out = SourceState(out_dir)
    for coco_id in sorted(coco.imgs):
        info = coco.imgs[coco_id]
        row = out.row(coco_id, info["file_name"], origin=info.get("origin", ""),
                      source_id=str(info.get("source_id", image_key(coco_id))), license=str(info.get("license", "")),
                      url=info.get("coco_url") or info.get("flickr_url") or "")
        try:
            pixels, note = load_image(images_dir / info["file_name"], name=info["file_name"])
            height, width = pixels.shape[:2]
            if (width, height) != (info["width"], info["height"]):
                raise BadImage(f"size {width}x{height} differs from the annotation's "
                               f"{info['width']}x{info['height']}")
            pixels, note = fit_sides(pixels, note, min_side=min_side, max_side=max_side)
            anns = _instances(coco, coco_id, pixels.shape[:2])
        except BadImage as err:
            out.skip(row, str(err))
            continue
        out.keep(row, pixels, note, anns)
    return out.finish(coco.dataset["categories"], captions)


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
