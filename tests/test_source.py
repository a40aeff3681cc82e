"""The source stage: awkward images are converted or skipped with a reason; the run goes on."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import write_params
from diffseg import masks, records
from diffseg.source.ingest import ingest
from http_fixture import FileServer
from source_fixture import EXPECT, build_coco_site, build_raw


def _check_manifest(manifest, state_root):
    by_file = manifest.set_index("file")
    for name, (status, words) in EXPECT.items():
        row = by_file.loc[name]
        assert row["status"] == status, (name, row["reason"])
        assert words in (row["reason"] if status != "ok" else row["note"]), (name, row["reason"], row["note"])
        path = state_root / "images" / f"{row['image_id']}.png"
        if status == "ok":
            with Image.open(path) as img:
                assert img.format == "PNG" and img.mode == "RGB"
                assert img.size == (row["width"], row["height"])
        else:
            assert not path.exists()


def test_ingest_converts_or_skips_each_bad_image(tmp_path):
    build_raw(tmp_path / "raw")
    manifest = ingest(tmp_path / "raw", tmp_path / "source", min_side=64, max_side=320)
    _check_manifest(manifest, tmp_path / "source")
    coco = records.read_json(tmp_path / "source" / records.ANNOTATIONS)
    kept = {img["id"]: img for img in coco["images"]}
    assert len(kept) == 6
    large = next(img for img in coco["images"] if img["width"] == 320)
    assert large["height"] == 240
    for ann in coco["annotations"]:
        mask = masks.rle_decode(ann["segmentation"])
        assert mask.shape == (kept[ann["image_id"]]["height"], kept[ann["image_id"]]["width"])
        assert mask.sum() == ann["area"] > 0
    # The large image's 300x300 square shrinks with the image (scale 0.4 -> 120x120).
    large_ann = next(a for a in coco["annotations"] if a["image_id"] == large["id"])
    assert abs(large_ann["area"] - 120 * 120) < 2 * 120
    assert {c["caption"] for c in coco["captions"]} and all(c["image_id"] in kept for c in coco["captions"])


def test_source_stage_downloads_from_coco_layout_and_records_skips(workdir):
    build_coco_site(workdir / "www")
    with FileServer(workdir / "www") as server:
        write_params(workdir, {"source": {"kind": "coco", "n_images": len(EXPECT), "coco": {
            "base_url": server.url, "cache_dir": str(workdir / "cache")}}})
        run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=workdir, capture_output=True,
                             text=True)
    assert run.returncode == 0, run.stderr
    assert "6 images kept, 2 skipped" in run.stdout
    state = records.StateDir(workdir / "data" / "source")
    _check_manifest(state.manifest(), state.root)
    gray = state.manifest().set_index("file").loc["gray.png"]
    pixels = state.image(gray["image_id"])
    assert np.array_equal(pixels[..., 0], pixels[..., 1])  # grayscale kept as gray RGB
    assert state.manifest().set_index("file").loc["rgb.jpg", "origin"].startswith("coco:val2017:")


def test_source_stage_fails_when_too_many_items_fail(tmp_path):
    build_raw(tmp_path / "raw")
    manifest = ingest(tmp_path / "raw", tmp_path / "source", min_side=200, max_side=320)
    statuses = manifest["status"].replace(records.SKIPPED, records.FAILED)
    assert records.failure_share(statuses) > 0.5
    with pytest.raises(RuntimeError, match="max_item_failure"):
        records.check_failures("source", statuses, 0.5)
    records.check_failures("source", statuses, 1.0)
