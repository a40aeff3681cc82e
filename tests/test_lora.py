"""LoRA generators: the LoRA twins, their loading through the family adapters, the refusals, the
provenance of a LoRA edit, and (slow) the paper's unseen-generator protocol on a LoRA-SDXL twin, from an
edit turn through the edit stage to the cross-generator test that holds it out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from safetensors import safe_open

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.dataset import assemble
from diffseg.detect import crossgen, train
from diffseg.edit import families
from diffseg.edit import stage as edit_stage
from diffseg.errors import UserError
from diffseg.filter import stage as filter_stage
from diffseg.params import Generator, Lora
from diffseg.propose import stage as propose_stage
from diffseg.source import stage as source_stage
from diffseg.twins import lora as lora_twins
from diffseg.twins import stage as twins
from test_twins import twin_generator

# The families whose diffusers pipeline loads LoRA weights, i.e. every family with a twin but
# kandinsky22 and hunyuan_blend.
LORA_FAMILIES = ["flux_fill", "kolors_blend", "sd2", "sd3", "sdxl"]
WEIGHTS = lora_twins.WEIGHT_NAME


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    """The twins of the LoRA families and a LoRA twin of each, written by the twins stage."""
    out = tmp_path_factory.mktemp("lora") / "twins"
    twins.run(0, LORA_FAMILIES, out, loras=LORA_FAMILIES)
    return out


def _lora_generator(lora_dir: Path, family: str, scale: float = 0.8) -> Generator:
    return twin_generator(lora_dir, family, resolution=64,
                          lora=Lora(path=str(lora_dir / f"{family}_lora"), weight_name=WEIGHTS, scale=scale))


def _batch() -> families.Batch:
    """One 64 px image (the twins' smallest native size keeps four runs per family cheap)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    return families.Batch([image], [Image.fromarray(mask)], ["a red cup"], ["blurry"], [7])


def _run(gen: Generator) -> bytes:
    """The generator's image for :func:`_batch`, as the edit stage rounds it, from a freshly loaded adapter."""
    adapter = families.create(gen)
    adapter.load()
    out = edit_stage.to_uint8(adapter.run(_batch())).tobytes()
    adapter.unload()
    return out


# ------------------------------------------------------------------ the LoRA twin
def test_the_twins_stage_writes_the_sdxl_lora_twin_the_same_every_time(tmp_path):
    first = twins.run(0, ["sdxl"], tmp_path / "a", loras=["sdxl"])
    twins.run(0, ["sdxl"], tmp_path / "b", loras=["sdxl"])
    row = first.set_index("folder").loc["sdxl_lora"]
    # Rank 4 on q, k, v and out (64 -> 64 each) of the self- and cross-attention of the UNet's four
    # transformer blocks (one down, one mid, two up): 4 x 2 x 4 x (4 x 64 + 64 x 4) = 16384.
    assert (row["family"], row["pipeline"], row["parameters"]) == ("sdxl", "LoRA", 16384)
    weights = tmp_path / "a" / "sdxl_lora" / WEIGHTS
    assert sorted(p.name for p in weights.parent.iterdir()) == [WEIGHTS]
    assert weights.read_bytes() == (tmp_path / "b" / "sdxl_lora" / WEIGHTS).read_bytes()
    with safe_open(str(weights), "pt") as f:
        keys = list(f.keys())
    # diffusers' own LoRA layout, as save_lora_weights writes a trained one.
    assert len(keys) == 64 and all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in keys)


@pytest.mark.parametrize("family", LORA_FAMILIES)
def test_lora_changes_the_output_and_loads_deterministically(lora_dir, family):
    plain = _run(twin_generator(lora_dir, family, resolution=64))
    with_lora = _run(_lora_generator(lora_dir, family))
    assert with_lora != plain  # same checkpoint, seed and inputs: only the LoRA differs
    assert _run(_lora_generator(lora_dir, family)) == with_lora  # loaded again: the same bytes
    assert _run(_lora_generator(lora_dir, family, scale=1.6)) != with_lora  # the scale reaches the adapter


def test_the_lora_is_one_active_adapter_on_the_denoiser(lora_dir):
    adapter = families.create(_lora_generator(lora_dir, "sdxl"))
    adapter.load()
    assert adapter.pipe.get_list_adapters() == {"unet": ["lora"]}
    assert adapter.pipe.get_active_adapters() == ["lora"]


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("family, extra", [("kandinsky22", {"prior": "p"}), ("hunyuan_blend", {}),
                                           ("glide", {"resolution": 256})])
def test_families_without_lora_loading_refuse_a_lora(family, extra):
    gen = Generator(name="x", family=family, model="m", lora=Lora(path="some/lora"), **extra)
    with pytest.raises(families.GeneratorError) as err:
        families.create(gen)
    assert str(err.value) == (f"generator 'x' ({family}): key 'lora' is set, but this family's pipeline "
                              f"cannot load LoRA weights")


def test_a_missing_lora_file_stops_before_work(lora_dir, tmp_path):
    gen = twin_generator(lora_dir, "sdxl", lora=Lora(path=str(tmp_path), weight_name="missing.safetensors"))
    adapter = families.create(gen)
    with pytest.raises(families.GeneratorError) as err:
        adapter.check_source()
    assert str(err.value) == (f"generator 'sdxl' (sdxl): key 'lora.path': no LoRA weights at "
                              f"'{tmp_path / 'missing.safetensors'}' (the offline LoRA twins are built by "
                              f"`dvc repro twins` with twins.loras)")


def test_a_lora_of_another_base_model_fails_at_load(lora_dir):
    # The SD2 twin's LoRA on the SDXL twin: same module names, other shapes.
    gen = twin_generator(lora_dir, "sdxl", lora=Lora(path=str(lora_dir / "sd2_lora"), weight_name=WEIGHTS))
    adapter = families.create(gen)
    with pytest.raises(families.GeneratorError) as err:
        adapter.load()
    assert str(err.value) == (f"generator 'sdxl' (sdxl): cannot load LoRA weights from '{lora_dir / 'sd2_lora'}': "
                              f"Error(s) in loading state_dict for UNet2DConditionModel: size mismatch: the LoRA "
                              f"was made for another base model")
    assert not adapter.loaded


def test_a_hub_lora_offline_fails_fast_naming_it(lora_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = twin_generator(lora_dir, "sdxl", lora=Lora(path="nobody/some-sdxl-lora", weight_name="lora.safetensors"))
    adapter = families.create(gen)
    with pytest.raises(families.GeneratorError) as err:
        adapter.load()
    assert "cannot load LoRA weights from 'nobody/some-sdxl-lora'" in str(err.value)
    assert "huggingface-cli download nobody/some-sdxl-lora" in str(err.value)


def test_a_lora_twin_of_a_family_without_lora_loading_is_refused_before_any_write(tmp_path):
    with pytest.raises(UserError) as err:
        twins.run(0, ["kandinsky22"], tmp_path / "twins", loras=["kandinsky22"])
    assert str(err.value) == ("twins.loras: KandinskyV22InpaintPipeline (family 'kandinsky22') cannot load LoRA "
                              "weights, so it gets no LoRA twin")
    assert not (tmp_path / "twins").exists()


# ------------------------------------------------------------------ params
@pytest.mark.parametrize("lora, message", [
    ({"path": "x", "scale": 0.0}, "key 'edit.generators[1].lora.scale': must be a finite number other than 0 "
                                  "(0 switches the LoRA off: remove the lora entry instead), got 0.0"),
    ({"path": "x", "scale": float("inf")}, "key 'edit.generators[1].lora.scale': must be a finite number"),
    ({"path": ""}, "key 'edit.generators[1].lora.path': must name a hub id, a folder or a weights file"),
    ({"path": "x", "weight_name": " "}, "key 'edit.generators[1].lora.weight_name': must be a file name, or null"),
    ({"weight_name": "w.safetensors"}, "key 'edit.generators[1].lora.path': Structured config of type `Lora` "
                                       "has missing mandatory value: path"),
    # omegaconf names a key inside a list item from the item on (as for any generator key)
    ({"path": "x", "alpha": 1}, "key 'lora.alpha': Key 'alpha' not in 'Lora'"),
    ({"path": "x", "scale": "big"}, "key 'lora.scale': Value 'big' of type 'str' could not be converted to Float"),
])
def test_bad_lora_entries_name_the_key(workdir, lora, message):
    entries = [{"name": "sd2", "family": "sd2", "model": "m"},
               {"name": "sdxl", "family": "sdxl", "model": "m", "lora": lora}]
    path = write_params(workdir, {"edit": {"generators": entries}, "crossgen": {"held_out": []}})
    with pytest.raises(params_mod.ParamsError) as err:
        params_mod.load(path)
    assert message in str(err.value)


def test_a_lora_entry_loads_with_its_defaults(workdir):
    entries = [{"name": "sdxl", "family": "sdxl", "model": "m"},
               {"name": "sdxl_lora", "family": "sdxl", "model": "m", "lora": {"path": "org/lora"}}]
    p = params_mod.load(write_params(workdir, {"edit": {"generators": entries}, "crossgen": {"held_out": []}}))
    assert p.edit.generators[0].lora is None
    assert p.edit.generators[1].lora == Lora(path="org/lora", weight_name=None, scale=1.0, revision=None)


# ------------------------------------------------------------------ an edit turn with the LoRA twin
def _one_turn_params(workdir: Path, resolution: int, before: tuple[dict, ...] = (), **overrides) -> params_mod.Params:
    """One turn, every planned image edited, by the SDXL twin or the SDXL twin with its LoRA twin (after the
    generators ``before``)."""
    gens = [*before,
            {"name": "sdxl", "family": "sdxl", "model": "models/twins/sdxl", "steps": 2, "resolution": resolution},
            {"name": "sdxl_lora", "family": "sdxl", "model": "models/twins/sdxl", "steps": 2,
             "resolution": resolution,
             "lora": {"path": "models/twins/sdxl_lora", "weight_name": WEIGHTS, "scale": 0.8}}]
    data = {"final_state": "data/turns/t1/state", "propose": {"turn_weights": [0.0, 1.0]},
            "edit": {"generators": gens}, "crossgen": {"held_out": [], "unseen": []}}
    data.update(overrides)
    path = write_params(workdir, data)
    merged = yaml.safe_load(path.read_text())
    merged["turns"] = {"t1": {"prev": "data/source"}}  # replaced, not merged into the profile's three turns
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return params_mod.load(path)


def test_a_lora_edit_through_the_stages_records_its_lora(workdir):
    from source_fixture import build_raw

    from diffseg.source.ingest import ingest

    build_raw(workdir / "raw")
    ingest(workdir / "raw", workdir / "data" / "source", min_side=64, max_side=320)
    twins.run(0, ["sdxl"], workdir / "models" / "twins", loras=["sdxl"])
    p = _one_turn_params(workdir, 128)
    plan = propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    edits = edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    history = filter_stage.run(p, "t1", records.turn_dir("t1", "state")).set_index("image_id")
    by_lora = sorted(plan.loc[plan["generator"] == "sdxl_lora", "image_id"])
    assert by_lora and set(edits.set_index("image_id").loc[by_lora, "status"]) == {records.OK}
    lora_rows = history.loc[by_lora, ["lora", "lora_weight_name", "lora_scale", "lora_revision", "model"]]
    assert lora_rows.drop_duplicates().values.tolist() == [["models/twins/sdxl_lora", WEIGHTS, 0.8, "",
                                                            "models/twins/sdxl"]]
    plain = sorted(set(history.index) - set(by_lora))
    assert history.loc[plain, ["lora", "lora_weight_name", "lora_scale", "lora_revision"]].drop_duplicates() \
        .values.tolist() == [["", "", 0.0, ""]]
    edit_dir = records.StateDir(records.turn_dir("t1", "edit"))
    for image_id in by_lora:
        mask = records.PlanDir(records.turn_dir("t1", "plan")).mask(image_id)
        assert set(np.unique(edit_dir.label(image_id, mask.shape)[mask])) == {2}  # the class of sdxl_lora


# ------------------------------------------------------------------ the unseen-generator protocol, end to end
@pytest.mark.slow  # the offline source, an edit turn of three generators, assembly and two detector trainings
def test_a_lora_generator_held_out_as_the_unseen_generator(workdir, monkeypatch):
    twins.run(0, ["sd2", "sdxl"], workdir / "models" / "twins", loras=["sdxl"])
    sd2 = {"name": "sd2", "family": "sd2", "model": "models/twins/sd2", "steps": 2, "resolution": 64}
    # The offline source at 96 px: the eight bundled photographs, eight crops and 40 procedural scenes.
    p = _one_turn_params(
        workdir, 64, (sd2,),
        source={"kind": "offline", "min_side": 32, "max_side": 96, "offline": {"n_crops": 8, "n_procedural": 40,
                                                                               "size": 96}},
        propose={"turn_weights": [0.3, 0.7]},
        detect={"image_size": 64, "epochs": 2, "batch_size": 8, "task": "binary",
                "detectors": {"deeplabv3plus": {"arch": "DeepLabV3Plus", "encoder": "resnet18",
                                                "encoder_weights": None}}},
        crossgen={"detector": "deeplabv3plus", "held_out": ["sdxl_lora"], "unseen": ["sdxl_lora"]})
    source_stage.run(p, records.SOURCE_DIR)
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    filter_stage.run(p, "t1", records.turn_dir("t1", "state"))
    assemble.run(p, records.DATASET_DIR, workdir / "metrics" / "dataset.json", workdir / "metrics" / "dataset_plots")

    root = Path(p.detect.dataset)
    manifest = records.StateDir(root).manifest().set_index("image_id")
    touched = sorted(i for i, gens in manifest["generators"].fillna("").items() if "sdxl_lora" in gens.split(","))
    assert touched
    metadata = pd.read_parquet(root / "metadata.parquet")
    by_lora = metadata[(metadata["generator"] == "sdxl_lora") & (metadata["decision"] == "accepted")]
    assert sorted(by_lora["image_id"]) == touched
    assert set(by_lora["lora"]) == {"models/twins/sdxl_lora"} and set(by_lora["lora_scale"]) == {0.8}

    fitted = {}
    for module in (train, crossgen):
        def spy(model, train_set, val_set, *args, _real=module.fit, _name=module.__name__, **kwargs):
            fitted[_name] = train_set.image_ids() + val_set.image_ids()
            return _real(model, train_set, val_set, *args, **kwargs)
        monkeypatch.setattr(module, "fit", spy)
    train.run(p, "deeplabv3plus", workdir / "models" / "detectors" / "deeplabv3plus",
              workdir / "metrics" / "train" / "deeplabv3plus")
    result = crossgen.run(p, "sdxl_lora", workdir / "metrics" / "crossgen" / "sdxl_lora.json")
    print(f"touched by sdxl_lora: {len(touched)} of {len(manifest)} images; crossgen@sdxl_lora: "
          f"{ {k: result[k] for k in ('train_images', 'val_images', 'kept_epoch', 'val_iou_edited')} }, "
          f"unseen {result['unseen']}, seen {result['seen']}")

    selection = crossgen.select(root, "sdxl_lora", ["sdxl_lora"])
    assert selection.unseen == touched  # one turn: nothing painted over its pixels
    trainable = sorted(i for i in manifest.index if manifest.at[i, "split"] in ("train", "val") and i not in touched)
    for stage in ("diffseg.detect.train", "diffseg.detect.crossgen"):
        assert not set(fitted[stage]) & set(touched)
        assert sorted(fitted[stage]) == trainable
    assert (result["unseen"]["images"], result["never_trained_on"]) == (len(touched), ["sdxl_lora"])
    assert result["train_images"] + result["val_images"] == len(trainable)
    assert result["seen"]["images"] == sum(manifest.loc[i, "split"] == "test" and manifest.loc[i, "n_edits"] > 0
                                           and i not in touched for i in manifest.index)
