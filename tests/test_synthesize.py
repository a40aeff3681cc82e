"""Synthetic base images: the params that switch them on, the keyed choice, the text-to-image refusal, the
stage's deps under the paper profile, and (slow) an offline run with synthetic base images through assemble."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import import_graph as graph
from conftest import ROOT, write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.dataset import assemble
from diffseg.edit import stage as edit_stage
from diffseg.errors import UserError
from diffseg.filter import stage as filter_stage
from diffseg.params import Generator, ParamsError
from diffseg.propose import stage as propose_stage
from diffseg.source import stage as source_stage
from diffseg.synthesize import stage as synth_stage
from diffseg.synthesize.text2image import Painter
from diffseg.twins import stage as twins

ON = {"synthetic": {"share": 0.25, "generators": ["sd3"], "label": "authentic"}}
T1_SYNTHETIC = {"t1": {"prev": "data/synthetic"}}


def _load(tmp_path: Path, synthesize: dict, t1: str, **overrides) -> params_mod.Params:
    path = write_params(tmp_path, {"synthesize": synthesize, "turns": {"t1": {"prev": t1}}, **overrides})
    return params_mod.load(path)


def test_the_offline_profile_has_no_synthesize_stage(tmp_path):
    p = params_mod.load(ROOT / "params.yaml")
    assert (p.synthesize, p.base_state, p.turns["t1"].prev) == ({}, "data/source", "data/source")


def test_the_paper_profile_generates_a_quarter_from_its_text_to_image_checkpoints():
    p = params_mod.load(ROOT / "configs" / "paper.yaml")
    entry = p.synthesize["synthetic"]
    assert (entry.share, entry.generators, entry.label) == (0.25, ["sd3", "kolors", "hunyuan"], "authentic")
    assert [p.generator(n).family for n in entry.generators] == ["sd3", "kolors_blend", "hunyuan_blend"]
    assert p.turns["t1"].prev == "data/synthetic"


def test_an_entry_turns_it_on(tmp_path):
    p = _load(tmp_path, ON, "data/synthetic")
    assert (p.base_state, p.synthesize["synthetic"].share) == ("data/synthetic", 0.25)


@pytest.mark.parametrize("entry, t1, message", [
    ({"share": 1.5, "generators": ["sd3"]}, "data/synthetic",
     "key 'synthesize.synthetic.share': must be within [0.0, 1.0], got 1.5"),
    ({"share": 0.2, "generators": []}, "data/synthetic",
     "key 'synthesize.synthetic.generators': must name at least one generator from edit.generators when share > 0"),
    ({"share": 0.2, "generators": ["dalle"]}, "data/synthetic",
     "key 'synthesize.synthetic.generators[0]': 'dalle' is not in edit.generators (sd2, sdxl, flux, sd3, "
     "kandinsky, hunyuan, kolors)"),
    ({"share": 0.2, "generators": ["sd3", "sd3"]}, "data/synthetic",
     "key 'synthesize.synthetic.generators': names a generator twice: ['sd3', 'sd3']"),
    ({"share": 0.2, "generators": ["sd3"], "label": "edited"}, "data/synthetic",
     "key 'synthesize.synthetic.label': must be 'authentic' or 'generator', got 'edited'"),
    ({"share": 0.2, "generators": ["sd3"], "device": "tpu"}, "data/synthetic",
     "key 'synthesize.synthetic.device': must be 'auto', 'cpu', 'cuda' or 'mps', got 'tpu'"),
    ({"share": 0.2, "generators": ["sd3"]}, "data/source",
     "key 'turns.t1.prev': must be 'data/synthetic' (synthesize has an entry, whose output the first turn "
     "edits), got 'data/source'"),
])
def test_bad_values_name_the_key(tmp_path, entry, t1, message):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, {"synthetic": entry}, t1)
    assert str(err.value) == f"{tmp_path / 'params.yaml'}: {message}"


def test_a_turn_that_reads_data_synthetic_needs_the_entry(tmp_path):
    with pytest.raises(ParamsError, match=r"key 'turns.t1.prev': must be 'data/source' \(synthesize is \{\}: no "
                                          r"stage writes data/synthetic\), got 'data/synthetic'"):
        _load(tmp_path, {}, "data/synthetic")


def test_only_one_entry_named_synthetic(tmp_path):
    with pytest.raises(ParamsError, match=r"key 'synthesize.extra': the only entry is 'synthetic' \(the stage "
                                          r"synthesize@synthetic writes data/synthetic\)"):
        _load(tmp_path, {"synthetic": ON["synthetic"], "extra": ON["synthetic"]}, "data/synthetic")


def test_a_folder_source_has_no_captions(tmp_path):
    with pytest.raises(ParamsError, match="key 'synthesize': needs the captions of a COCO-format source; "
                                          "source.kind folder has none"):
        _load(tmp_path, ON, "data/synthetic", source={"kind": "folder", "folder": {"path": "photos"}})


def test_the_choice_is_keyed_by_image_id_not_by_order():
    ids = [f"{k:012d}" for k in range(1, 41)]
    chosen = synth_stage.choose(ids, 10, seed=0)
    assert len(chosen) == 10 and chosen == sorted(chosen)
    assert synth_stage.choose(list(reversed(ids)), 10, seed=0) == chosen
    # A larger share keeps every image of a smaller one.
    assert set(synth_stage.choose(ids, 5, seed=0)) < set(chosen)
    assert synth_stage.choose(ids, 10, seed=1) != chosen


def test_glide_has_no_text_to_image_pipeline():
    glide = Generator(name="glide", family="glide", model="openai/glide")
    with pytest.raises(UserError) as err:
        Painter(glide, "cpu", "synthesize.synthetic")
    assert str(err.value) == ("synthesize.synthetic: generator 'glide' (family glide) has no text-to-image pipeline "
                              "here (families that have one: flux_fill, hunyuan_blend, kandinsky22, kolors_blend, "
                              "sd2, sd3, sdxl)")


def test_the_synthesize_stage_deps_are_its_import_closure(tmp_path):
    """The offline profile has no synthesize stage, so the layout test checks it under the paper profile."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(ROOT / "configs" / "paper.yaml", tmp_path / "params.yaml")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    closures = graph.stage_closures(tmp_path)
    assert sorted(m for m in closures["synthesize@synthetic"] if not m.startswith("diffseg.synthesize")) == [
        "diffseg.images", "diffseg.masks", "diffseg.records", "diffseg.resampling", "diffseg.runtime",
        "diffseg.seeding"]
    assert [p for p in graph.check_deps(tmp_path) if p.startswith("synthesize")] == []


# ------------------------------------------------------------------ offline run, stage by stage (slow)
def _offline_params(workdir: Path) -> params_mod.Params:
    gens = [{"name": "sd2", "family": "sd2", "model": "models/twins/sd2", "steps": 2, "resolution": 64},
            {"name": "sd3", "family": "sd3", "model": "models/twins/sd3", "steps": 2, "resolution": 64,
             "options": {"max_sequence_length": 32}}]
    path = write_params(workdir, {
        "source": {"kind": "offline", "min_side": 32, "max_side": 96,
                   "offline": {"n_crops": 4, "n_procedural": 16, "size": 96}},
        "synthesize": {"synthetic": {"share": 0.3, "generators": ["sd2", "sd3"], "label": "generator"}},
        "final_state": "data/turns/t1/state", "propose": {"turn_weights": [0.3, 0.7]},
        "edit": {"generators": gens}, "crossgen": {"held_out": [], "unseen": []}})
    merged = yaml.safe_load(path.read_text())
    merged["turns"] = T1_SYNTHETIC  # replaced, not merged into the profile's three turns
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return params_mod.load(path)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # the offline source, two twins, synthesis twice, one edit turn and assembly
def test_an_offline_run_with_synthetic_base_images(workdir):
    twins.run(0, ["sd2", "sd3"], workdir / "models" / "twins")
    p = _offline_params(workdir)
    source_stage.run(p, records.SOURCE_DIR)
    synthetic = Path("data/synthetic")
    made = synth_stage.run(p, "synthetic", synthetic)
    first = _tree_bytes(synthetic)
    synth_stage.run(p, "synthetic", synthetic)
    assert _tree_bytes(synthetic) == first  # keyed seeds: byte for byte again

    source, synth = records.StateDir(records.SOURCE_DIR), records.StateDir(synthetic)
    src_manifest = source.manifest()
    ok = sorted(src_manifest.loc[src_manifest["status"] == records.OK, "image_id"])
    gen_rows = made[made["synthetic_generator"] != ""].set_index("image_id")
    assert len(gen_rows) == round(0.3 * len(ok))
    assert sorted(gen_rows.index) == synth_stage.choose(ok, len(gen_rows), p.seed)
    captions = {}
    for cap in source.annotations()["captions"]:
        captions.setdefault(f"{cap['image_id']:012d}", []).append(cap["caption"])
    coco = synth.annotations()
    left = {f"{a['image_id']:012d}" for a in coco["annotations"]}
    for image_id, row in gen_rows.iterrows():
        assert row["origin"] == f"synthetic:{row['synthetic_generator']}"
        assert row["synthetic_prompt"] in captions[image_id]
        assert row["synthetic_seed"] == synth_stage.keyed_seed(p.seed, "synthesize", image_id)
        assert image_id not in left  # the photograph's instances are gone
        assert [c["caption"] for c in coco["captions"] if f"{c['image_id']:012d}" == image_id] == [
            row["synthetic_prompt"]]
        assert synth.image_path(image_id).read_bytes() != source.image_path(image_id).read_bytes()
        k = p.classes.index(row["synthetic_generator"])
        assert np.array_equal(synth.label(image_id, (int(row["height"]), int(row["width"]))),
                              np.full((int(row["height"]), int(row["width"])), k, np.uint8))
    for image_id in sorted(set(ok) - set(gen_rows.index)):
        assert synth.image_path(image_id).read_bytes() == source.image_path(image_id).read_bytes()
        assert not synth.label_path(image_id).exists()

    plan = propose_stage.run(p, "t1", records.turn_dir("t1", "plan")).set_index("image_id")
    edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    history = filter_stage.run(p, "t1", records.turn_dir("t1", "state")).set_index("image_id")
    stats = assemble.run(p, records.DATASET_DIR, workdir / "metrics" / "dataset.json",
                         workdir / "metrics" / "dataset_plots")

    data = records.StateDir(records.DATASET_DIR)
    manifest = data.manifest().set_index("image_id")
    metadata = pd.read_parquet(records.DATASET_DIR / "metadata.parquet")
    assert sorted(manifest.index) == ok and sorted(metadata["image_id"]) == ok  # one row per image and turn
    assert (manifest.loc[gen_rows.index, ["synthetic_generator", "synthetic_seed", "synthetic_prompt"]]
            .equals(gen_rows[["synthetic_generator", "synthetic_seed", "synthetic_prompt"]]))
    assert manifest.groupby("source_id")["split"].nunique().max() == 1  # splits by source image
    plan_masks = records.PlanDir(records.turn_dir("t1", "plan"))
    label_stats = {}
    for image_id in gen_rows.index:
        before = synth.image(image_id)
        after, label = data.image(image_id), records.read_gray(data.label_path(image_id))
        base_class = p.classes.index(gen_rows.at[image_id, "synthetic_generator"])
        edited = history.at[image_id, "decision"] == "accepted"
        mask = plan_masks.mask(image_id) if edited else np.zeros(label.shape, bool)
        assert np.array_equal(after[~mask], before[~mask])  # composite: bit-identical outside the mask
        assert (label[~mask] == base_class).all()  # label: the base generator's class where no edit painted
        if edited:
            assert (label[mask] == p.classes.index(plan.at[image_id, "generator"])).all()
        counts = np.bincount(label.ravel(), minlength=len(p.classes))
        for name, n in zip(p.classes, counts):
            label_stats[name] = label_stats.get(name, 0) + int(n)
    n_edited = int((manifest.loc[gen_rows.index, "n_edits"] > 0).sum())
    print(f"\nmanifest by origin: {manifest['origin'].str.split(':').str[0].value_counts().sort_index().to_dict()}"
          f"; synthetic by generator: {gen_rows['synthetic_generator'].value_counts().sort_index().to_dict()}")
    print(f"synthetic images: {len(gen_rows)}, edited {n_edited}; label pixels {label_stats}; "
          f"edited_fraction mean {manifest.loc[gen_rows.index, 'edited_fraction'].mean():.4f}")
    print(f"dataset: {stats['n_images']} images, splits {stats['splits']}, pixels {stats['pixels_per_class']}")
