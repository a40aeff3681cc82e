"""Each generation stage on tiny data: plan, edit (real twins), filter, assemble, and their contracts."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from conftest import link_twins, write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.dataset import assemble
from diffseg.edit import families
from diffseg.edit import stage as edit_stage
from diffseg.filter import stage as filter_stage
from diffseg.propose import stage as propose_stage
from diffseg.source.ingest import ingest
from source_fixture import build_raw

ALL_TURNS = {"propose": {"turn_weights": [0.0, 0.0, 0.0, 1.0]}}  # every image gets three edits


@pytest.fixture
def project(workdir, twins_dir):
    build_raw(workdir / "raw")
    ingest(workdir / "raw", workdir / "data" / "source", min_side=64, max_side=320)
    link_twins(twins_dir, workdir)
    return workdir


def _params(project, overrides=None):
    merged = {**ALL_TURNS, **(overrides or {})}
    if "generators" in merged.get("edit", {}):  # held-out generators must exist among the overrides
        merged["crossgen"] = {"held_out": []}
    return params_mod.load(write_params(project, merged))


def _run_turn(p, turn):
    plan = propose_stage.run(p, turn, records.turn_dir(turn, "plan"))
    edits = edit_stage.run(p, turn, records.turn_dir(turn, "edit"))
    history = filter_stage.run(p, turn, records.turn_dir(turn, "state"))
    return plan, edits, history


def test_turn_contracts(project):
    p = _params(project)
    prev = records.StateDir("data/source")
    plan, edits, history = _run_turn(p, "t1")
    planned = plan[plan["status"] == records.OK]
    assert len(planned) == len(prev.ok_ids()) == 6
    assert set(planned["action"]) <= {"add", "remove", "change"}
    assert set(planned["generator"]) <= set(p.classes[1:])
    plan_dir, edit_dir = records.PlanDir(records.turn_dir("t1", "plan")), records.StateDir(records.turn_dir("t1", "edit"))
    state = records.StateDir(records.turn_dir("t1", "state"))
    for row in planned.itertuples():
        mask = plan_dir.mask(row.image_id)
        assert abs(mask.mean() - row.mask_area) < 1e-9
        before = prev.image(row.image_id)
        after = edit_dir.image(row.image_id)
        # Composite contract: bit-identical outside the mask, and the edit changed the inside.
        assert np.array_equal(after[~mask], before[~mask])
        assert np.abs(after[mask].astype(int) - before[mask].astype(int)).mean() > 0
        label = edit_dir.label(row.image_id, mask.shape)
        assert set(np.unique(label[mask])) == {p.classes.index(row.generator)} and not label[~mask].any()
        assert set(np.unique(edit_dir.turnmask(row.image_id, mask.shape)[mask])) == {1}
        decision = history.set_index("image_id").loc[row.image_id, "decision"]
        chosen = edit_dir if decision == "accepted" else prev
        assert state.image_path(row.image_id).read_bytes() == chosen.image_path(row.image_id).read_bytes()
    assert len(state.history()) == 6 and set(state.history()["turn"]) == {"t1"}


def test_three_turns_and_assemble(project):
    p = _params(project)
    for turn in p.turn_names:
        _run_turn(p, turn)
    stats = assemble.run(p, records.DATASET_DIR, project / "metrics" / "dataset.json",
                         project / "metrics" / "dataset_plots")
    data = records.StateDir(records.DATASET_DIR)
    classes = records.read_json(data.root / "classes.json")
    assert classes == p.classes
    manifest = data.manifest()
    meta = pd.read_parquet(data.root / "metadata.parquet")
    assert len(manifest) == stats["n_images"] == 6 and len(meta) == 18
    for column in ["source_id", "origin", "action", "target", "prompt", "generator", "model", "revision", "steps",
                   "guidance", "seed", "mask_area", "change_in_mask", "decision", "reason"]:
        assert column in meta.columns and meta[column].notna().all(), column
    for image_id in manifest["image_id"]:
        label = records.read_gray(data.label_path(image_id))
        turnmask = records.read_gray(data.turnmask_path(image_id))
        assert label.max() < len(classes)
        assert np.array_equal(label > 0, turnmask > 0)  # every edited pixel is owned by a generator
        # The last accepted edit owns its whole mask.
        accepted = meta[(meta["image_id"] == image_id) & (meta["decision"] == "accepted")]
        if len(accepted):
            last = accepted.iloc[-1]
            mask = records.PlanDir(records.turn_dir(last["turn"], "plan")).mask(image_id)
            assert (label[mask] == classes.index(last["generator"])).all()
    assert manifest.groupby("source_id")["split"].nunique().max() == 1
    assert (records.DATASET_DIR / "figures" / "samples.png").stat().st_size > 10_000
    assert "Offline profile" in (records.DATASET_DIR / "README.md").read_text()
    assert records.read_json(project / "metrics" / "dataset.json")["dataset"]["n_images"] == 6
    # The plot data agrees with the manifest and the metadata.
    turns = pd.read_csv(project / "metrics" / "dataset_plots" / "turns_per_image.tsv", sep="\t")
    assert dict(zip(turns["edits"], turns["images"])) == {k: int((manifest["n_edits"] == k).sum())
                                                          for k in range(manifest["n_edits"].max() + 1)}
    per_generator = pd.read_csv(project / "metrics" / "dataset_plots" / "edits_per_generator.tsv", sep="\t")
    assert per_generator["edits"].sum() == (meta["decision"] == "accepted").sum() == stats["n_edits"]


def _nan_generator(project, twins_dir) -> dict:
    """A real sd2 twin whose UNet output layer is NaN: the pipeline runs and returns NaN images."""
    broken = project / "models" / "broken_sd2"
    shutil.copytree(twins_dir / "sd2", broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["conv_out.weight"][:] = float("nan")
    save_file(tensors, weights)
    return {"name": "broken", "family": "sd2", "model": str(broken), "steps": 2, "resolution": 256}


def test_nan_output_is_recorded_and_rejected(project, twins_dir):
    gen = _nan_generator(project, twins_dir)
    p = _params(project, {"edit": {"generators": [gen]}, "max_item_failure": 1.0})
    _, edits, history = _run_turn(p, "t1")
    assert (edits["status"] == records.FAILED).all()
    assert edits["reason"].str.contains("NaN").all()
    assert (history["decision"] == "rejected").all()
    state, source = records.StateDir(records.turn_dir("t1", "state")), records.StateDir("data/source")
    for image_id in source.ok_ids():
        assert state.image_path(image_id).read_bytes() == source.image_path(image_id).read_bytes()
        assert not state.label_path(image_id).exists()


def test_edit_stage_fails_when_failures_exceed_limit(project, twins_dir):
    gen = _nan_generator(project, twins_dir)
    p = _params(project, {"edit": {"generators": [gen]}, "max_item_failure": 0.5})
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    with pytest.raises(RuntimeError, match="max_item_failure"):
        edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    # The manifest with the reasons is written before the stage stops.
    assert records.StateDir(records.turn_dir("t1", "edit")).manifest()["reason"].str.contains("NaN").all()


@pytest.mark.parametrize("gen, message", [
    ({"name": "x", "family": "dalle", "model": "models/twins/sd2"}, "unknown family 'dalle'"),
    ({"name": "x", "family": "sd2", "model": "models/twins/nowhere"}, "no diffusers pipeline folder"),
    ({"name": "x", "family": "sd2", "model": "org/not-here"}, "not a local folder either"),
])
def test_bad_generator_stops_before_work(project, gen, message):
    p = _params(project, {"edit": {"generators": [dict(gen, resolution=256)]}})
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    with pytest.raises(families.GeneratorError, match=message):
        edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    assert not any(records.turn_dir("t1", "edit").glob("images/*"))


def test_non_inpainting_checkpoint_is_refused(project, twins_dir):
    from diffusers import UNet2DConditionModel

    wrong = project / "models" / "txt2img"
    shutil.copytree(twins_dir / "sd2", wrong)
    unet = UNet2DConditionModel.from_pretrained(wrong / "unet")
    config = dict(unet.config, in_channels=4)
    UNet2DConditionModel.from_config(config).save_pretrained(wrong / "unet")
    gen = families.create(params_mod.Generator(name="x", family="sd2", model=str(wrong), resolution=256))
    with pytest.raises(families.GeneratorError, match="not an inpainting checkpoint"):
        gen.load()


def test_hub_id_offline_fails_fast_with_instructions(monkeypatch):
    import socket

    # Fast means without network: no connection is even attempted (a timing bound would flake under load).
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: attempts.append(address))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = families.create(params_mod.Generator(name="sd2", family="sd2",
                                               model="sd2-community/stable-diffusion-2-inpainting"))
    with pytest.raises(families.GeneratorError, match="huggingface-cli download sd2-community"):
        gen.load()
    assert attempts == []
