"""End to end from a folder of plain images: `dvc repro assemble` in a temporary project copy whose source is
the bundled photographs written as ordinary files, planned by the vlm planner on the twins, one turn.

The twins answer gibberish, so every plan comes from the offline fallback (the annotations planner), and with
no instance annotations the only feasible action is *add*: the run proves the path from a folder to the
dataset contracts, not the plans.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clone_fixture import copy_working_tree
from conftest import repo_params
from diffseg import records
from diffseg.source import offline

pytestmark = pytest.mark.slow

N_IMAGES = 6  # of the eight photographs: n_images takes six in the seeded keyed order


def _sh(args: list[str], cwd: Path, env: dict) -> str:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def _write_photos(folder: Path) -> dict[str, tuple[int, int]]:
    """The bundled photographs as PNG, JPEG and WebP files, some in a subfolder; {relative path: (w, h)}."""
    written = {}
    for k, photo in enumerate(offline.load_photos()):
        relpath = f"{'album/' if k % 2 else ''}{photo.name}{('.png', '.jpg', '.webp')[k % 3]}"
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo.pixels).save(folder / relpath)
        written[relpath] = (photo.pixels.shape[1], photo.pixels.shape[0])
    return written


def _project(dest: Path, photos: Path) -> dict:
    """The working tree without outputs, and params for one turn from ``photos`` with the vlm planner."""
    copy_working_tree(dest, ("data/", "models/", "metrics/"))
    data = repo_params()
    data["source"] = {"kind": "folder", "n_images": N_IMAGES, "min_side": 64, "max_side": 128,
                      "folder": {"path": str(photos)}}
    data["twins"].update(families=["sd2"], clip=False, vlm=True)
    data["turns"], data["final_state"] = {"t1": {"prev": "data/source"}}, "data/turns/t1/state"
    data["propose"].update(planner="vlm", turn_weights=[0.5, 0.5])
    data["edit"]["generators"] = [g for g in data["edit"]["generators"] if g["name"] == "sd2"]
    (dest / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=str(dest / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    _sh(["git", "init", "-q"], dest, env)
    _sh(["git", "add", "-A"], dest, env)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "folder source"], dest, env)
    return env


def test_folder_of_photographs_to_dataset_with_the_vlm_planner(tmp_path):
    photos = tmp_path / "photos"
    written = _write_photos(photos)
    dest = tmp_path / "diffseg"
    env = _project(dest, photos)
    log = _sh(["dvc", "repro", "assemble"], dest, env)
    for name in ("source", "twins", "propose@t1", "edit@t1", "filter@t1", "assemble"):
        assert f"Running stage '{name}'" in log, name

    source = records.StateDir(dest / "data" / "source")
    manifest = source.manifest().set_index("image_id")
    assert len(manifest) == N_IMAGES and set(manifest["file"]) < set(written)
    assert (manifest["status"] == "ok").all()
    assert (manifest["origin"] == "folder:" + manifest["file"]).all()
    for row in manifest.itertuples():
        width, height = written[row.file]
        assert row.note == f"downscaled from {width}x{height}" and max(row.width, row.height) == 128

    state = records.StateDir(dest / "data" / "turns" / "t1" / "state")
    assert source.annotations()["annotated"] is False and state.annotations()["annotated"] is False
    plan = pd.read_parquet(dest / "data" / "turns" / "t1" / "plan" / records.MANIFEST).set_index("image_id")
    asked = plan[plan["vlm_attempts"] > 0]
    assert len(asked) >= 1 and (asked["reason"].str.startswith("vlm: ")).all()
    planned = plan[plan["status"] == "ok"]
    assert len(planned) >= 1 and set(planned["action"]) == {"add"} and set(planned["planner"]) == {"annotations"}

    dataset = records.StateDir(dest / records.DATASET_DIR)
    assert records.read_json(dataset.root / "classes.json") == ["authentic", "sd2"]
    meta = pd.read_parquet(dataset.root / "metadata.parquet")
    accepted = meta[meta["decision"] == "accepted"].set_index("image_id")
    assert len(accepted) >= 1 and len(accepted) < N_IMAGES  # edited images and never-edited negatives
    plans = records.PlanDir(dest / "data" / "turns" / "t1" / "plan")
    for image_id in dataset.manifest()["image_id"]:
        before, after = source.image(image_id), dataset.image(image_id)
        label = records.read_gray(dataset.label_path(image_id))
        turnmask = records.read_gray(dataset.turnmask_path(image_id))
        with Image.open(dataset.label_path(image_id)) as img:
            assert (img.mode, img.size) == ("L", (before.shape[1], before.shape[0]))
        edited = plans.mask(image_id) if image_id in accepted.index else np.zeros(before.shape[:2], bool)
        # Labels: class 1 (sd2) exactly on the accepted edit's mask, the turn mask alike; composite: every other
        # pixel is the source's, bit for bit.
        assert np.array_equal(label, edited.astype(np.uint8)) and np.array_equal(turnmask > 0, edited)
        assert np.array_equal(after[~edited], before[~edited])
        if edited.any():
            assert not np.array_equal(after[edited], before[edited])
