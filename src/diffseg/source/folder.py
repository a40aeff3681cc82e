"""A folder of plain images with no annotations, read in place (``source.kind: folder``).

Images are the files below ``source.folder.path`` (subfolders included, hidden files and folders left
out) whose suffix, in any case, is one of :data:`SUFFIXES`. Everything is keyed by the path relative to
the folder, never by the order the filesystem lists files or by where the folder lies: an image's id is
a hash of that path, and ``source.n_images`` takes the first images in a seeded keyed-hash order of the
paths (as COCO's selection does with ids). Each image is decoded, converted and size-checked as COCO's
are (:mod:`ingest`), and turned upright by its EXIF orientation; one that cannot enter is skipped with
a reason, under its relative path::

    from diffseg.source import folder
    found = folder.scan(Path("my_photos"), n_images=100, seed=0)
    manifest = folder.ingest_folder(found, Path("data/source"), min_side=64, max_side=320)

There are no instance masks and no captions: ``annotations.json`` says so (``annotated: false``), and
the annotations planner refuses such a state (plans come from ``propose.planner: vlm``).
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from diffseg.errors import UserError
from diffseg.images import BadImage, fit_sides
from diffseg.seeding import keyed_unit
from diffseg.source.ingest import SourceState, load_image

SUFFIXES = (".avif", ".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
ID_RANGE = 10 ** 12  # ids keep the 12 digits of COCO's (ingest.image_key)


@dataclass(frozen=True)
class Found:
    """The scanned folder: the selected images (relative POSIX paths) and what the scan counted."""

    root: Path
    selected: list[str]
    n_images: int  # image files in the folder
    n_other: int  # files of other suffixes, left out

    def summary(self) -> dict:
        return {"folder": str(self.root), "image_files": self.n_images, "selected": len(self.selected),
                "other_files": self.n_other}


def image_id(relpath: str) -> int:
    """The image's COCO-style id, from its path relative to the folder."""
    # NFC: macOS stores names decomposed, and the same folder copied elsewhere must keep its ids.
    key = unicodedata.normalize("NFC", relpath).encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(b"folder\x1f" + key).digest()[:8], "big") % ID_RANGE


def scan(root: Path, n_images: int, seed: int) -> Found:
    """Find the image files below ``root`` and select ``n_images`` of them (all if there are fewer).

    Raises:
        UserError: ``root`` is not a folder, holds no image file, or two paths hash to one id.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"source.folder.path: {root} is not a folder")
    images, n_other = [], 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in SUFFIXES:
                images.append(Path(folder, name).relative_to(root).as_posix())
            else:
                n_other += 1
    if not images:
        raise UserError(f"source.folder.path: no image files ({' '.join(SUFFIXES)}) in {root}")
    owner: dict[int, str] = {}
    for relpath in sorted(images):
        other = owner.setdefault(image_id(relpath), relpath)
        if other != relpath:
            raise UserError(f"source.folder.path: {other} and {relpath} hash to the same image id; rename one")
    ranked = sorted(images, key=lambda relpath: (keyed_unit(seed, "folder-select", relpath), relpath))
    return Found(root, ranked[:n_images], len(images), n_other)


def ingest_folder(found: Found, out_dir: Path, *, min_side: int, max_side: int) -> pd.DataFrame:
    """Write the source state of the selected images into ``out_dir``; return its manifest."""
    out = SourceState(out_dir)
    for coco_id, relpath in sorted((image_id(relpath), relpath) for relpath in found.selected):
        # A name that is not UTF-8 cannot be stored in the manifest as it is; its readable form can.
        shown = relpath.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        row = out.row(coco_id, shown, origin=f"folder:{shown}", source_id=shown, license="", url="")
        try:
            if shown != relpath:
                raise BadImage("file name is not valid UTF-8")
            pixels, note = load_image(found.root / relpath, upright=True, name=relpath)
            pixels, note = fit_sides(pixels, note, min_side=min_side, max_side=max_side)
        except BadImage as err:
            out.skip(row, str(err))
            continue
        out.keep(row, pixels, note, [])
    return out.finish(categories=[], captions=[], annotated=False)
