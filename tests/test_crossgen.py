"""Cross-generator test: which images train, test and control, the truth maps, and hand-counted scores.

The tiny datasets here are written with diffseg.records in the exact layout `assemble` writes. Images are
black with pure white rectangles; :class:`Bright` is a stub detector that calls a pixel edited exactly
where it is white, so every count below follows from the rectangles.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_params
from dataset_fixture import build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import baselines, crossgen, data, evaluate, robustness, scoring, train, zoo

S = 32  # image side; also the detector's working size, so no resize blurs a hand count
CLASSES = ["authentic", "sd2", "sdxl", "flux"]  # sd2 = 1, sdxl = 2, flux = 3
Box = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1


class Bright(torch.nn.Module):
    """Stub detector on [0, 1] input: logit of class k (k >= 1) is 10 (2 x_{k-1} - 1), authentic 0.

    A white pixel gets P(edited) = sigmoid(10) (generator 1, the red channel, wins ties by argmax order);
    a black one sigmoid(-10) per class. No trained weight: the numbers are known by hand.
    """

    def __init__(self, n_classes: int = 2):
        super().__init__()
        self.n_classes = n_classes
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives .parameters() / .to() something to hold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = [x[:, min(k, 2):min(k, 2) + 1] for k in range(self.n_classes - 1)]
        edited = [10.0 * (2.0 * c - 1.0) for c in channels]
        return torch.cat([torch.zeros_like(edited[0]) + 0 * self.anchor, *edited], dim=1)


def write_dataset(root: Path, classes: list[str], items: list[dict], size: tuple[int, int] = (S, S)) -> Path:
    """Items: {id, split, generators, label: {class_id: [Box]}, white: [Box] or {channel: [Box]}}."""
    data = records.StateDir(root)
    rows = []
    for item in items:
        h, w = item.get("size", size)
        label = np.zeros((h, w), np.uint8)
        for k, boxes in item.get("label", {}).items():
            for r0, r1, c0, c1 in boxes:
                label[r0:r1, c0:c1] = k
        image = np.zeros((h, w, 3), np.uint8)
        white = item.get("white", [])
        for channel, boxes in (white.items() if isinstance(white, dict) else [(None, white)]):
            for r0, r1, c0, c1 in boxes:
                image[r0:r1, c0:c1, slice(None) if channel is None else channel] = 255
        records.write_png(data.image_path(item["id"]), image)
        records.write_png(data.label_path(item["id"]), label)
        gens = item.get("generators", "")
        rows.append({"image_id": item["id"], "source_id": f"s_{item['id']}", "split": item["split"],
                     "n_edits": item.get("n_edits", len(gens.split(",")) if gens else 0), "generators": gens,
                     "status": "ok", "reason": ""})
    records.write_table(root / records.MANIFEST, pd.DataFrame(rows))
    records.write_json(root / "classes.json", classes)
    return root


# sd2 held out. a..j: which part each plays, and the rectangles behind the hand counts of the tests.
ITEMS = [
    {"id": "a", "split": "train", "generators": "sdxl", "label": {2: [(0, 8, 0, 8)]}, "white": [(0, 8, 0, 8)]},
    {"id": "b", "split": "train", "generators": "sd2", "label": {1: [(0, 8, 0, 8)]}, "white": [(0, 8, 0, 4)]},
    {"id": "c", "split": "train"},
    {"id": "d", "split": "val", "generators": "flux", "label": {3: [(0, 8, 0, 8)]}, "white": [(0, 8, 0, 8)]},
    {"id": "e", "split": "val", "white": [(20, 22, 0, 8)]},
    {"id": "f", "split": "val", "generators": "flux,sd2", "label": {1: [(0, 4, 0, 8)], 3: [(4, 8, 0, 8)]},
     "white": [(0, 8, 0, 8)]},
    # sd2 edited it, then sdxl painted over every sd2 pixel: no sd2 left to find, and touched by sd2
    {"id": "g", "split": "test", "generators": "sd2,sdxl", "label": {2: [(0, 8, 0, 8)]}},
    {"id": "h", "split": "test", "generators": "sdxl", "label": {2: [(0, 8, 0, 8)]}, "white": [(0, 8, 0, 4)]},
    {"id": "i", "split": "test"},
    {"id": "j", "split": "test", "generators": "sd2", "label": {1: [(0, 4, 0, 4)]},
     "white": [(0, 4, 0, 4), (10, 12, 0, 8)]},
]


@pytest.fixture
def tiny(workdir) -> Path:
    return write_dataset(workdir / "data" / "dataset", CLASSES, ITEMS)


def test_selection_on_a_tiny_manifest(tiny):
    sel = crossgen.select(tiny, "sd2")
    assert sel.class_id == 1
    assert sel.train == ["a", "c"]  # b is sd2's; c never edited
    assert sel.val == ["d", "e"]  # f was touched by sd2
    assert sel.unseen == ["b", "f", "j"]  # every split; g has no sd2 pixel left
    assert sel.negatives == ["e", "i"]  # never edited, val + test
    assert sel.seen == ["h"]  # test, edited, never touched by sd2 (not g)


def test_selection_of_the_other_generator(tiny):
    sel = crossgen.select(tiny, "flux")
    assert (sel.class_id, sel.train, sel.val) == (3, ["a", "b", "c"], ["e"])
    assert sel.unseen == ["d", "f"] and sel.negatives == ["e", "i"] and sel.seen == ["g", "h", "j"]


def test_unseen_generators_stay_out_of_training_and_the_seen_control(tiny):
    # crossgen.unseen = [flux]: d and f (flux) leave train and val; the sd2 groups are as before.
    sel = crossgen.select(tiny, "sd2", ["flux"])
    assert (sel.train, sel.val) == (["a", "c"], ["e"])
    assert (sel.unseen, sel.negatives, sel.seen) == (["b", "f", "j"], ["e", "i"], ["h"])
    # Held out under the paper's protocol: the same groups as leave-one-out of that generator.
    assert crossgen.select(tiny, "flux", ["flux"]) == crossgen.select(tiny, "flux")
    # sdxl held out, flux unseen: a, g and h (sdxl) and d, f (flux) train nowhere; g has sdxl pixels left.
    sel = crossgen.select(tiny, "sdxl", ["flux"])
    assert (sel.train, sel.val, sel.unseen, sel.seen) == (["b", "c"], ["e"], ["a", "g", "h"], ["j"])


def test_unknown_generator_is_refused(tiny):
    with pytest.raises(crossgen.UserError, match="kandinsky"):
        crossgen.select(tiny, "kandinsky")


def test_truth_ignores_other_generators_pixels():
    label = np.array([[0, 1, 3],
                      [2, 1, 0]], np.uint8)  # authentic, sd2, flux / sdxl, sd2, authentic
    assert crossgen.unseen_truth(label, 1).tolist() == [[0, 1, 255], [255, 1, 0]]
    assert crossgen.unseen_truth(label, 3).tolist() == [[0, 255, 1], [255, 255, 0]]
    assert crossgen.seen_truth(label).tolist() == [[0, 1, 1], [1, 1, 0]]


def test_truth_of_an_image_with_sd2_and_flux_pixels(tiny):
    label = records.StateDir(tiny).label("f", (S, S))
    truth = crossgen.unseen_truth(label, 1)
    assert (truth[0:4, 0:8] == 1).all() and (truth[4:8, 0:8] == 255).all()
    assert int((truth == 1).sum()) == 32 and int((truth == 255).sum()) == 32 and int((truth == 0).sum()) == 960


def test_unseen_and_seen_scores_counted_by_hand(tiny, workdir, monkeypatch):
    """Pixels: unseen b TP 32 FN 32; f TP 32 (its 32 white flux pixels ignored, else FP 32); j TP 16 FP 16;
    negative e FP 16 -> IoU 80 / (80 + 32 + 32) = 5/9. Seen h TP 32 FN 32, e FP 16 -> 32 / 80 = 0.4.
    Images: b, f, j, h and e all have >= 10 white pixels (the top 1% of 1024), so they tie; i scores
    lowest -> detection AUC (3 x 1/2 + 3 x 1) / 6 = 0.75 unseen and (1/2 + 1) / 2 = 0.75 seen.
    Pixel AUC, two distinct probabilities (white, black): unseen positives 80 white + 32 black against
    4976 negatives of which 32 white -> (80 x 4944 + (80 x 32 + 32 x 4944) / 2) / (112 x 4976); seen
    positives 32 + 32 against 3008 negatives of which 16 white -> (32 x 2992 + (32 x 16 + 32 x 2992) / 2)
    / (64 x 3008).
    """
    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": S,
                                                          "batch_size": 2},
                                               "crossgen": {"detector": "segformer", "held_out": ["sd2"]}}))
    trained = {}

    def fake_train(params, root, selection, device):
        trained["selection"] = selection
        return Bright(2), {"train_images": len(selection.train), "val_images": len(selection.val), "kept_epoch": 0,
                           "val_iou_edited": None}

    monkeypatch.setattr(crossgen, "train_detector", fake_train)
    result = crossgen.run(p, "sd2", workdir / "metrics" / "crossgen" / "sd2.json")
    assert records.read_json(workdir / "metrics" / "crossgen" / "sd2.json") == result
    assert (result["held_out"], result["detector"], result["train_images"], result["val_images"]) == \
        ("sd2", "segformer", 2, 2)
    unseen, seen = result["unseen"], result["seen"]
    assert (unseen["images"], unseen["negatives"], seen["images"], seen["negatives"]) == (3, 2, 1, 2)
    assert unseen["iou_edited"]["value"] == pytest.approx(5 / 9, abs=1e-6)
    assert seen["iou_edited"]["value"] == pytest.approx(0.4, abs=1e-6)
    assert unseen["detection_auc"]["value"] == pytest.approx(0.75, abs=1e-6)
    assert seen["detection_auc"]["value"] == pytest.approx(0.75, abs=1e-6)
    assert unseen["pixel_auc"]["value"] == pytest.approx(475904 / 557312, abs=1e-6)
    assert seen["pixel_auc"]["value"] == pytest.approx(143872 / 192512, abs=1e-6)
    for block in (unseen, seen):
        ci = block["iou_edited"]
        assert ci["low"] <= ci["value"] <= ci["high"]


def test_the_result_names_the_generators_never_trained_on(tiny, workdir, monkeypatch):
    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": S,
                                                          "batch_size": 2},
                                               "crossgen": {"detector": "segformer", "held_out": ["sd2", "sdxl"],
                                                            "unseen": ["sdxl"]}}))
    monkeypatch.setattr(crossgen, "train_detector", lambda params, root, selection, device: (
        Bright(2), {"train_images": len(selection.train), "val_images": len(selection.val), "kept_epoch": 0,
                    "val_iou_edited": None}))
    result = crossgen.run(p, "sd2", workdir / "sd2.json")
    # a and h (sdxl) leave training and the control too: train c, val d and e, no seen image left
    assert (result["train_images"], result["val_images"], result["seen"]["images"]) == (1, 2, 0)
    assert result["never_trained_on"] == ["sdxl"]
    assert result["unseen"]["iou_edited"]["value"] == pytest.approx(5 / 9, abs=1e-6)  # as without sdxl unseen


def test_the_benchmark_stages_score_the_seen_generators_only(tiny, workdir, monkeypatch):
    """crossgen.unseen = [sdxl]: a, g and h (touched by sdxl) leave evaluate's and robustness's test split
    and the baselines' train and test data; no val image was touched by sdxl."""
    assert data.seen_only([]) is None
    assert list(robustness.distorted_test_split(tiny, None).items["image_id"]) == ["g", "h", "i", "j"]
    assert list(robustness.distorted_test_split(tiny, None, ["sdxl"]).items["image_id"]) == ["i", "j"]
    train_set, test_set = baselines.splits(tiny, ["sdxl"])
    assert (list(train_set.items["image_id"]), list(test_set.items["image_id"])) == (["b", "c"], ["i", "j"])
    assert list(baselines.splits(tiny)[0].items["image_id"]) == ["a", "b", "c"]

    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": S,
                                                          "batch_size": 2, "device": "cpu"},
                                               "crossgen": {"held_out": ["sdxl"], "unseen": ["sdxl"]}}))
    config = {"arch": "stub", "encoder": "bright", "task": "attribution", "classes": CLASSES, "image_size": S}
    monkeypatch.setattr(zoo, "load", lambda folder, device="cpu": (Bright(len(CLASSES)), dict(config)))
    monkeypatch.setattr(scoring, "N_BOOT", 50)
    result = evaluate.run(p, "stub", workdir / "eval.json", workdir / "confusion.json", workdir / "pred")
    assert (result["test_images"], result["test_edited"], result["test_negatives"]) == (2, 1, 1)


def test_unseen_iou_of_the_stub_on_the_unseen_group(tiny):
    """The same pooled counts straight from the per-image statistics: (TP, FP, FN) per image."""
    sel = crossgen.select(tiny, "sd2")
    stats = crossgen.score_images(Bright(2), tiny, sel.unseen + sel.negatives,
                                  lambda label: crossgen.unseen_truth(label, 1), S, "cpu", 2)
    assert [(s.image_id, s.tp, s.fp, s.fn) for s in stats] == \
        [("b", 32, 0, 32), ("e", 0, 16, 0), ("f", 32, 0, 0), ("i", 0, 0, 0), ("j", 16, 16, 0)]
    # f: 1024 pixels less its 32 ignored flux pixels are scored
    assert [s.tp + s.fp + s.fn + s.tn for s in stats] == [1024, 1024, 992, 1024, 1024]


def test_train_stage_leaves_the_unseen_generators_images_out(workdir, monkeypatch):
    """dataset_fixture: sdxl edited 6, 8, 9, 11; train split 0 1 2 6 7 8 12 13 14, val 3 9 15."""
    build_dataset(workdir / "data" / "dataset")
    p = params_mod.load(write_params(workdir, {
        "detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 2, "batch_size": 4,
                   "detectors": {"deeplabv3plus": {"task": "binary"}}},
        "crossgen": {"held_out": ["sdxl"], "unseen": ["sdxl"]}}))
    seen_by_fit = {}
    real_fit = train.fit

    def spy(model, train_set, val_set, *args, **kwargs):
        seen_by_fit["train"], seen_by_fit["val"] = train_set.image_ids(), val_set.image_ids()
        return real_fit(model, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(train, "fit", spy)
    train.run(p, "deeplabv3plus", workdir / "models" / "deeplabv3plus", workdir / "metrics" / "deeplabv3plus")
    ids = [f"{i:012d}" for i in range(18)]
    assert seen_by_fit == {"train": [ids[i] for i in (0, 1, 2, 7, 12, 13, 14)], "val": [ids[3], ids[15]]}
    config = records.read_json(workdir / "models" / "deeplabv3plus" / "config.json")
    assert (config["train_images"], config["val_images"]) == (7, 2)


def test_crossgen_trains_with_the_training_code_without_the_held_out_generator(workdir, monkeypatch):
    """dataset_fixture: images i = 0..17, split by i % 6 (train, train, train, val, test, test), every
    i % 3 == 1 never edited, the others sd2 for (i // 6) even and sdxl for odd."""
    build_dataset(workdir / "data" / "dataset")
    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 2,
                                                          "batch_size": 4}, "crossgen": {"held_out": ["sd2"]}}))
    seen_by_fit = {}
    real_fit = crossgen.fit

    def spy(model, train_set, val_set, *args, **kwargs):
        seen_by_fit["train"], seen_by_fit["val"] = train_set.image_ids(), val_set.image_ids()
        return real_fit(model, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(crossgen, "fit", spy)
    result = crossgen.run(p, "sd2", workdir / "crossgen.json")
    ids = [f"{i:012d}" for i in range(18)]
    assert seen_by_fit == {"train": [ids[i] for i in (1, 6, 7, 8, 13)], "val": [ids[9]]}
    assert (result["train_images"], result["val_images"]) == (5, 1)
    assert (result["unseen"]["images"], result["unseen"]["negatives"]) == (8, 3)  # 0 2 3 5 12 14 15 17; 4 10 16
    assert (result["seen"]["images"], result["seen"]["negatives"]) == (1, 3)  # 11
    assert 0 <= result["unseen"]["iou_edited"]["value"] <= 1
