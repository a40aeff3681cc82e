"""The detector zoo, training determinism and the benchmark stages on a tiny dataset (robustness and
cross-generator tests: tests/test_robustness.py, tests/test_crossgen.py)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import write_params
from dataset_fixture import CLASSES, build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import evaluate, train, zoo
from diffseg.detect.data import SegmentationSet, to_task
from diffseg.seeding import keyed_unit

# The profile's segformer sets its own epochs and lr: shrunk here to the tiny run like the others.
TINY = {"detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 2, "batch_size": 4,
                   "detectors": {"segformer": {"epochs": None, "lr": None}}},
        "robustness": {"jpeg": [50], "resize": [0.5], "blur": [1.0], "noise": [10.0]},
        "crossgen": {"held_out": []}}


@pytest.fixture
def bench(workdir):
    build_dataset(workdir / "data" / "dataset")
    return params_mod.load(write_params(workdir, TINY))


@pytest.mark.parametrize("arch, encoder", [("fcn8s", "vgg16"), ("fcn8s", "vgg16_bn"), ("DeepLabV3Plus", "resnet18"),
                                           ("Segformer", "mit_b0"), ("Unet", "resnet18")])
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


def test_fcn8s_on_batchnorm_vgg16_keeps_the_input_size():
    torch.manual_seed(0)
    model = zoo.build("fcn8s", "vgg16_bn", n_classes=3).eval()
    # 13 convolutions, each followed by BatchNorm; the cuts still fall right after pool3 and pool4.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert isinstance(model.to_pool3[-1], nn.MaxPool2d) and isinstance(model.to_pool4[-1], nn.MaxPool2d)
    x = torch.rand(1, 3, 72, 88)
    with torch.no_grad():
        pool3 = model.to_pool3(x)
        pool4 = model.to_pool4(pool3)
        out = model(x)
    assert tuple(pool3.shape) == (1, 256, 9, 11) and tuple(pool4.shape) == (1, 512, 4, 5)
    assert tuple(out.shape) == (1, 3, 72, 88)
    assert not isinstance(model, zoo.Normalized)  # random init: no input normalisation


def test_normalized_applies_mean_and_std():
    mean, std = zoo.NORMALIZATIONS["imagenet"]
    wrapped = zoo.Normalized(nn.Identity(), mean, std)
    x = torch.full((1, 3, 2, 2), 0.5)
    out = wrapped(x)
    expected = torch.stack([(torch.full((2, 2), 0.5) - m) / s for m, s in zip(mean, std)])[None]
    assert torch.equal(out, expected)
    # by hand: (0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.0655022, 0.1964286, 0.4177778], abs=1e-6)
    assert set(wrapped.state_dict()) == {"mean", "std"}


def test_pretrained_weights_wrap_the_model_and_the_wrapper_survives_save_and_load(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = zoo.build("Unet", "resnet18", n_classes=2)
    # build() with encoder weights wraps whatever network it builds (stubbed: no download in tests).
    monkeypatch.setattr(zoo, "_network", lambda *args: net)
    model = zoo.build("Unet", "resnet18", 2, encoder_weights="imagenet").eval()
    monkeypatch.undo()
    assert isinstance(model, zoo.Normalized) and model.model is net
    assert zoo.build("Unet", "resnet18", 2, encoder_weights=None).__class__ is not zoo.Normalized
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, net((x - model.mean) / model.std))
    zoo.save(model, tmp_path / "m", {"arch": "Unet", "encoder": "resnet18", "classes": ["authentic", "edited"]})
    assert records.read_json(tmp_path / "m" / "config.json")["normalize"] == "imagenet"
    loaded, config = zoo.load(tmp_path / "m")
    assert isinstance(loaded, zoo.Normalized) and config["normalize"] == "imagenet"
    assert loaded.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert loaded.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_val_selection_keeps_the_first_best_epoch():
    assert train.best_epoch([0.2, 0.5, 0.4]) == 1
    assert train.best_epoch([0.3, 0.5, 0.5]) == 1  # tie: the earlier epoch
    assert train.best_epoch([None, 0.1, None]) == 1
    assert train.best_epoch([None, None]) is None
    # no val score at all: the last epoch is kept
    assert train.kept_epoch([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]) == 1
    assert train.kept_epoch([{"val_iou_edited": v} for v in (0.2, 0.5, 0.4)]) == 1


def test_fit_restores_the_weights_of_the_best_val_epoch(bench, monkeypatch):
    train_set = SegmentationSet(records.DATASET_DIR, ["train"], "binary", 64)
    val_set = SegmentationSet(records.DATASET_DIR, ["val"], "binary", 64)
    scripted, seen = iter([0.2, 0.5, 0.4]), []

    def fake_validate(model, *args, **kwargs):
        seen.append(train.snapshot(model))
        return {"val_miou": 0.0, "val_iou_edited": next(scripted)}

    monkeypatch.setattr(train, "validate", fake_validate)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 1)
    cfg = replace(bench.detect, epochs=3, loss="ce", lr=0.1)
    history = train.fit(model, train_set, val_set, cfg, ["authentic", "edited"], seed=0, device="cpu")
    assert [r["val_iou_edited"] for r in history] == [0.2, 0.5, 0.4]
    assert not torch.equal(seen[1]["weight"], seen[2]["weight"])  # the last epoch did move the weights
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen[1][key])


def test_cosine_schedule_with_warmup_at_known_steps():
    # 5 epochs of 2 steps, 1 warmup epoch: steps 0-1 warm up, steps 2-9 follow half a cosine over 8 steps.
    param = nn.Parameter(torch.zeros(1))
    cfg = params_mod.Detect(lr=1e-3, epochs=5, warmup_epochs=1, schedule="cosine")
    optimizer = torch.optim.SGD([param], lr=cfg.lr)
    scheduler = train.make_scheduler(optimizer, cfg, steps_per_epoch=2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    cosine = [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert lrs == pytest.approx([1e-3 * f for f in [0.5, 1.0, *cosine]], rel=1e-12)
    assert lrs[2] == pytest.approx(1e-3) and lrs[6] == pytest.approx(0.5e-3)
    assert lrs[9] == pytest.approx(1e-3 * 0.0380602, abs=1e-10)  # (1 + cos(7 pi / 8)) / 2
    assert train.lr_factor(10, 10, 2, "cosine") == pytest.approx(0.0)  # reaches 0 one step past the end
    assert [train.lr_factor(s, 10, 2, "constant") for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert train.lr_factor(0, 10, 0, "cosine") == 1.0


@pytest.mark.parametrize("loss", ["ce", "ce_dice"])
def test_ignored_pixels_add_no_loss(loss):
    cfg = params_mod.Detect(loss=loss, ignore_index=255)
    criterion = train.make_loss(cfg, "cpu")
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 4, 4))
    target[0, 1, 2] = 255
    changed = logits.clone()
    changed[0, :, 1, 2] = torch.tensor([-30.0, 30.0])  # whatever the model says there
    assert float(criterion(changed, target)) == pytest.approx(float(criterion(logits, target)), abs=1e-6)
    leaf = logits.clone().requires_grad_()
    criterion(leaf, target).backward()
    assert leaf.grad[0, :, 1, 2].abs().max() == 0
    if loss == "ce":  # the mean runs over the 15 other pixels
        keep = target != 255
        by_hand = nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
        assert float(criterion(logits, target)) == pytest.approx(float(by_hand), rel=1e-6)


def test_binary_task_keeps_the_ignored_label():
    label = np.array([[0, 1, 2, 255]], np.uint8)
    assert to_task(label, "binary").tolist() == [[0, 1, 1, 255]]
    assert to_task(label, "binary", ignore=None).tolist() == [[0, 1, 1, 1]]
    assert to_task(label, "attribution").tolist() == [[0, 1, 2, 255]]


def test_binary_task_collapses_generators(bench):
    attribution = SegmentationSet(records.DATASET_DIR, ["train"], "attribution", 64)
    binary = SegmentationSet(records.DATASET_DIR, ["train"], "binary", 64)
    index = next(i for i in range(len(attribution)) if 2 in attribution[i][1])
    _, y_attr, _ = attribution[index]
    _, y_bin, _ = binary[index]
    assert set(y_attr.unique().tolist()) == {0, 2} and set(y_bin.unique().tolist()) == {0, 1}
    assert torch.equal(y_bin, (y_attr > 0).long())


def test_flips_are_keyed_by_epoch_and_image(bench):
    """detect.flip: an item is mirrored left-right (image and label together) exactly when its keyed draw for
    (seed, epoch, image id) is below 1/2; without a flip seed nothing moves."""
    plain = SegmentationSet(records.DATASET_DIR, ["train"], "attribution", 64)
    flipping = SegmentationSet(records.DATASET_DIR, ["train"], "attribution", 64, flip_seed=7)
    flipped_by_epoch = []
    for epoch in (0, 1):
        flipping.set_epoch(epoch)
        flipped = []
        for i in range(len(plain)):
            (x, y, image_id), (fx, fy, _) = plain[i], flipping[i]
            mirrored = keyed_unit(7, "flip", epoch, image_id) < 0.5
            assert torch.equal(fx, x.flip(-1) if mirrored else x) and torch.equal(fy, y.flip(-1) if mirrored else y)
            flipped.append(mirrored)
        flipped_by_epoch.append(flipped)
    assert all(0 < sum(f) < len(f) for f in flipped_by_epoch)  # some items of each epoch flip, some do not
    assert flipped_by_epoch[0] != flipped_by_epoch[1]  # and the draws change with the epoch


def test_training_is_deterministic_and_learns(bench, workdir):
    train.run(bench, "segformer", workdir / "a", workdir / "log_a")
    train.run(bench, "segformer", workdir / "b", workdir / "log_b")
    a = (workdir / "a" / "model.safetensors").read_bytes()
    assert a == (workdir / "b" / "model.safetensors").read_bytes()
    logged = records.read_json(workdir / "log_a" / "metrics.json")
    assert logged["step"] == 1 and "loss" in logged["train"] and "miou" in logged["val"]
    assert (workdir / "log_a" / "plots" / "metrics" / "train" / "loss.tsv").read_text().count("\n") == 3


def test_per_detector_task_and_the_kept_epoch_reach_the_checkpoint(workdir):
    build_dataset(workdir / "data" / "dataset")
    detectors = {"segformer": {"arch": "Segformer", "encoder": "mit_b0", "encoder_weights": None, "task": "binary",
                               "epochs": None, "lr": None}}
    p = params_mod.load(write_params(workdir, {**TINY, "detect": {**TINY["detect"], "task": "attribution",
                                                                   "epochs": 3, "detectors": detectors}}))
    history = train.run(p, "segformer", workdir / "m", workdir / "log")["history"]
    model, config = zoo.load(workdir / "m")
    assert config["task"] == "binary" and config["classes"] == ["authentic", "edited"]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape[1] == 2
    ious = [r["val_iou_edited"] for r in history]
    assert len(ious) == 3 and all(0 <= v <= 1 for v in ious)
    assert config["kept_epoch"] == train.best_epoch(ious) == ious.index(max(ious))
    assert config["val_iou_edited"] == round(max(ious), 6) and config["normalize"] is None
    logged = (workdir / "log" / "plots" / "metrics" / "val" / "iou_edited.tsv").read_text().splitlines()[1:]
    assert [float(line.split("\t")[-1]) for line in logged] == pytest.approx(ious)


def test_evaluate_reads_a_saved_checkpoint_and_agrees_with_its_predicted_maps(bench, workdir):
    """A saved (untrained) Segformer through zoo.load at working size 32 on the 64x64 test images: the
    JSON's pooled figures equal those recounted from the predicted label PNGs and the labels."""
    torch.manual_seed(0)
    model = zoo.build("Segformer", "mit_b0", len(CLASSES))
    # a checkpoint from before best-on-val: no "kept_epoch" key
    zoo.save(model, workdir / "models" / "detectors" / "segformer",
             {"arch": "Segformer", "encoder": "mit_b0", "task": "attribution", "classes": CLASSES, "image_size": 32})
    result = evaluate.run(bench, "segformer", workdir / "eval.json", workdir / "confusion.json", workdir / "pred")
    assert (result["task"], result["kept_epoch"], result["classes"]) == ("attribution", None, CLASSES)
    assert (result["test_images"], result["test_edited"], result["test_negatives"]) == (6, 3, 3)
    data = records.StateDir(workdir / "data" / "dataset")
    test_ids = sorted(m for m in data.manifest().query("split == 'test'")["image_id"])
    truth = np.stack([records.read_gray(data.label_path(i)) for i in test_ids])
    pred = np.stack([records.read_gray(workdir / "pred" / f"{i}.png") for i in test_ids])
    assert pred.shape == truth.shape == (6, 64, 64)  # predictions at the image's own size
    tp, fp, fn = ((truth > 0) & (pred > 0)).sum(), ((truth == 0) & (pred > 0)).sum(), ((truth > 0) & (pred == 0)).sum()
    assert result["binary"]["iou_edited"]["value"] == round(tp / (tp + fp + fn), 6)
    found = (truth > 0) & (pred > 0)
    accuracy = (truth[found] == pred[found]).mean() if found.any() else None
    assert result["attribution"]["accuracy_on_found"]["value"] == (None if accuracy is None else round(accuracy, 6))
    per_image = records.read_table(workdir / "pred" / "per_image.parquet")
    assert list(per_image["image_id"]) == test_ids and list(per_image["n_edits"]) == [0, 1, 0, 1, 0, 1]
    # the fixture has no metadata.parquet nor turn masks: one turn, no pixel with a known action or turn
    breakdowns = result["breakdowns"]
    assert list(breakdowns["n_edits"]) == ["1"] and breakdowns["n_edits"]["1"]["images"] == 3
    assert {a: r["pixels"] for a, r in breakdowns["action"].items()} == {"add": 0, "remove": 0, "change": 0}
    assert breakdowns["turn"]["1"]["pixels"] == 0
    assert [breakdowns["generator"][g]["pixels"] for g in CLASSES[1:]] == [int((truth == k).sum()) for k in (1, 2)]
    rows = records.read_json(workdir / "confusion.json")
    # 6 x 64 x 64 pixels scaled down to about 20,000 rows (each cell rounds on its own)
    assert abs(len(rows) - 20_000) <= len(CLASSES) ** 2 and {r["actual"] for r in rows} <= set(CLASSES)
