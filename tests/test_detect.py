"""The detector zoo, training determinism, distortions and the benchmark stages on a tiny dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_params
from dataset_fixture import CLASSES, build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import crossgen, distortions, evaluate, robustness, train, zoo
from diffseg.detect.data import SegmentationSet

TINY = {"detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 2, "batch_size": 4},
        "robustness": {"jpeg": [50], "resize": [0.5], "blur": [1.0], "noise": [10.0]},
        "crossgen": {"held_out": []}}


@pytest.fixture
def bench(workdir):
    build_dataset(workdir / "data" / "dataset")
    return params_mod.load(write_params(workdir, TINY))


@pytest.mark.parametrize("arch, encoder", [("fcn8s", "vgg16"), ("DeepLabV3Plus", "resnet18"), ("Segformer", "mit_b0"),
                                           ("Unet", "resnet18")])
def test_zoo_builds_and_roundtrips(tmp_path, arch, encoder):
    torch.manual_seed(0)
    model = zoo.build(arch, encoder, n_classes=3).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 64, 64)
    zoo.save(model, tmp_path / "m", {"arch": arch, "encoder": encoder, "classes": CLASSES})
    loaded, config = zoo.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    assert config["classes"] == CLASSES


def test_fcn8s_refuses_other_encoders():
    with pytest.raises(ValueError, match="VGG-16"):
        zoo.build("fcn8s", "resnet18", 2)


def test_binary_task_collapses_generators(bench):
    attribution = SegmentationSet(records.DATASET_DIR, ["train"], "attribution", 64)
    binary = SegmentationSet(records.DATASET_DIR, ["train"], "binary", 64)
    index = next(i for i in range(len(attribution)) if 2 in attribution[i][1])
    _, y_attr, _ = attribution[index]
    _, y_bin, _ = binary[index]
    assert set(y_attr.unique().tolist()) == {0, 2} and set(y_bin.unique().tolist()) == {0, 1}
    assert torch.equal(y_bin, (y_attr > 0).long())


def test_training_is_deterministic_and_learns(bench, workdir):
    train.run(bench, "segformer", workdir / "a", workdir / "log_a")
    train.run(bench, "segformer", workdir / "b", workdir / "log_b")
    a = (workdir / "a" / "model.safetensors").read_bytes()
    assert a == (workdir / "b" / "model.safetensors").read_bytes()
    logged = records.read_json(workdir / "log_a" / "metrics.json")
    assert logged["step"] == 1 and "loss" in logged["train"] and "miou" in logged["val"]
    assert (workdir / "log_a" / "plots" / "metrics" / "train" / "loss.tsv").read_text().count("\n") == 3


def test_evaluate_and_robustness_write_metrics(bench, workdir):
    train.run(bench, "segformer", workdir / "models" / "detectors" / "segformer", workdir / "log")
    result = evaluate.run(bench, "segformer", workdir / "eval.json", workdir / "confusion.json")
    assert result["task"]["per_class_iou"].keys() == set(CLASSES)
    assert 0 <= result["binary"]["miou"] <= 1 and result["test_images"] == 6
    rows = records.read_json(workdir / "confusion.json")
    assert {r["actual"] for r in rows} <= set(CLASSES) and len(rows) > 0
    robust = robustness.run(bench, "segformer", workdir / "robust.json", workdir / "curves")
    assert set(robust) == {"detector", "clean", "jpeg", "resize", "blur", "noise"}
    assert robust["clean"]["miou"] == result["task"]["miou"]
    assert records.read_json(workdir / "curves" / "jpeg.json")[0]["level"] == 50.0


def test_crossgen_never_trains_on_the_held_out_generator(bench, workdir):
    seen = crossgen.touched_by("sd2")
    train_set = SegmentationSet(records.DATASET_DIR, ["train"], "binary", 64, keep=lambda m: ~seen(m))
    assert len(train_set) and "sd2" not in set(train_set.items["generators"])
    p = params_mod.load(write_params(workdir, {**TINY, "crossgen": {"held_out": ["sd2"]}}))
    result = crossgen.run(p, "sd2", workdir / "crossgen.json")
    manifest = records.StateDir(records.DATASET_DIR).manifest()
    assert result["test_unseen_images"] == int((manifest["generators"] == "sd2").sum()) > 0
    assert result["train_images"] == len(train_set)
    assert 0 <= result["binary_miou"] <= 1 and records.read_json(workdir / "crossgen.json") == result


@pytest.mark.parametrize("kind, level", [("jpeg", 30), ("resize", 0.5), ("blur", 2.0), ("noise", 10.0)])
def test_distortions_change_the_image_deterministically(kind, level):
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = distortions.DISTORTIONS[kind](image, level)
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert not np.array_equal(out, image) if out.shape == image.shape else out.shape[:2] == (20, 30)
    assert np.array_equal(out, distortions.DISTORTIONS[kind](image, level))
