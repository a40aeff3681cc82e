"""A COCO copy already on disk, read in place: the raw folder a download writes, without the download.

``source.coco.local_dir`` names a folder in COCO's own layout (``split`` e.g. ``train2017``)::

    <local_dir>/<split>/<file_name>                      the images: read where they are, never copied
    <local_dir>/annotations/instances_<split>.json       the annotations, extracted ...
    <local_dir>/annotations/captions_<split>.json
    <local_dir>/<annotations_zip>                        ... or still in the archive (read without extracting)

The selection and the JSON files are the download's own (:func:`coco.subset`, :func:`coco.write_subset`),
and :func:`ingest.ingest` reads the images from ``<local_dir>/<split>``, so the same COCO files reached
either way give the same source state, byte for byte. A selected image missing from the copy is a skipped
item, as a corrupt one is.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from diffseg.errors import UserError
from diffseg.source.coco import subset, write_subset
from diffseg.source.download import md5sum

# What the selection and the raw folder read from the instances file and the captions file.
_KEYS = (("images", "annotations", "categories"), ("images", "annotations"))


def read_local_coco(out_dir: Path, *, local_dir: str, split: str, n_images: int, seed: int, annotations_zip: str,
                    annotations_md5: str | None) -> tuple[dict, Path]:
    """Write the raw folder's JSON files for a seeded selection of ``local_dir``'s ``split`` into ``out_dir``.

    Args:
        out_dir: the raw COCO folder to write (JSON files only).
        local_dir: the COCO copy, as the user gave it (messages name paths below it).
        split, n_images, seed, annotations_zip, annotations_md5: as for :func:`coco.download_coco`; the
            archive's MD5 is checked only when the archive is read.

    Returns:
        The summary (folder, split, counts) and the folder holding the split's images.

    Raises:
        UserError: a missing folder or annotation file, a bad archive or JSON file, too few images.
    """
    local = Path(local_dir)
    if not local.is_dir():
        raise UserError(f"source.coco.local_dir: {local} is not a folder")
    images_dir = local / split
    if not images_dir.is_dir():
        raise UserError(f"source.coco.local_dir: {images_dir} is not a folder (the {split} images)")
    instances, captions = _annotations(local, split, annotations_zip, annotations_md5)
    images = subset(instances, split, n_images, seed)
    summary = {"local_dir": str(local), "split": split, **write_subset(Path(out_dir), instances, captions, images)}
    return summary, images_dir


def _annotations(local: Path, split: str, annotations_zip: str, md5: str | None) -> tuple[dict, dict]:
    """(instances, captions) from the extracted files if both are there, else from the archive."""
    names = [f"annotations/instances_{split}.json", f"annotations/captions_{split}.json"]
    files = [local / name for name in names]
    if all(f.is_file() for f in files):
        return tuple(_coco_json(f.read_bytes(), str(f), keys) for f, keys in zip(files, _KEYS))
    archive = local / annotations_zip
    if not archive.is_file():
        missing = next(f for f in files if not f.is_file())
        raise UserError(f"source.coco.local_dir: {missing} not found, nor {archive} to read it from")
    if md5 is not None and (actual := md5sum(archive)) != md5.lower():
        raise UserError(f"{archive}: md5 {actual}, expected {md5.lower()} (source.coco.annotations_md5)")
    try:
        with zipfile.ZipFile(archive) as zf:
            missing = [name for name in names if name not in zf.namelist()]
            if missing:
                raise UserError(f"{archive} has no member {missing[0]}")
            return tuple(_coco_json(zf.read(name), f"{archive}:{name}", keys) for name, keys in zip(names, _KEYS))
    except zipfile.BadZipFile as err:
        raise UserError(f"{archive}: not a readable zip archive ({err})") from None


def _coco_json(data: bytes, where: str, keys: tuple[str, ...]) -> dict:
    try:
        content = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(content, dict) or not set(keys) <= content.keys():
        raise UserError(f"{where}: not a COCO annotation file (it needs {', '.join(map(repr, keys))})")
    return content
