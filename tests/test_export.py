"""`diffseg export`: a dataset assembled by the real stages (tiny, three turns, real twins), exported and read
back with `datasets.load_dataset` offline: every label map (and image and turn mask) byte for byte."""
from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import link_twins, write_params
from diffseg import cli
from diffseg import params as params_mod
from diffseg import records
from diffseg.dataset import assemble, export
from diffseg.edit import stage as edit_stage
from diffseg.errors import UserError
from diffseg.filter import stage as filter_stage
from diffseg.propose import stage as propose_stage
from diffseg.source.ingest import ingest
from source_fixture import build_raw



@pytest.fixture(scope="module")
def dataset(tmp_path_factory, twins_dir):
    """data/dataset of a six-image run, 0..3 edits per image, in a repository-shaped folder."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        build_raw(root / "raw")
        ingest(root / "raw", root / "data" / "source", min_side=64, max_side=320)
        link_twins(twins_dir, root)
        p = params_mod.load(write_params(root, {"propose": {"turn_weights": [0.2, 0.2, 0.2, 0.4]}}))
        for turn in p.turn_names:
            propose_stage.run(p, turn, records.turn_dir(turn, "plan"))
            edit_stage.run(p, turn, records.turn_dir(turn, "edit"))
            filter_stage.run(p, turn, records.turn_dir(turn, "state"))
        assemble.run(p, records.DATASET_DIR, root / "metrics" / "dataset.json", root / "metrics" / "dataset_plots")
        assert cli.main(["export"]) == 0  # the command a user runs, with its defaults
    return root


@pytest.mark.slow  # the fixture runs three turns of real (tiny) generators
def test_load_dataset_reproduces_every_file_byte_for_byte(dataset, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(dataset / "hf-cache"))  # keep the user's cache untouched
    data = records.StateDir(dataset / "data" / "dataset")
    manifest = data.manifest().set_index("image_id")
    loaded = datasets.load_dataset(str(dataset / "data" / "export"))
    assert {split: len(rows) for split, rows in loaded.items()} == manifest["split"].value_counts().to_dict()

    raw = loaded.cast_column("label", datasets.Image(decode=False)).cast_column(
        "image", datasets.Image(decode=False)).cast_column("turnmask", datasets.Image(decode=False))
    seen = set()
    for split, rows in raw.items():
        for row in rows:
            image_id = row["image_id"]
            seen.add(image_id)
            assert manifest.loc[image_id, "split"] == split
            assert row["label"]["bytes"] == data.label_path(image_id).read_bytes(), image_id
            assert row["image"]["bytes"] == data.image_path(image_id).read_bytes(), image_id
            assert row["turnmask"]["bytes"] == data.turnmask_path(image_id).read_bytes(), image_id
    assert seen == set(manifest.index)

    # Decoded, the label is the uint8 class-id map the detectors train on.
    for row in loaded["train"]:
        label = np.asarray(row["label"])
        assert row["label"].mode == "L" and np.array_equal(label, records.read_gray(data.label_path(row["image_id"])))
        assert row["image"].mode == "RGB" and row["image"].size == (row["width"], row["height"])


@pytest.mark.slow  # the fixture runs three turns of real (tiny) generators
def test_metadata_columns_and_provenance(dataset, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(dataset / "hf-cache"))
    data = records.StateDir(dataset / "data" / "dataset")
    manifest = data.manifest().set_index("image_id")
    metadata = pd.read_parquet(data.root / "metadata.parquet")
    loaded = datasets.concatenate_datasets(list(datasets.load_dataset(str(dataset / "data" / "export")).values()))
    assert isinstance(loaded.features["label"], datasets.Image)
    for row in loaded:
        info = manifest.loc[row["image_id"]]
        assert row["n_edits"] == info["n_edits"] and row["source_id"] == info["source_id"]
        assert row["generators"] == [g for g in info["generators"].split(",") if g]
        expected = metadata[metadata["image_id"] == row["image_id"]].sort_values("turn_index")
        assert [t["turn"] for t in row["turns"]] == list(expected["turn"])
        for turn, (_, want) in zip(row["turns"], expected.iterrows()):
            for field in ["action", "prompt", "generator", "model", "seed", "decision", "reason"]:
                assert turn[field] == want[field], field
            assert turn["mask_area"] == pytest.approx(want["mask_area"])


@pytest.mark.slow  # the fixture runs three turns of real (tiny) generators
def test_dataset_card(dataset):
    card = (dataset / "data" / "export" / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    classes = records.read_json(dataset / "data" / "dataset" / "classes.json")
    assert header["license"] == "other" and header["task_categories"] == ["image-segmentation"]
    assert {f["split"] for f in header["configs"][0]["data_files"]} <= {"train", "val", "test"}
    assert "Offline profile" in card  # twins and bundled photographs: the card says the numbers mean nothing
    for k, name in enumerate(classes):
        assert f"| {k} | `{name}` |" in card
    for heading in ["## Provenance", "## Licence notes", "## Generators (checkpoints)"]:
        assert heading in card
    assert "`turns`: one record per turn with the fields" in card and "`seed`" in card


@pytest.mark.slow  # the fixture runs three turns of real (tiny) generators
def test_export_replaces_the_folder_whole(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(dataset)
    out = tmp_path / "export"
    (out / "data").mkdir(parents=True)
    (out / "data" / "stale-00000-of-00001.parquet").write_bytes(b"old")
    counts = export.run(records.DATASET_DIR, out)
    assert not (out / "data" / "stale-00000-of-00001.parquet").exists()
    assert sum(counts.values()) == len(records.StateDir(records.DATASET_DIR).manifest())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_shards_split_by_size(monkeypatch):
    monkeypatch.setattr(export, "SHARD_BYTES", 10)
    assert export._shards(["a", "b", "c", "d"], {"a": 4, "b": 4, "c": 11, "d": 1}) == [["a", "b"], ["c"], ["d"]]


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dvc repro assemble"):
        export.run(tmp_path / "nothing", tmp_path / "out")
