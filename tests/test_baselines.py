"""The image-level baselines (CNNSpot, UnivFD) on a tiny assembled dataset, through their real code paths."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import write_params
from diffseg import cli, records
from diffseg import params as params_mod
from diffseg.detect import baselines, baselines_cnnspot, baselines_univfd
from diffseg.errors import UserError
from diffseg.twins import clip as twins_clip

SPLITS = ["train"] * 10 + ["val"] * 2 + ["test"] * 4


def build_dataset(root, size: int = 40, splits=SPLITS) -> None:
    """An assembled dataset: every other image is edited (a bright square labelled 'sd2'), the rest never."""
    rng = np.random.default_rng(0)
    data, rows = records.StateDir(root), []
    for i, split in enumerate(splits):
        image_id = f"{i:04d}"
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        if i % 2 == 0:
            image[8:24, 8:24] = rng.integers(200, 256, (16, 16, 3), dtype=np.uint8)
            label[8:24, 8:24] = 1
        records.write_png(data.image_path(image_id), image)
        records.write_png(data.label_path(image_id), label)
        rows.append({"image_id": image_id, "split": split, "source_id": image_id, "n_edits": int(i % 2 == 0),
                     "generators": "sd2" if i % 2 == 0 else "", "status": records.OK, "reason": ""})
    records.write_table(data.root / records.MANIFEST, pd.DataFrame(rows))
    records.write_json(data.root / "classes.json", ["authentic", "sd2"])


@pytest.fixture(scope="module")
def clip_twin(tmp_path_factory):
    return twins_clip.build_clip_twin(tmp_path_factory.mktemp("twins") / "clip", seed=0)


@pytest.fixture
def project(workdir, clip_twin):
    build_dataset(workdir / "data" / "tiny")
    write_params(workdir, {
        "detect": {"dataset": "data/tiny"},
        "baselines": {"cnnspot": {"image_size": 32, "epochs": 1, "batch_size": 8, "blur_jpeg_prob": 0.5},
                      "univfd": {"clip_model": str(clip_twin), "batch_size": 4}}})
    return workdir


def _params(project):
    return params_mod.load(project / "params.yaml")


def test_clip_twin_is_reproducible_and_loads_by_from_pretrained(clip_twin, tmp_path):
    again = twins_clip.build_clip_twin(tmp_path / "clip", seed=0)
    assert (again / "model.safetensors").read_bytes() == (clip_twin / "model.safetensors").read_bytes()
    encoder, processor = baselines_univfd.load_clip(str(clip_twin), None, "cpu")
    images = [np.full((50, 70, 3), v, np.uint8) for v in (0, 255)]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (2, 3, twins_clip.TWIN_SIZE, twins_clip.TWIN_SIZE)
    assert tuple(encoder(pixel_values=pixels).image_embeds.shape) == (2, encoder.config.projection_dim)


def test_univfd_through_the_cli(project):
    assert cli.main(["baseline", "univfd"]) == 0
    result = records.read_json("metrics/baselines/univfd.json")
    assert result["baseline"] == "univfd" and result["train_images"] == 10 and result["test_images"] == 4
    # Edited images carry a bright square: even random CLIP features separate them (and the labels are not flipped).
    assert result["n_edited"] == 2 and result["detection_auc"] == 1.0 and result["detection_accuracy"] == 1.0
    # The saved probe alone reproduces the reported figures.
    p = _params(project)
    test = baselines.ImageSet(project / "data" / "tiny", "test")
    encoder, processor = baselines_univfd.load_clip(p.baselines.univfd.clip_model, None, "cpu")
    feats = baselines_univfd.features(encoder, processor, test, "cpu", 4)
    scores = baselines_univfd.probe_scores(project / "models" / "baselines" / "univfd", feats)
    assert baselines.detection_metrics(test.labels(), scores)["detection_auc"] == result["detection_auc"]
    first = (project / "models" / "baselines" / "univfd" / "probe.safetensors").read_bytes()
    assert cli.main(["baseline", "univfd"]) == 0
    assert (project / "models" / "baselines" / "univfd" / "probe.safetensors").read_bytes() == first


def test_cnnspot_is_deterministic_and_reloads(project):
    p = _params(project)
    out = project / "models" / "baselines" / "cnnspot"
    result = baselines.run(p, "cnnspot", out, project / "metrics" / "baselines" / "cnnspot.json")
    assert result["test_images"] == 4 and len(result["train_loss"]) == 1
    assert 0 <= result["detection_accuracy"] <= 1 and 0 <= result["detection_auc"] <= 1
    weights = (out / "model.safetensors").read_bytes()
    model, config = baselines_cnnspot.load(out)
    assert config["arch"] == "resnet50" and config["image_size"] == 32
    test = baselines.ImageSet(project / "data" / "tiny", "test")
    scores = baselines_cnnspot.scores(model, baselines_cnnspot.Inputs(test, 32), "cpu", 4)
    again = baselines.detection_metrics(test.labels(), scores)
    assert again["detection_auc"] == result["detection_auc"]
    assert again["detection_accuracy"] == result["detection_accuracy"]
    assert baselines.run(p, "cnnspot", out, project / "metrics" / "baselines" / "cnnspot.json") == result
    assert (out / "model.safetensors").read_bytes() == weights


def test_augmentation_is_keyed_and_applies_blur_and_jpeg():
    cfg = params_mod.CNNSpot(blur_jpeg_prob=1.0, flip=False)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rng = lambda: np.random.default_rng(7)  # noqa: E731 - the same keyed generator, twice
    first = baselines_cnnspot.augment(image, rng(), cfg)
    assert np.array_equal(first, baselines_cnnspot.augment(image, rng(), cfg))
    assert first.shape == image.shape and not np.array_equal(first, image)
    off = params_mod.CNNSpot(blur_jpeg_prob=0.0, flip=False)
    assert np.array_equal(baselines_cnnspot.augment(image, rng(), off), image)


def test_detection_metrics_match_the_segmentation_definitions():
    edited = np.array([1, 1, 0, 0])
    result = baselines.detection_metrics(edited, np.array([0.9, 0.5, 0.49, 0.7]))
    # 0.5 counts as edited (>= 0.5, as in diffseg.detect.metrics); 0.7 on a clean image is a false alarm.
    assert result["detection_accuracy"] == 0.75 and result["detection_auc"] == 0.75
    assert baselines.detection_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["detection_auc"] is None


def test_train_split_needs_both_classes(workdir):
    build_dataset(workdir / "one", splits=["train", "test", "train", "test"])  # even images, all edited, train
    with pytest.raises(UserError, match="needs both edited and never-edited"):
        baselines.splits(workdir / "one")


def test_missing_clip_model_is_one_clear_error(project, capsys):
    write_params(project, {"detect": {"dataset": "data/tiny"},
                           "baselines": {"univfd": {"clip_model": "models/twins/none"}}})
    assert cli.main(["baseline", "univfd"]) == 2
    err = capsys.readouterr().err
    assert "baselines.univfd.clip_model" in err and "twins" in err and "Traceback" not in err


@pytest.mark.parametrize("override, key", [
    ({"cnnspot": {"blur_jpeg_prob": 1.5}}, "baselines.cnnspot.blur_jpeg_prob"),
    ({"cnnspot": {"jpeg_quality": [0, 100]}}, "baselines.cnnspot.jpeg_quality"),
    ({"cnnspot": {"weights": "imagenet"}}, "baselines.cnnspot.weights"),
    ({"univfd": {"probe_c": 0}}, "baselines.univfd.probe_c"),
    ({"univfd": {"dim": 3}}, "baselines.univfd.dim"),
])
def test_bad_baseline_params_name_the_key(tmp_path, override, key):
    with pytest.raises(params_mod.ParamsError, match=key.replace(".", r"\.")):
        params_mod.load(write_params(tmp_path, {"baselines": override}))
