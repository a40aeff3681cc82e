"""``diffseg official``: the release under ``official.path`` converted into ``detect.dataset``.

The output is the assembled-dataset format that ``train``/``evaluate`` read (``images/``, ``labels/``,
``classes.json``, ``manifest.parquet``), plus ``conversion.json`` (layout, groups and their splits,
mapping, counts, skipped items with reasons). Items are read, converted and written one at a time. The
release does not record turns or source photos, so ``n_edits`` is a lower bound (the number of generator
classes in the mask) and every image is its own ``source_id``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from diffseg import records
from diffseg.dataset.official.layouts import READ_ERRORS, Pair, Release, open_release
from diffseg.dataset.official.masks import BadItem, check_values, class_table, mask_array
from diffseg.errors import UserError
from diffseg.params import Params

RELEASE_URL = "https://huggingface.co/datasets/Chaos2629/Diffseg30k"


def convert(pair: Pair, table: np.ndarray, mask_values: dict[int, str]) -> tuple[np.ndarray, np.ndarray, str]:
    """RGB pixels and the label map of one item (raises :class:`BadItem` or :class:`MaskMismatch`)."""
    from diffseg.images import to_rgb

    if pair.image is None or pair.mask is None:
        raise BadItem(f"{pair.origin}: no {'image' if pair.image is None else 'mask'}")
    try:
        image, note = to_rgb(pair.image())
        mask_img = pair.mask()
    except READ_ERRORS as err:
        raise BadItem(f"{pair.origin}: corrupt or unsupported image or mask: {type(err).__name__}: {err}") from None
    values = mask_array(mask_img, pair.mask_origin)
    if values.shape != image.shape[:2]:
        raise BadItem(f"{pair.origin}: mask is {values.shape[1]}x{values.shape[0]}, image "
                      f"{image.shape[1]}x{image.shape[0]}")
    check_values(values, mask_values, pair.mask_origin)
    return image, table[values], note


def run(params: Params, out_dir: Path | None = None) -> pd.DataFrame:
    """Convert ``official.path`` into ``out_dir`` (default ``detect.dataset``); return the manifest."""
    cfg = params.official
    out_dir = Path(out_dir or params.detect.dataset)
    if out_dir.resolve() == records.DATASET_DIR.resolve():
        raise UserError(f"detect.dataset is {out_dir}, the pipeline's own assembled dataset; set detect.dataset to "
                        f"another folder (e.g. data/official) before converting the release into it")
    root = Path(cfg.path)
    if root.resolve() == out_dir.resolve() or root.resolve() in out_dir.resolve().parents:
        raise UserError(f"detect.dataset ({out_dir}) must lie outside official.path ({root})")
    classes, table = class_table(cfg.mask_values)
    # Written beside the target and renamed at the end: a refused mask never leaves a half-converted dataset.
    work = out_dir.with_name(f".{out_dir.name}.partial")
    with open_release(root, cfg.splits) as release:
        try:
            manifest, skipped = _write(params, root, release, classes, table, records.fresh_dir(work))
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    print(f"official: {len(manifest)} images from {root} ({release.layout}) into {out_dir}, classes {classes}, "
          f"{len(skipped)} skipped")
    return manifest


def _write(params: Params, root: Path, release: Release, classes: list[str], table: np.ndarray,
           work: Path) -> tuple[pd.DataFrame, list[dict]]:
    from diffseg.dataset.assemble import assign_splits

    cfg = params.official
    out = records.StateDir(work)
    rows, skipped = [], []
    for pair in tqdm(release.pairs(), total=len(release), desc="official", unit="img"):
        try:
            image, label, note = convert(pair, table, cfg.mask_values)
        except BadItem as err:
            skipped.append({"image_id": pair.image_id, "origin": pair.origin, "reason": str(err)})
            continue
        if out.image_path(pair.image_id).exists():
            raise UserError(f"{pair.origin}: a second item with id '{pair.image_id}'")
        records.write_png(out.image_path(pair.image_id), image)
        records.write_png(out.label_path(pair.image_id), label)
        counts = np.bincount(label.ravel(), minlength=len(classes))
        present = [classes[k] for k in range(1, len(classes)) if counts[k]]
        rows.append({"image_id": pair.image_id, "source_id": pair.image_id, "origin": pair.origin,
                     "url": RELEASE_URL, "license": "see the release's dataset card", "width": image.shape[1],
                     "height": image.shape[0], "split": pair.split, "n_edits": len(present),
                     "edited_fraction": float(counts[1:].sum() / label.size), "generators": ",".join(present),
                     "note": note, "status": records.OK, "reason": ""})
    total = len(rows) + len(skipped)
    if not rows:
        raise UserError(f"{root}: no usable image/mask pair ({len(skipped)} skipped)")
    if len(skipped) / total > params.max_item_failure:
        raise UserError(f"{root}: {len(skipped)} of {total} items unusable, above max_item_failure; first: "
                        f"{skipped[0]['reason']}")
    manifest = pd.DataFrame(rows)
    if release.unsplit:
        split_of = assign_splits(list(manifest["source_id"]), params.assemble.splits, params.seed)
        manifest["split"] = manifest["source_id"].map(split_of)
    manifest = manifest.sort_values("image_id").reset_index(drop=True)
    records.write_table(out.root / records.MANIFEST, manifest)
    records.write_json(out.root / "classes.json", classes)
    records.write_json(out.root / "conversion.json", {
        "release": RELEASE_URL, "path": str(root), "layout": release.layout,
        "groups": [g.record() for g in release.groups],
        "mask_values": {str(k): v for k, v in sorted(cfg.mask_values.items())}, "classes": classes,
        "images": {s: int(n) for s, n in manifest["split"].value_counts().sort_index().items()},
        "skipped": skipped})
    return manifest, skipped
