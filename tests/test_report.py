"""The report stage: every table cell equals the JSON value it renders, levels in numeric order, the
attribution table has the attribution detectors only, and the figures exist and are byte-stable."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.notices import OFFLINE_WARNING
from diffseg.errors import UserError
from diffseg.report import figures, ranking, stage

CLASSES = ["authentic", "sd2", "flux"]
# Test images: (id, pixels of sd2, pixels of flux) in a 16x16 label; r1 is a train image with the most sd2 pixels.
IMAGES = [("t1", 20, 0), ("t2", 5, 30), ("t3", 0, 0), ("t4", 10, 0), ("t5", 0, 4), ("r1", 100, 0)]
# Per-image IoU of each detector: mean over detectors t1 0.45, t2 0.15, t3 1.0, t4 0.3, t5 0.15.
IOU = {"segformer": {"t1": 0.5, "t2": 0.1, "t3": 1.0, "t4": 0.2, "t5": 0.3},
       "fcn8s": {"t1": 0.4, "t2": 0.2, "t3": 1.0, "t4": 0.4, "t5": 0.0}}
# Per-image binary-view counts (TP, FP, FN) and image scores behind the paired ranking; t3 is never edited.
# Pooled IoU edited: segformer 16 / 50 = 0.32, fcn8s 14 / 46; detection AUC: segformer 3 / 4 (t2 scores below
# t3), fcn8s 1.0: the two metrics rank the detectors in opposite orders.
COUNTS = {"segformer": {"t1": (10, 5, 5), "t2": (1, 4, 5), "t3": (0, 0, 0), "t4": (2, 4, 4), "t5": (3, 3, 4)},
          "fcn8s": {"t1": (8, 6, 6), "t2": (2, 4, 4), "t3": (0, 0, 0), "t4": (4, 3, 3), "t5": (0, 2, 4)}}
SCORES = {"segformer": {"t1": 0.9, "t2": 0.2, "t3": 0.3, "t4": 0.8, "t5": 0.7},
          "fcn8s": {"t1": 0.6, "t2": 0.7, "t3": 0.1, "t4": 0.5, "t5": 0.4}}
FIGURES = ["robustness.png", "training.png", "qualitative.png", "failures.png"]


def fmt(ci) -> str:
    """The expected cell, written independently of the report's formatter."""
    if ci is None or ci["value"] is None:
        return "-"
    bound = ["-" if b is None else f"{b:.3f}" for b in (ci["low"], ci["high"])]
    return f"{ci['value']:.3f} [{bound[0]}, {bound[1]}]"


class Values:
    """Distinct CI values (0.101, 0.102, ...) so a cell taken from the wrong key cannot match."""

    def __init__(self):
        self.count = itertools.count(101)

    def __call__(self) -> dict:
        v = next(self.count) / 1000
        return {"value": v, "low": round(v - 0.05, 6), "high": round(v + 0.05, 6)}


def _eval(name: str, task: str, ci: Values) -> dict:
    binary = {k: ci() for k in ["iou_edited", "f1_edited", "miou", "pixel_accuracy", "image_mean_iou", "image_mean_f1",
                                "pixel_auc", "pixel_ap", "f1_edited_at_val_threshold", "detection_auc",
                                "detection_accuracy", "tpr_at_5_fpr"]}
    binary["val_threshold"] = 0.42
    def group_b() -> dict:
        return {"images": 3, "iou_edited": ci(), "image_mean_iou": ci(), "detection_auc": ci()}
    result = {"detector": name, "arch": "Segformer" if task == "attribution" else "fcn8s",
              "encoder": "mit_b0" if task == "attribution" else "vgg16", "task": task,
              "classes": CLASSES if task == "attribution" else ["authentic", "edited"], "kept_epoch": 6,
              "test_images": 5, "test_edited": 4, "test_negatives": 1,
              "bootstrap": {"resamples": 1000, "level": 0.95, "seed": 7}, "binary": binary,
              "breakdowns": {"n_edits": {g: group_b() for g in ["1", "2", "10"]},
                             "action": {a: {"pixels": 40, "recall": ci()} for a in ["add", "remove", "change"]},
                             "area": {g: group_b() for g in ["<5%", "5-15%", ">=15%"]},
                             "generator": {g: {"pixels": 9, "recall": ci()} for g in ["sd2", "flux"]},
                             "turn": {t: {"pixels": 12, "recall": ci()} for t in ["1", "2", "3"]}}}
    if task == "attribution":
        result["attribution"] = {
            "miou": ci(), "per_class_iou": {"authentic": ci(), "sd2": {"value": 0.25, "low": 0.125, "high": 0.5},
                                            "flux": {"value": 0.3, "low": None, "high": None}},
            "accuracy_on_found": {"value": None, "low": None, "high": None},
            "confusion_on_found": {"classes": ["sd2", "flux"], "matrix": [[7, 2], [1, 5]]}}
    return result


def _robust(name: str, task: str, ci: Values) -> dict:
    def m() -> dict:
        return {"iou_edited": ci(), "miou": ci(), "detection_auc": ci()}
    return {"detector": name, "task": task, "clean": m(), "noise": {lv: m() for lv in ["10.0", "5.0", "1.5"]},
            "jpeg": {lv: m() for lv in ["90", "70", "50"]}}


def _dataset(root) -> None:
    data = records.StateDir(root / "data/dataset")
    rows = []
    for i, (image_id, n_sd2, n_flux) in enumerate(IMAGES):
        label = np.zeros(256, np.uint8)
        label[:n_sd2], label[n_sd2:n_sd2 + n_flux] = 1, 2
        records.write_png(data.image_path(image_id), np.full((16, 16, 3), 60 + 30 * i, np.uint8))
        records.write_png(data.label_path(image_id), label.reshape(16, 16))
        rows.append({"image_id": image_id, "split": "train" if image_id == "r1" else "test", "status": "ok"})
    records.write_table(data.root / records.MANIFEST, pd.DataFrame(rows))
    records.write_json(data.root / "classes.json", CLASSES)
    for name, ious in IOU.items():
        out = root / "data/predictions" / name
        for image_id in ious:
            records.write_png(out / f"{image_id}.png", records.read_gray(data.label_path(image_id)) % 2)
        counts = np.array([COUNTS[name][i] for i in ious])
        records.write_table(out / "per_image.parquet", pd.DataFrame(
            {"image_id": list(ious), "edited": [i != "t3" for i in ious], "score": [SCORES[name][i] for i in ious],
             "iou": list(ious.values()), "f1": list(ious.values()), "tp": counts[:, 0], "fp": counts[:, 1],
             "fn": counts[:, 2], "n_edits": 1, "generators": "sd2"}))


@pytest.fixture
def bench(workdir):
    """A work folder with every input of the report in the contract's layout (written with sorted keys)."""
    ci = Values()
    metrics = workdir / "metrics"
    records.write_json(metrics / "dataset.json", {"dataset": {"n_images": 6, "n_edited_images": 5, "n_edits": 7,
                                                              "acceptance_rate": 1.0, "edited_pixel_fraction": 0.1}})
    for name, task in [("segformer", "attribution"), ("fcn8s", "binary")]:
        records.write_json(metrics / "eval" / f"{name}.json", _eval(name, task, ci))
        records.write_json(metrics / "robustness" / f"{name}.json", _robust(name, task, ci))
        for series in ["train/loss", "val/miou", "val/iou_edited"]:
            column = series.split("/")[1]
            path = metrics / "train" / name / "plots/metrics" / f"{series}.tsv"
            records.write_bytes(path, f"step\t{column}\n0\t0.9\n1\t0.5\n2\t0.4\n".encode())
    records.write_json(metrics / "crossgen" / "sd2.json", {
        "held_out": "sd2", "detector": "fcn8s", "train_images": 30,
        "unseen": {"images": 4, "negatives": 2, "iou_edited": ci(), "detection_auc": ci(), "pixel_auc": ci()},
        "seen": {"images": 6, "negatives": 2, "iou_edited": ci(), "detection_auc": ci(), "pixel_auc": ci()}})
    records.write_json(metrics / "baselines" / "cnnspot.json", {"detection_accuracy": 0.2, "detection_auc": 0.111111})
    records.write_json(metrics / "baselines" / "univfd.json", {"detection_accuracy": 0.65, "detection_auc": 0.7})
    _dataset(workdir)
    params = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset"}}))
    return workdir, params


def tables_of(text: str) -> dict[str, list[dict[str, str]]]:
    """Each markdown table under the last non-table line before it: rows as {header: cell}."""
    found, title, lines = {}, None, text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split(" | ")])
                i += 1
            assert title not in found, title
            found[title] = [dict(zip(rows[0], r)) for r in rows[2:]]
            continue
        if lines[i].strip():
            title = lines[i]
        i += 1
    return found


def table(tables: dict, prefix: str) -> list[dict[str, str]]:
    (match,) = [rows for title, rows in tables.items() if title.startswith(prefix)]
    return match


def test_tables_render_the_json(bench):
    root, params = bench
    text = stage.run(params, root / "metrics/report.md", root / "metrics/figures", root / "metrics/ranking.json")
    assert (root / "metrics/report.md").read_text() == text and OFFLINE_WARNING in text
    evals = {n: records.read_json(root / f"metrics/eval/{n}.json") for n in ["fcn8s", "segformer"]}
    tabs = tables_of(text)
    assert "- `segformer`: Segformer / mit_b0, attribution task, kept epoch 6; test split 5 images: 4 edited, " \
           "1 never edited" in text and "- `fcn8s`: fcn8s / vgg16, binary task, kept epoch 6" in text

    pixel, image = table(tabs, "**Pixel level**"), table(tabs, "**Image level**")
    assert [r["detector"] for r in pixel] == ["fcn8s", "segformer"]
    for prow, irow in zip(pixel, image):
        b = evals[prow["detector"]]["binary"]
        assert prow["val threshold"] == "0.420"
        for col, key in [("IoU edited", "iou_edited"), ("F1 @0.5", "f1_edited"), ("mIoU", "miou"),
                         ("F1 @val threshold", "f1_edited_at_val_threshold"), ("pixel acc.", "pixel_accuracy"),
                         ("pixel AUC", "pixel_auc"), ("pixel AP", "pixel_ap")]:
            assert prow[col] == fmt(b[key]), col
        for col, key in [("image mean IoU", "image_mean_iou"), ("image mean F1", "image_mean_f1"),
                         ("detection AUC", "detection_auc"), ("detection acc.", "detection_accuracy"),
                         ("TPR @5% FPR", "tpr_at_5_fpr")]:
            assert irow[col] == fmt(b[key]), col

    (attr,) = table(tabs, "## Attribution")  # the binary detector has no row
    a = evals["segformer"]["attribution"]
    assert attr["detector"] == "segformer" and attr["mIoU"] == fmt(a["miou"])
    assert list(attr)[2:5] == ["IoU authentic", "IoU sd2", "IoU flux"]  # classes.json order, not sorted keys
    assert attr["IoU sd2"] == "0.250 [0.125, 0.500]" == fmt(a["per_class_iou"]["sd2"])
    assert attr["IoU flux"] == "0.300 [-, -]" and attr["accuracy on found"] == "-"
    assert attr["IoU authentic"] == fmt(a["per_class_iou"]["authentic"])
    confusion = table(tabs, "**Confusion on found pixels: segformer**")
    assert [[r["true \\ predicted"], r["sd2"], r["flux"]] for r in confusion] == [["sd2", "7", "2"], ["flux", "1", "5"]]
    assert not [t for t in tabs if t and "Confusion on found pixels: fcn8s" in t]


def test_breakdowns_robustness_crossgen_classifiers(bench):
    root, params = bench
    tabs_text = stage.run(params, root / "metrics/report.md", root / "metrics/figures", root / "metrics/ranking.json")
    tabs = tables_of(tabs_text)
    evals = {n: records.read_json(root / f"metrics/eval/{n}.json") for n in ["fcn8s", "segformer"]}
    order = {"n_edits": ["1", "2", "10"], "action": ["add", "change", "remove"], "area": ["<5%", "5-15%", ">=15%"],
             "generator": ["sd2", "flux"], "turn": ["1", "2", "3"]}
    for kind, groups in order.items():
        rows = table(tabs, f"**By {kind}**")
        assert [r["detector"] for r in rows] == ["fcn8s", "segformer"]
        for row in rows:
            got = evals[row["detector"]]["breakdowns"][kind]
            metrics = {"recall": "recall"} if kind in ("action", "generator", "turn") else \
                {"iou_edited": "IoU edited", "image_mean_iou": "image mean IoU", "detection_auc": "detection AUC"}
            assert list(row)[1:] == [f"{g}: {label}" for g in groups for label in metrics.values()]
            for g in groups:
                for key, label in metrics.items():
                    assert row[f"{g}: {label}"] == fmt(got[g][key]), (kind, g, key)
    assert "**By n_edits** (number of accepted edits; images per group: 1: 3, 2: 3, 10: 3)" in tabs_text
    assert "**By generator** (generator owning the pixel; pixels per group: sd2: 9, flux: 9)" in tabs_text

    for kind, levels in [("noise", ["1.5", "5.0", "10.0"]), ("jpeg", ["50", "70", "90"])]:
        rows = table(tabs, f"**Robustness: {kind}**")
        assert list(rows[0]) == ["detector", "metric", "clean", *levels]
        assert [(r["detector"], r["metric"]) for r in rows] == [
            (d, m) for d in ["fcn8s", "segformer"] for m in ["IoU edited", "mIoU (task)", "detection AUC"]]
        for row in rows:
            r = records.read_json(root / f"metrics/robustness/{row['detector']}.json")
            key = {"IoU edited": "iou_edited", "mIoU (task)": "miou", "detection AUC": "detection_auc"}[row["metric"]]
            assert row["clean"] == fmt(r["clean"][key])
            assert [row[lv] for lv in levels] == [fmt(r[kind][lv][key]) for lv in levels]

    (cross,) = table(tabs, "## Cross-generator")
    c = records.read_json(root / "metrics/crossgen/sd2.json")
    assert [cross[k] for k in ["held-out generator", "detector", "train images", "unseen images", "seen images",
                               "negatives"]] == ["sd2", "fcn8s", "30", "4", "6", "2"]
    for key, label in [("iou_edited", "IoU edited"), ("detection_auc", "detection AUC"), ("pixel_auc", "pixel AUC")]:
        assert cross[f"{label} unseen"] == fmt(c["unseen"][key]) and cross[f"{label} seen"] == fmt(c["seen"][key])
    assert list(cross)[6:8] == ["IoU edited unseen", "IoU edited seen"]  # side by side

    classifiers = table(tabs, "## Segmentation detectors versus")
    assert [[r["model"], r["kind"], r["detection acc."], r["detection AUC"]] for r in classifiers] == [
        ["fcn8s", "segmentation", fmt(evals["fcn8s"]["binary"]["detection_accuracy"]),
         fmt(evals["fcn8s"]["binary"]["detection_auc"])],
        ["segformer", "segmentation", fmt(evals["segformer"]["binary"]["detection_accuracy"]),
         fmt(evals["segformer"]["binary"]["detection_auc"])],
        ["cnnspot", "image classifier", "0.200", "0.111"], ["univfd", "image classifier", "0.650", "0.700"]]


def test_figure_choices(bench):
    root, _ = bench
    data = records.StateDir(root / "data/dataset")
    # r1 has the most sd2 pixels but is a train image; t2 has the most flux pixels.
    assert figures.largest_per_generator(data, CLASSES) == [("t1", "sd2: t1 (20 px)"), ("t2", "flux: t2 (30 px)")]
    rows, notes = figures.worst_images(root / "data/predictions", ["segformer", "fcn8s"], 4)
    assert rows == [("t2", "t2: mean IoU 0.150"), ("t5", "t5: mean IoU 0.150"), ("t4", "t4: mean IoU 0.300"),
                    ("t1", "t1: mean IoU 0.450")]
    assert notes[("t5", "fcn8s")] == "IoU 0.000" and notes[("t4", "segformer")] == "IoU 0.200"


def test_figures_exist_and_are_byte_stable(bench):
    root, params = bench
    out, figs, ranked = root / "metrics/report.md", root / "metrics/figures", root / "metrics/ranking.json"
    first_text = stage.run(params, out, figs, ranked)
    first = {name: (figs / name).read_bytes() for name in FIGURES}
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in first.values())
    first_ranking = ranked.read_bytes()
    assert stage.run(params, out, figs, ranked) == first_text and ranked.read_bytes() == first_ranking
    assert {name: (figs / name).read_bytes() for name in FIGURES} == first
    for name in FIGURES:
        assert f"(figures/{name})" in first_text


def test_ranking_is_paired_and_its_table_renders_the_json(bench):
    root, params = bench
    text = stage.run(params, root / "metrics/report.md", root / "metrics/figures", root / "metrics/ranking.json")
    ranked = records.read_json(root / "metrics/ranking.json")
    assert (ranked["test_images"], ranked["resamples"], ranked["level"]) == (5, 1000, 0.95)
    by_iou, by_auc = ranked["by"]["iou_edited"], ranked["by"]["detection_auc"]
    assert [(e["detector"], e["rank"], e["value"]) for e in by_iou] == [("segformer", 1, 0.32),
                                                                         ("fcn8s", 2, round(14 / 46, 6))]
    assert [(e["detector"], e["rank"], e["value"]) for e in by_auc] == [("fcn8s", 1, 1.0), ("segformer", 2, 0.75)]
    top = by_iou[0]["diff_next"]
    assert (top["detector"], top["value"]) == ("fcn8s", round(0.32 - 14 / 46, 6))
    # five images cannot tell these two apart: the paired difference's interval spans 0, both can rank first
    assert top["low"] < 0 < top["high"] and top["separated"] is False
    assert by_iou[-1]["diff_next"] is None
    for entries in (by_iou, by_auc):
        assert all(1 <= e["rank_low"] <= e["rank"] <= e["rank_high"] <= 2 for e in entries)
    assert all(0 < e["p_best"] < 1 for e in by_iou)
    # fcn8s scores every edited image above the clean one, so no resample beats its AUC of 1; segformer ties it
    # on the resamples that miss t2 (its only edited image scored below t3)
    assert by_auc[0]["p_best"] == 1.0 and 0 < by_auc[1]["p_best"] < 1

    evals = {n: records.read_json(root / f"metrics/eval/{n}.json") for n in ["fcn8s", "segformer"]}
    tabs = tables_of(text)
    for metric, label in [("iou_edited", "IoU edited"), ("detection_auc", "detection AUC")]:
        rows = table(tabs, f"**By {label}**")
        for row, entry in zip(rows, ranked["by"][metric], strict=True):
            diff = entry["diff_next"]
            assert row == {"rank": str(entry["rank"]), "detector": entry["detector"],
                           label: fmt(evals[entry["detector"]]["binary"][metric]),
                           "rank interval": f"{entry['rank_low']}-{entry['rank_high']}",
                           "P(rank 1)": f"{entry['p_best']:.3f}",
                           "difference to the next": "-" if diff is None else f"{diff['detector']}: {fmt(diff)}",
                           "told apart": "-" if diff is None else "yes" if diff["separated"] else "no"}


def _tables(counts: dict[str, list[tuple[int, int, int]]]) -> dict[str, pd.DataFrame]:
    n = len(next(iter(counts.values())))
    return {name: pd.DataFrame({"tp": [c[0] for c in rows], "fp": [c[1] for c in rows], "fn": [c[2] for c in rows],
                                "edited": [True] * (n - 1) + [False], "score": np.linspace(0.9, 0.1, n)},
                               index=[f"i{k}" for k in range(n)])
            for name, rows in counts.items()}


def test_a_detector_better_on_every_image_is_told_apart_and_always_first():
    # "good" finds 9 of 10 edited pixels of every image, "poor" 3 of 10: every resample ranks good first.
    ranked = ranking.rank(_tables({"poor": [(3, 1, 7)] * 20, "good": [(9, 1, 1)] * 20}), "iou_edited", seed=3)
    assert [(e["detector"], e["rank"], e["rank_low"], e["rank_high"], e["p_best"]) for e in ranked] == [
        ("good", 1, 1, 1, 1.0), ("poor", 2, 2, 2, 0.0)]
    diff = ranked[0]["diff_next"]
    # identical images: every resample gives the same IoUs, 0.9 / 1.1... 180 / 220 and 60 / 220
    assert (diff["value"], diff["low"], diff["high"], diff["separated"]) == (
        round(180 / 220 - 60 / 220, 6), round(180 / 220 - 60 / 220, 6), round(180 / 220 - 60 / 220, 6), True)


def test_equal_detectors_share_first_rank():
    rows = [(5, 2, 3), (1, 1, 8), (7, 0, 1)] * 4
    ranked = ranking.rank(_tables({"b": rows, "a": rows}), "iou_edited", seed=0)
    assert [(e["detector"], e["rank"], e["rank_high"], e["p_best"]) for e in ranked] == [
        ("a", 1, 1, 1.0), ("b", 1, 1, 1.0)]
    assert ranked[0]["diff_next"]["value"] == 0 and ranked[0]["diff_next"]["separated"] is False


def test_detectors_scored_on_other_images_are_refused(bench):
    root, _ = bench
    folder = root / "data/predictions/fcn8s"
    table_ = records.read_table(folder / "per_image.parquet")
    records.write_table(folder / "per_image.parquet", table_[table_["image_id"] != "t5"])
    with pytest.raises(UserError, match="re-run evaluate@fcn8s"):
        ranking.load(root / "data/predictions", ["segformer", "fcn8s"])
