"""``dvc plots show`` and ``dvc plots diff`` on the committed metrics: every plot renders, with no warning.

The repository's ``dvc.yaml``, ``params.yaml``, plot templates and git-tracked ``metrics/`` go into a temporary
git repository (no pipeline run); the dataset's plot files are written there by ``diffseg.dataset.plots`` from a
small hand-made dataset whose counts are known.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from clone_fixture import commit, sh, tool_env
from conftest import ROOT
from diffseg.dataset import plots

CLASSES = ["authentic", "sd2", "sdxl"]
CURVES = {"train_loss": "train/loss", "train_lr": "train/lr", "val_miou": "val/miou",
          "val_iou_edited": "val/iou_edited"}


def _dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four images: two edits by sd2 (add 3%, change 12%), one by sdxl (remove 15%: the 15-20% bin); one plan
    refused, one edit rejected by the filter, and the planner's notes on turns an image does not get."""
    images = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "n_edits": [2, 1, 0, 0]})
    meta = pd.DataFrame([
        ("a", "add", "sd2", 0.03, "accepted", "passed heuristics"),
        ("a", "change", "sd2", 0.12, "accepted", "passed heuristics"),
        ("b", "remove", "sdxl", 0.15, "accepted", "passed heuristics"),
        ("b", "add", "sd2", 0.2, "rejected", "mask area 0.2 outside [0.01, 0.15] (filter)"),
        ("c", "none", "", 0.0, "none", "no free region for an added object"),
        ("c", "none", "", 0.0, "none", "image gets 1 edit(s)"),
        ("d", "none", "", 0.0, "none", "image gets 0 edit(s)"),
    ], columns=["image_id", "action", "generator", "mask_area", "decision", "reason"])
    return images, meta


def test_plot_tables_hold_the_metadata_counts():
    tables = plots.tables(*_dataset(), CLASSES)
    assert tables["edit_area.tsv"] == [{"area": "0-5%", "edits": 1}, {"area": "5-10%", "edits": 0},
                                       {"area": "10-15%", "edits": 1}, {"area": "15-20%", "edits": 1}]
    per_generator = {(r["generator"], r["action"]): r["edits"] for r in tables["edits_per_generator.tsv"]}
    assert per_generator == {("sd2", "add"): 1, ("sd2", "remove"): 0, ("sd2", "change"): 1,
                             ("sdxl", "add"): 0, ("sdxl", "remove"): 1, ("sdxl", "change"): 0}
    assert tables["turns_per_image.tsv"] == [{"edits": 0, "images": 2}, {"edits": 1, "images": 1},
                                             {"edits": 2, "images": 1}]
    assert tables["rejections.tsv"] == [{"reason": "filter: mask area # outside [#, #]", "edits": 1},
                                        {"reason": "propose: no free region for an added object", "edits": 1}]
    images, meta = _dataset()
    assert plots.rejections(meta[meta["decision"] == "accepted"]) == [{"reason": "none", "edits": 0}]


def test_plot_files_are_tsv(tmp_path):
    plots.write(*_dataset(), CLASSES, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(plots.FILES)
    assert (tmp_path / "turns_per_image.tsv").read_text() == "edits\timages\n0\t2\n1\t1\n2\t1\n"


def test_training_curves_cover_every_detector_of_both_profiles():
    defined = {}
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        (pid, props), = entry.items()
        defined[pid] = set((props or {}).get("y", {})) if isinstance((props or {}).get("y"), dict) else None
    for profile in ("params.yaml", "configs/paper.yaml"):
        detectors = yaml.safe_load((ROOT / profile).read_text())["detect"]["detectors"]
        for pid, sub in CURVES.items():
            assert defined[pid] == {f"metrics/train/{d}/plots/metrics/{sub}.tsv" for d in detectors}, (profile, pid)
    assert "metrics/train" not in defined  # the folder would take DVCLive's metrics.json too


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("plots-repo")
    env = tool_env()
    tracked = subprocess.run(["git", "ls-files", "-z", "metrics", ".dvc", "dvc.yaml", "params.yaml", ".dvcignore"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    untracked = [p.relative_to(ROOT).as_posix() for p in (ROOT / ".dvc" / "plots").glob("*.json")]
    for name in filter(None, [*tracked, *untracked]):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    plots.write(*_dataset(), CLASSES, repo / "metrics" / "dataset_plots")
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    commit(repo, env, "metrics")
    return repo, env


@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]])
def test_dvc_plots_render_without_warnings(plots_repo, command):
    repo, env = plots_repo
    run = sh(["dvc", "plots", *command, "--json"], repo, env)
    assert "WARNING" not in run.stderr + run.stdout and "ERROR" not in run.stderr, run.stderr
    out = json.loads(run.stdout)
    assert out.get("errors", []) == []
    data = out["data"]
    revs = ["workspace"] if command == ["show"] else ["HEAD", "workspace"]
    for pid in CURVES:
        (spec,) = data[pid]
        values = spec["content"]["data"]["values"]
        assert sorted({v["rev"] for v in values}) == sorted(revs)
        detectors = {v["filename"].split("/")[0] for v in values}  # the paths below their common prefix
        assert detectors == {"fcn8s", "deeplabv3plus", "segformer", "upernet", "deeplabv3plus_srm"}
    # The dataset plots carry the file's rows, in the file's order, through the custom templates.
    (spec,) = data["metrics/dataset_plots/turns_per_image.tsv"]
    workspace = [v for v in spec["content"]["data"]["values"] if v["rev"] == "workspace"]
    assert [(int(v["edits"]), int(v["images"])) for v in workspace] == [(0, 2), (1, 1), (2, 1)]
    assert spec["content"]["encoding"]["x"]["field"] == "edits" and spec["content"]["encoding"]["x"]["sort"] is None
    (spec,) = data["metrics/dataset_plots/edits_per_generator.tsv"]
    assert spec["content"]["encoding"]["color"]["field"] == "action"
    assert sum(int(v["edits"]) for v in spec["content"]["data"]["values"] if v["rev"] == "workspace") == 3
    assert not [k for k in data if k.endswith("metrics.json")]
