"""Scoring at each image's own size and ``evaluate`` on hand-built images with stub detectors.

Every expected number below is counted by hand from the pixel layouts drawn in :func:`hand_dataset`; the
stub detectors map a pixel's red value to fixed class probabilities, so no training is involved.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg import bootstrap
from diffseg.detect import evaluate, infer, metrics, scoring
from diffseg.errors import UserError
from diffseg.seeding import keyed_seed

CLASSES = ["authentic", "sd2", "sdxl"]
TOL = 1e-6  # JSON rounds to 6 places; stub probabilities are float32
# red value -> (authentic, sd2, sdxl) probabilities; P(edited) = 1 - first entry
ATTRIBUTION_LUT = {0: [0.9, 0.05, 0.05], 100: [0.2, 0.7, 0.1], 200: [0.4, 0.1, 0.5], 50: [0.6, 0.3, 0.1]}
BINARY_LUT = {r: [p[0], 1 - p[0]] for r, p in ATTRIBUTION_LUT.items()}  # the same P(edited) with two classes


class LookupStub(torch.nn.Module):
    """A 'detector' whose logits are log-probabilities looked up by each pixel's red value (0 if unlisted)."""

    def __init__(self, lut: dict[int, list[float]]):
        super().__init__()
        table = torch.tensor([lut.get(r, lut[0]) for r in range(256)], dtype=torch.float32)
        self.register_buffer("log_table", table.log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * 255).round().long()
        return self.log_table[red].permute(0, 3, 1, 2)


class ColumnStub(torch.nn.Module):
    """Fixed binary logits: P(edited) = 0.9 on the left half of the columns, 0.1 on the right half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        edited = torch.full((b, 1, h, w), 0.1)
        edited[..., : w // 2] = 0.9
        return torch.cat([1 - edited, edited], dim=1).log()


def _image(red: np.ndarray) -> np.ndarray:
    return np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1).astype(np.uint8)


def hand_dataset(root) -> None:
    """Four 8x8 test images and one val image (see the comments for what the stubs predict)."""
    z = lambda: np.zeros((8, 8), np.uint8)  # noqa: E731
    images = {}
    # a: two turns. Truth row 0 sd2, row 1 sd2 x4 | sdxl x4 (turn 2 changed cols 4-7), ignore at (7, 7).
    # Predicted: row 0 sd2 x6 then missed x2; row 1 sd2 x3, sdxl x3 (col 3 wrong generator), missed x2;
    # a false alarm at (2, 0); the ignored pixel predicted edited must count nowhere.
    truth, red, turns = z(), z(), z()
    truth[0], truth[1, :4], truth[1, 4:], truth[7, 7] = 1, 1, 2, 255
    red[0, :6], red[1, :3], red[1, 3:6], red[2, 0], red[7, 7] = 100, 100, 200, 200, 100
    turns[:2], turns[1, 4:] = 1, 3
    images["a"] = ("test", truth, red, turns, 2, "sd2,sdxl")
    # b: one removal by sdxl on row 7 cols 0-3; two found (P 0.6), two missed (P 0.4)
    truth, red, turns = z(), z(), z()
    truth[7, :4], red[7, :2], red[7, 2:4], turns[7, :4] = 2, 200, 50, 1
    images["b"] = ("test", truth, red, turns, 1, "sdxl")
    # c: never edited, one false alarm at (0, 0)
    truth, red = z(), z()
    red[0, 0] = 200
    images["c"] = ("test", truth, red, z(), 0, "")
    # d: a 2-pixel sd2 addition, entirely missed
    truth, turns = z(), z()
    truth[4, 4:6], turns[4, 4:6] = 1, 1
    images["d"] = ("test", truth, z(), turns, 1, "sd2")
    # v (validation): row 0 edited at P 0.6, the rest authentic at P 0.1
    truth, red, turns = z(), z(), z()
    truth[0], red[0], turns[0] = 1, 200, 1
    images["v"] = ("val", truth, red, turns, 1, "sd2")

    data = records.StateDir(root)
    rows = []
    for image_id, (split, truth, red, turns, n_edits, generators) in images.items():
        records.write_png(data.image_path(image_id), _image(red))
        records.write_png(data.label_path(image_id), truth)
        records.write_png(data.turnmask_path(image_id), turns)
        rows.append({"image_id": image_id, "source_id": f"s{image_id}", "split": split, "n_edits": n_edits,
                     "generators": generators, "status": "ok", "reason": ""})
    records.write_table(root / records.MANIFEST, pd.DataFrame(rows))
    records.write_json(root / "classes.json", CLASSES)
    turns_of = {"a": [("add", "accepted", "sd2"), ("change", "accepted", "sdxl")],
                "b": [("remove", "accepted", "sdxl")], "c": [],
                "d": [("add", "accepted", "sd2"), ("add", "rejected", "sdxl")], "v": [("add", "accepted", "sd2")]}
    meta = []
    for image_id, kept in turns_of.items():
        for t in range(1, 4):  # three turns, unused ones planned as "none"
            action, decision, generator = kept[t - 1] if t <= len(kept) else ("none", "no_edit", "")
            meta.append({"image_id": image_id, "turn_index": t, "action": action, "decision": decision,
                         "generator": generator})
    records.write_table(root / "metadata.parquet", pd.DataFrame(meta))


def _stub_load(task: str, classes: list[str], **extra):
    """A replacement for zoo.load returning the stub and a checkpoint config ((model, config) contract)."""
    lut = ATTRIBUTION_LUT if task == "attribution" else BINARY_LUT
    config = {"arch": "stub", "encoder": "lut", "task": task, "classes": classes, "image_size": 8, **extra}
    return lambda folder, device: (LookupStub(lut).eval(), dict(config))


def _evaluate(p, folder, task="attribution", classes=CLASSES, **extra) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate.zoo, "load", _stub_load(task, classes, **extra))
        return evaluate.run(p, "stub", folder / "eval.json", folder / "confusion.json", folder / "pred")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The hand dataset evaluated once with the attribution stub and once with the binary stub
    (bootstrapping every figure costs a few seconds per run)."""
    root = tmp_path_factory.mktemp("evaluate")
    hand_dataset(root / "data" / "dataset")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # stages use repository-relative paths
        p = params_mod.load(write_params(root, {"detect": {"dataset": "data/dataset", "device": "cpu",
                                                           "batch_size": 3}}))
        runs = {}
        for task, classes, extra in [("attribution", CLASSES, {}),
                                     ("binary", ["authentic", "edited"], {"kept_epoch": 3})]:
            out = root / task
            runs[task] = {"result": _evaluate(p, out, task, classes, **extra), "folder": out, "params": p}
        yield runs


def _close(ci: dict, expected: float | None) -> bool:
    if expected is None:
        return ci == {"value": None, "low": None, "high": None}
    return abs(ci["value"] - expected) <= TOL


# hand counts over the 4 test images (ignored pixel excluded): TP 14, FP 2, FN 8, TN 231 of 255 pixels
IOU_A, F1_A = 12 / 17, 24 / 29
BINARY = {
    "iou_edited": 14 / 24, "f1_edited": 28 / 38, "miou": (14 / 24 + 231 / 241) / 2, "pixel_accuracy": 245 / 255,
    "image_mean_iou": (IOU_A + 1 / 2 + 0 + 0) / 4, "image_mean_f1": (F1_A + 2 / 3 + 0 + 0) / 4,
    # edited pixels at P 0.8 x9, 0.6 x5, 0.4 x2, 0.1 x6; authentic at 0.6 x2, 0.1 x231
    "pixel_auc": (9 * 233 + 5 * 231 + 5 * 2 / 2 + 2 * 231 + 6 * 231 / 2) / (22 * 233),
    "pixel_ap": (9 * 1 + 5 * 14 / 16 + 2 * 16 / 18 + 6 * 22 / 255) / 22,
    # val threshold ~0.35 also reads the P 0.4 pixels as edited: TP 16, FP 2, FN 6
    "f1_edited_at_val_threshold": 32 / 40,
    # image scores a 0.8, b 0.6, d 0.1 vs the negative c 0.6
    "detection_auc": (1 + 0.5 + 0) / 3, "detection_accuracy": 2 / 4, "tpr_at_5_fpr": 1 / 3,
}


def test_evaluate_by_hand(evaluated):
    result, folder = evaluated["attribution"]["result"], evaluated["attribution"]["folder"]
    assert result == records.read_json(folder / "eval.json")
    assert (result["task"], result["classes"], result["kept_epoch"]) == ("attribution", CLASSES, None)
    assert (result["test_images"], result["test_edited"], result["test_negatives"]) == (4, 3, 1)
    assert result["bootstrap"] == {"resamples": 1000, "level": 0.95, "seed": keyed_seed(0, "evaluate", "stub")}
    b = result["binary"]
    for key, expected in BINARY.items():
        assert _close(b[key], expected), (key, b[key], expected)
    assert abs(b["val_threshold"] - 0.35) <= 1e-3  # middle of the edges between val P 0.1 and P 0.6
    # intervals rest on the image resamples of bootstrap.bootstrap_ci with the evaluation's seed
    ious = np.array([IOU_A, 0.5, 0.0, 0.0])
    expected = bootstrap.bootstrap_ci(ious, np.mean, 1000, result["bootstrap"]["seed"])
    assert (b["image_mean_iou"]["low"], b["image_mean_iou"]["high"]) == (round(expected.low, 6), round(expected.high, 6))

    a = result["attribution"]
    # task confusion (rows truth): authentic [231, 0, 2], sd2 [4, 9, 1], sdxl [4, 0, 4]
    per_class = {"authentic": 231 / 241, "sd2": 9 / 14, "sdxl": 4 / 11}
    for name, expected_iou in per_class.items():
        assert _close(a["per_class_iou"][name], expected_iou), name
    assert _close(a["miou"], sum(per_class.values()) / 3)
    # correctly found edited pixels: sd2 -> sd2 x9, sd2 -> sdxl x1 (a, row 1 col 3), sdxl -> sdxl x4
    assert a["confusion_on_found"] == {"classes": ["sd2", "sdxl"], "matrix": [[9, 1], [0, 4]]}
    assert _close(a["accuracy_on_found"], 13 / 14)

    rows = records.read_json(folder / "confusion.json")
    pairs = pd.DataFrame(rows).value_counts().to_dict()
    assert len(rows) == 255 and pairs[("authentic", "authentic")] == 231 and pairs[("sd2", "sdxl")] == 1
    assert pairs[("sdxl", "authentic")] == 4 and ("sdxl", "sd2") not in pairs


def test_breakdowns_by_hand(evaluated):
    br = evaluated["attribution"]["result"]["breakdowns"]
    # n_edits 1: b (IoU 2/4) and d (0/2), pooled 2/6; AUC vs c's 0.6: b ties, d below
    one = br["n_edits"]["1"]
    assert one["images"] == 2 and _close(one["iou_edited"], 2 / 6) and _close(one["image_mean_iou"], 1 / 4)
    assert _close(one["detection_auc"], 0.25)
    two = br["n_edits"]["2"]  # a alone: every resample is a, so the interval is the point
    assert two["images"] == 1 and two["iou_edited"] == {"value": round(IOU_A, 6), "low": round(IOU_A, 6),
                                                        "high": round(IOU_A, 6)}
    assert _close(two["detection_auc"], 1.0)
    assert br["n_edits"]["3"]["images"] == 0 and _close(br["n_edits"]["3"]["iou_edited"], None)
    # edited fraction: d 2/64 < 5%, b 4/64 in 5-15%, a 16/63 >= 15%
    area = br["area"]
    assert [area[k]["images"] for k in ("<5%", "5-15%", ">=15%")] == [1, 1, 1]
    assert _close(area["<5%"]["iou_edited"], 0.0) and _close(area["5-15%"]["iou_edited"], 0.5)
    assert _close(area[">=15%"]["image_mean_iou"], IOU_A) and _close(area["5-15%"]["detection_auc"], 0.5)
    # owner turns: a turn 1 (add) owns 12 px, 10 found; a turn 2 (change) 4 px, 2 found;
    # b turn 1 (remove) 4 px, 2 found; d turn 1 (add) 2 px, none found; d's rejected turn 2 owns nothing
    recall = {group: {k: (v["pixels"], v["recall"]["value"]) for k, v in br[group].items()}
              for group in ("action", "generator", "turn")}
    assert recall["action"] == {"add": (14, round(10 / 14, 6)), "remove": (4, 0.5), "change": (4, 0.5)}
    assert recall["generator"] == {"sd2": (14, round(10 / 14, 6)), "sdxl": (8, 0.5)}
    assert recall["turn"] == {"1": (18, round(12 / 18, 6)), "2": (4, 0.5), "3": (0, None)}


def test_predictions_written_at_image_size(evaluated):
    folder = evaluated["attribution"]["folder"]
    table = records.read_table(folder / "pred" / "per_image.parquet").set_index("image_id")
    assert list(table.index) == ["a", "b", "c", "d"]
    a = table.loc["a"]
    assert (bool(a.edited), int(a.n_edits), a.generators) == (True, 2, "sd2,sdxl")
    assert abs(a.score - 0.8) <= TOL and abs(a.iou - IOU_A) <= TOL and abs(a.f1 - F1_A) <= TOL
    assert (bool(table.loc["c", "edited"]), table.loc["c", "iou"]) == (False, 0.0)
    # the binary view's counts, which the report's paired ranking pools: the hand counts above
    assert (int(a.tp), int(a.fp + a.fn)) == (12, 5)
    assert tuple(int(table[k].sum()) for k in ("tp", "fp", "fn")) == (14, 2, 8)
    expected = np.zeros((8, 8), np.uint8)
    expected[0, :6], expected[1, :3], expected[1, 3:6], expected[2, 0], expected[7, 7] = 1, 1, 2, 2, 1
    assert np.array_equal(records.read_gray(folder / "pred" / "a.png"), expected)


def test_binary_detector_shares_the_binary_view(evaluated):
    attribution, binary = evaluated["attribution"]["result"], evaluated["binary"]["result"]
    folder = evaluated["binary"]["folder"]
    # the same P(edited) maps give the same binary block and breakdowns, whatever the task
    assert binary["binary"] == attribution["binary"] and binary["breakdowns"] == attribution["breakdowns"]
    assert (binary["task"], binary["kept_epoch"], "attribution" in binary) == ("binary", 3, False)
    pairs = pd.DataFrame(records.read_json(folder / "confusion.json")).value_counts().to_dict()
    assert pairs == {("authentic", "authentic"): 231, ("authentic", "edited"): 2, ("edited", "authentic"): 8,
                     ("edited", "edited"): 14}
    assert records.read_gray(folder / "pred" / "a.png")[1].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]


def test_refuses_a_dataset_with_other_classes(workdir):
    hand_dataset(workdir / "data" / "dataset")
    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "device": "cpu"}}))
    with pytest.raises(UserError, match=r"\['authentic', 'sd2', 'sdxl'\].*\['authentic', 'sd2', 'flux'\]"):
        _evaluate(p, workdir, classes=["authentic", "sd2", "flux"])
    assert not (workdir / "eval.json").exists()


def test_generators_split_mass_still_reads_edited():
    """p = [0.30] + [0.10] * 7: authentic is the argmax, yet P(edited) = 0.7 >= 0.5."""
    probs = np.zeros((8, 1, 2), np.float32)
    probs[:, 0, 0] = [0.30] + [0.10] * 7
    probs[:, 0, 1] = [0.93] + [0.01] * 7
    s = scoring.image_stats("x", np.array([[3, 0]], np.uint8), probs, "attribution", None, 3)
    assert (s.tp, s.fp, s.fn, s.tn, s.edited) == (1, 0, 0, 1, True)
    assert abs(s.score - 0.7) <= TOL and (s.iou, s.f1) == (1.0, 1.0)
    # found, but the tied generators name generator 1, not 3: attribution is wrong on that pixel
    assert s.attr[2, 0] == 1 and s.attr.sum() == 1 and s.conf[3, 1] == 1 and s.conf[0, 0] == 1
    assert s.class_px.tolist() == [0, 0, 1, 0, 0, 0, 0] and s.class_found.tolist() == [0, 0, 1, 0, 0, 0, 0]


def test_ignored_pixels_count_nowhere():
    truth = np.array([[255, 1, 0]], np.uint8)
    probs = np.array([[[0.1, 0.1, 0.8]], [[0.9, 0.9, 0.2]]], np.float32)  # P(edited) 0.9, 0.9, 0.2
    s = scoring.image_stats("x", truth, probs, "binary", np.array([[1, 1, 0]], np.uint8), 2)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 0, 0, 1) and s.conf.tolist() == [[1, 0], [0, 1]]
    assert (s.hist_pos.sum(), s.hist_neg.sum()) == (1, 1) and s.turn_px.tolist() == [1, 0]
    every_pixel_ignored = scoring.image_stats("y", np.full((1, 3), 255, np.uint8), probs, "binary")
    assert every_pixel_ignored.pixels == 0 and not every_pixel_ignored.edited


def test_native_size_of_a_non_square_image():
    """A 4x8 image runs at 4x4; the probabilities come back at 4x8 and meet the untouched label."""
    image = np.zeros((4, 8, 3), np.uint8)
    (probs,) = scoring.predict_probs(ColumnStub(), [image], 4, "cpu")
    # bilinear 4 -> 8 columns: output column 3 samples input 1.25 = 0.75 * 0.9 + 0.25 * 0.1
    assert probs.shape == (2, 4, 8)
    assert np.allclose(probs[1, 0], [0.9, 0.9, 0.9, 0.7, 0.3, 0.1, 0.1, 0.1], atol=TOL)
    truth = np.zeros((4, 8), np.uint8)
    truth[:, :3] = 1  # 3 of 8 columns edited: 12 TP, 4 FP (column 3 at P 0.7)
    s = scoring.image_stats("x", truth, probs, "binary")
    assert (s.tp, s.fp, s.fn, s.tn, s.iou) == (12, 4, 0, 16, 0.75)
    # a resized image (robustness) is scored against the label's own size, not the image's
    big = scoring.Sample("x", np.zeros((8, 16, 3), np.uint8), truth, None)
    (again,) = scoring.score_set(ColumnStub(), [big], 4, "cpu", 4, "binary", n_turns=1)
    assert (again.tp, again.fp, again.fn, again.tn) == (12, 4, 0, 16)


def test_fast_tpr_at_fpr_matches_metrics():
    rng = np.random.default_rng(0)
    for n in (5, 40, 200):
        labels = rng.integers(0, 2, n)
        scores = rng.integers(0, 6, n) / 5.0  # many ties
        for fpr in (0.0, 0.05, 0.3):
            assert scoring.tpr_at_fpr(np.stack([labels, scores], 1), fpr) == metrics.tpr_at_fpr(labels, scores, fpr)
    assert scoring.tpr_at_fpr(np.array([[1, 0.2], [1, 0.4]]), 0.05) is None


def test_score_dataset_reads_the_binary_view():
    """The working-size scorer (validation) agrees: the split-mass pixel is edited; ignore is skipped."""
    stub = LookupStub({0: [0.30] + [0.10] * 7})
    y = torch.ones(1, 2, 2, dtype=torch.long)
    y[0, 0, 0] = 255
    result = infer.score_dataset(stub, [(torch.zeros(3, 2, 2), y[0], "x")], ["authentic"] + ["g"] * 7, "cpu")
    assert result["binary"]["per_class_iou"]["edited"] == 1.0 and result["_matrix"].sum() == 3
