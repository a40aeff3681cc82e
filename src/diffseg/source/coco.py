"""The real COCO source: download a seeded subset of a COCO split into a raw COCO folder.

The raw folder is what the rest of the pipeline consumes, whatever the source::

    out_dir/images/<file_name>   image bytes exactly as served by COCO
    out_dir/instances.json       selected images, all their instance annotations, all categories
    out_dir/captions.json        the captions of the selected images

Downloads go through ``cache_dir`` (resumable, reused on the next run), so a rerun with another seed or
size fetches only the images it has not seen. Images are not decoded here: a later stage normalises them
and records the bad ones. A COCO copy already on disk (:mod:`coco_local`) writes the same two JSON files
through :func:`subset` and :func:`write_subset` and leaves its images where they are.
"""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from pycocotools.coco import COCO
from tqdm import tqdm

from diffseg import records
from diffseg.errors import UserError
from diffseg.seeding import keyed_unit
from diffseg.source.download import fetch, is_complete, safe_extract

# A few connections in parallel hide per-request latency on 30k small files without hammering the host.
_IMAGE_WORKERS = 8


def download_coco(out_dir: Path, *, base_url: str, split: str, n_images: int, seed: int,
                  annotations_zip: str, annotations_md5: str | None, cache_dir: Path,
                  progress: bool = True) -> dict:
    """Download ``n_images`` seeded COCO images of ``split`` with their annotations into ``out_dir``.

    Args:
        out_dir: the raw COCO folder to write.
        base_url: COCO's root, e.g. ``http://images.cocodataset.org``; images are ``{base_url}/{split}/<file>``.
        split: e.g. ``val2017``; names the JSON files inside the annotations zip.
        n_images: how many images to select among those with a non-crowd instance annotation.
        seed: global seed; the selection depends only on (seed, image id), not on the order of the JSON.
        annotations_zip: path of the annotations archive below ``base_url``.
        annotations_md5: expected MD5 of that archive, or None to skip the check.
        cache_dir: where downloads and extracted annotations are kept between runs.
        progress: show tqdm bars.

    Returns:
        A summary: split, counts of images / annotations / captions / categories, files and bytes
        downloaded versus reused from the cache.
    """
    base_url = base_url.rstrip("/")
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    tally = {"files_downloaded": 0, "files_reused": 0, "bytes_downloaded": 0, "bytes_reused": 0}

    zip_path = cache_dir / Path(annotations_zip).name
    _count(tally, *_fetch_cached(f"{base_url}/{annotations_zip}", zip_path, annotations_md5, progress))
    inner = [f"annotations/instances_{split}.json", f"annotations/captions_{split}.json"]
    instances_path, captions_path = safe_extract(zip_path, cache_dir, inner)
    instances = COCO(str(instances_path)).dataset
    captions = json.loads(captions_path.read_text(encoding="utf-8"))
    images = subset(instances, split, n_images, seed)

    def fetch_image(img: dict) -> tuple[str, int]:
        return _fetch_cached(f"{base_url}/{split}/{quote(img['file_name'])}", cache_dir / split / img["file_name"],
                             None, False)

    with ThreadPoolExecutor(_IMAGE_WORKERS) as pool:
        for kind, n_bytes in tqdm(pool.map(fetch_image, images), total=len(images), desc=f"coco {split}",
                                  unit="img", disable=not progress):
            _count(tally, kind, n_bytes)

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for img in images:
        _copy_atomic(cache_dir / split / img["file_name"], out_dir / "images" / img["file_name"])
    return {"split": split, **write_subset(out_dir, instances, captions, images), **tally}


def subset(instances: dict, split: str, n_images: int, seed: int) -> list[dict]:
    """The records of the selected images (:func:`select_images`) by id, each with its origin and source id."""
    selected = select_images(instances, n_images, seed)
    return [_with_origin(img, split) for img in sorted(instances["images"], key=lambda i: i["id"])
            if img["id"] in selected]


def write_subset(out_dir: Path, instances: dict, captions: dict, images: list[dict]) -> dict:
    """Write the raw folder's ``captions.json`` and ``instances.json`` for ``images``; return the counts."""
    selected = {img["id"] for img in images}
    annotations = sorted((a for a in instances["annotations"] if a["image_id"] in selected), key=lambda a: a["id"])
    caption_anns = sorted((a for a in captions["annotations"] if a["image_id"] in selected), key=lambda a: a["id"])
    records.write_json(out_dir / "captions.json", {**captions, "images": images, "annotations": caption_anns})
    # Written last: a complete instances.json marks a complete folder.
    records.write_json(out_dir / "instances.json", {**instances, "images": images, "annotations": annotations})
    return {"n_images": len(images), "n_annotations": len(annotations), "n_captions": len(caption_anns),
            "n_categories": len(instances["categories"])}


def select_images(instances: dict, n_images: int, seed: int) -> set[int]:
    """Ids of ``n_images`` images with at least one non-crowd instance, ordered by a keyed hash of the id."""
    known = {img["id"] for img in instances["images"]}
    eligible = {a["image_id"] for a in instances["annotations"] if not a.get("iscrowd", 0)} & known
    if n_images > len(eligible):
        raise UserError(f"source.n_images={n_images} but only {len(eligible)} of the {len(known)} images have a "
                         f"non-crowd instance annotation")
    ranked = sorted(eligible, key=lambda image_id: (keyed_unit(seed, "coco-select", image_id), image_id))
    return set(ranked[:n_images])


def _with_origin(img: dict, split: str) -> dict:
    return {**img, "origin": f"coco:{split}:{img['id']}", "source_id": f"coco-{img['id']}"}


def _fetch_cached(url: str, dest: Path, md5: str | None, progress: bool) -> tuple[str, int]:
    """``fetch``, returning whether the file was "downloaded" or "reused" from the cache, and its size."""
    kind = "reused" if is_complete(dest, md5=md5) else "downloaded"
    if kind == "downloaded":
        fetch(url, dest, md5=md5, progress=progress)
    return kind, dest.stat().st_size


def _count(tally: dict, kind: str, n_bytes: int) -> None:
    tally[f"files_{kind}"] += 1
    tally[f"bytes_{kind}"] += n_bytes


def _copy_atomic(src: Path, dest: Path) -> None:
    with records.atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
