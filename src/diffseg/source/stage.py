"""``source``: the images the pipeline edits, as a state folder (``data/source``).

Two sources, one output: real COCO (a seeded subset of a split, downloaded with resume and
checksums) or the offline source (bundled photographs plus procedural scenes). Both first write a
raw COCO folder, then :func:`diffseg.source.ingest.ingest` normalises it, so everything after
``source`` has one code path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from diffseg import records
from diffseg.params import Params
from diffseg.source.ingest import ingest


def build_raw(params: Params, raw_dir: Path) -> dict:
    """Write the raw COCO folder of the configured source into ``raw_dir``."""
    src = params.source
    if src.kind == "coco":
        from diffseg.source.coco import download_coco

        return download_coco(raw_dir, base_url=src.coco.base_url, split=src.coco.split, n_images=src.n_images,
                             seed=params.seed, annotations_zip=src.coco.annotations_zip,
                             annotations_md5=src.coco.annotations_md5, cache_dir=Path(src.coco.cache_dir))
    from diffseg.source.offline import build_offline_coco

    off = src.offline
    return build_offline_coco(raw_dir, seed=params.seed, n_crops=off.n_crops, n_procedural=off.n_procedural,
                              size=off.size)


def run(params: Params, out_dir: Path) -> pd.DataFrame:
    out_dir = records.fresh_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix="diffseg-raw-") as raw:
        summary = build_raw(params, Path(raw))
        manifest = ingest(Path(raw), out_dir, min_side=params.source.min_side, max_side=params.source.max_side)
    skipped = manifest[manifest["status"] != records.OK]
    print(f"source ({params.source.kind}): {summary}")
    print(f"source: {len(manifest) - len(skipped)} images kept, {len(skipped)} skipped")
    for row in skipped.itertuples():
        print(f"  skipped {row.file}: {row.reason}")
    records.check_failures("source", manifest["status"].replace(records.SKIPPED, records.FAILED),
                           params.max_item_failure)
    return manifest
