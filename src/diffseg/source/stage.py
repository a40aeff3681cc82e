"""``source``: the images the pipeline edits, as a state folder (``data/source``).

Four sources, one output. COCO-format ones first write a raw COCO folder, then
:func:`diffseg.source.ingest.ingest` normalises it: real COCO (a seeded subset of a split, downloaded
with resume and checksums, or read in place from a copy on disk with ``source.coco.local_dir``) and the
offline source (bundled photographs plus procedural scenes). A folder of plain images
(``source.kind: folder``) has no annotations and is normalised by :mod:`diffseg.source.folder` into the
same state. Everything after ``source`` has one code path.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from diffseg import records, resume
from diffseg.params import Params
from diffseg.source.ingest import ingest


def build_raw(params: Params, raw_dir: Path) -> tuple[dict, Path]:
    """Write the raw COCO folder of the configured source into ``raw_dir``; return its summary and the
    folder that holds its images."""
    src = params.source
    if src.kind == "coco" and src.coco.local_dir is not None:
        from diffseg.source.coco_local import read_local_coco

        return read_local_coco(raw_dir, local_dir=src.coco.local_dir, split=src.coco.split, n_images=src.n_images,
                               seed=params.seed, annotations_zip=src.coco.annotations_zip,
                               annotations_md5=src.coco.annotations_md5)
    if src.kind == "coco":
        from diffseg.source.coco import download_coco

        return download_coco(raw_dir, base_url=src.coco.base_url, split=src.coco.split, n_images=src.n_images,
                             seed=params.seed, annotations_zip=src.coco.annotations_zip,
                             annotations_md5=src.coco.annotations_md5,
                             cache_dir=Path(src.coco.cache_dir)), raw_dir / "images"
    from diffseg.source.offline import build_offline_coco

    off = src.offline
    return build_offline_coco(raw_dir, seed=params.seed, n_crops=off.n_crops, n_procedural=off.n_procedural,
                              size=off.size), raw_dir / "images"


def run(params: Params, out_dir: Path) -> pd.DataFrame:
    """Write the source state into ``out_dir``. A missing folder or file, or a failed download, stops the
    stage before the previous output is removed."""
    src = params.source
    if src.kind == "folder":
        from diffseg.source import folder

        found = folder.scan(Path(src.folder.path), src.n_images, params.seed)
        summary = found.summary()
        manifest = folder.ingest_folder(found, records.fresh_dir(out_dir), min_side=src.min_side,
                                        max_side=src.max_side)
    else:
        # A fixed folder, not a random temporary one, so no path of it can reach the outputs; a killed run's
        # leftovers there are cleared at the next start (downloads resume from source.coco.cache_dir instead).
        raw = resume.scratch("source")
        try:
            summary, images_dir = build_raw(params, raw)
            manifest = ingest(raw, records.fresh_dir(out_dir), min_side=src.min_side, max_side=src.max_side,
                              images_dir=images_dir)
        finally:
            resume.discard(raw)
    skipped = manifest[manifest["status"] != records.OK]
    print(f"source ({src.kind}): {summary}")
    print(f"source: {len(manifest) - len(skipped)} images kept, {len(skipped)} skipped")
    for row in skipped.itertuples():
        print(f"  skipped {row.file}: {row.reason}")
    records.check_failures("source", manifest["status"].replace(records.SKIPPED, records.FAILED),
                           params.max_item_failure)
    return manifest
