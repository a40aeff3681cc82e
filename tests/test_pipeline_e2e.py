"""End to end: `dvc repro` of the offline profile in a temporary clone, then the dataset invariants.

One clone serves every check, in order: the full run (generation and benchmark), its metrics against
the committed ones (`diffseg check-metrics`, the CI reproduction check), the dataset contracts, a second
run of the generation half from scratch in another folder (same output hashes), the benchmark outputs
and plots, a no-op second run, a robustness-level change that must re-run only
`robustness@*` and `report`, and a filter-threshold change that must re-run the filters and what
follows but no earlier edit.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clone_fixture import make_clone
from conftest import ROOT
from diffseg import records

pytestmark = pytest.mark.slow


def _sh(args: list[str], cwd: Path, env: dict) -> str:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The working tree (tracked and untracked, not ignored files) as a fresh git repository."""
    dest = tmp_path_factory.mktemp("clone") / "diffseg"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("data/", "models/")) and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=str(dest / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    _sh(["git", "init", "-q"], dest, env)
    _sh(["git", "add", "-A"], dest, env)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], dest, env)
    log = _sh(["dvc", "repro"], dest, env)
    return dest, env, log


def test_dag_chains_the_turns(clone):
    dest, env, _ = clone
    edges = _sh(["dvc", "dag", "--dot"], dest, env)
    chain = ["source", "propose@t1", "edit@t1", "filter@t1", "propose@t2", "edit@t2", "filter@t2", "propose@t3",
             "edit@t3", "filter@t3", "assemble"]
    for a, b in zip(chain, chain[1:]):
        assert re.search(rf'"{re.escape(a)}"\s*->\s*"{re.escape(b)}"', edges), f"missing edge {a} -> {b}"


def test_reproduction_matches_committed_metrics(clone, tmp_path):
    """The from-scratch run gives the committed numbers; a tampered committed copy is caught.

    Runs before any test below changes params (tests run in file order).
    """
    dest, env, _ = clone
    check = subprocess.run(["diffseg", "check-metrics"], cwd=dest, env=env, capture_output=True, text=True)
    assert check.returncode == 0, f"the reproduction differs from the committed metrics:\n{check.stdout}{check.stderr}"
    assert "metric files match HEAD" in check.stdout

    committed = tmp_path / "committed"  # the clone's commit, as a temporary clone with one value changed
    _sh(["git", "clone", "-q", str(dest), str(committed)], tmp_path, env)
    dataset = committed / "metrics" / "dataset.json"
    stats = records.read_json(dataset)
    stats["dataset"]["n_edits"] += 1
    records.write_json(dataset, stats)
    tampered = subprocess.run(["diffseg", "check-metrics", "--reference", str(committed)], cwd=dest, env=env,
                              capture_output=True, text=True)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    n_edits = stats["dataset"]["n_edits"]
    assert f"metrics/dataset.json dataset.n_edits: committed {n_edits}, reproduced {n_edits - 1}" in tampered.stdout


def test_dataset_invariants(clone):
    dest, _, _ = clone
    data = records.StateDir(dest / "data" / "dataset")
    classes = records.read_json(data.root / "classes.json")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert classes == ["authentic"] + [g["name"] for g in params["edit"]["generators"]]
    manifest = data.manifest()
    meta = pd.read_parquet(data.root / "metadata.parquet")
    assert len(manifest) >= 48
    assert set(manifest["n_edits"]) == {0, 1, 2, 3}
    assert set(meta.loc[meta["decision"] == "accepted", "generator"]) == set(classes[1:])
    assert manifest.groupby("source_id")["split"].nunique().max() == 1
    assert set(manifest["split"]) == {"train", "val", "test"}
    required = ["source_id", "origin", "action", "target", "prompt", "negative_prompt", "generator", "model",
                "steps", "guidance", "strength", "seed", "mask_area", "change_in_mask", "decision", "reason"]
    edited = meta[meta["action"] != "none"]
    for column in required:
        assert edited[column].notna().all() and (edited[column].astype(str) != "").all(), column

    for image_id in manifest["image_id"]:
        with Image.open(data.image_path(image_id)) as img:
            assert img.format == "PNG" and img.mode == "RGB"
        with Image.open(data.label_path(image_id)) as lab:
            assert lab.mode == "L" and lab.size == img.size
        assert records.read_gray(data.label_path(image_id)).max() < len(classes)

    # Outside each accepted edit's mask the pixels equal the state before that turn.
    for row in meta[meta["decision"] == "accepted"].itertuples():
        turn_index = int(row.turn_index)
        before_dir = dest / ("data/source" if turn_index == 1 else f"data/turns/t{turn_index - 1}/state")
        before = records.StateDir(before_dir).image(row.image_id)
        after = records.StateDir(dest / f"data/turns/{row.turn}/state").image(row.image_id)
        mask = records.PlanDir(dest / f"data/turns/{row.turn}/plan").mask(row.image_id)
        assert np.array_equal(before[~mask], after[~mask]), (row.image_id, row.turn)
        assert not np.array_equal(before[mask], after[mask])


def _outs(lock: Path) -> dict[str, list]:
    """Each stage's outputs as its dvc.lock records them: path, md5, file count, size."""
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {name: sorted((o["path"], o.get("md5"), o.get("nfiles"), o.get("size")) for o in stage.get("outs", []))
            for name, stage in stages.items()}


def test_a_run_from_scratch_elsewhere_gives_the_same_hashes(clone, tmp_path):
    """A second clone in another temporary folder, generation half only (a second benchmark half would add
    about ten minutes): every stage through ``assemble`` writes outputs of the same hashes as the first run.

    Runs before any test below changes params.
    """
    dest, env, _ = clone
    other, other_env = make_clone(tmp_path / "elsewhere")
    _sh(["dvc", "repro", "assemble"], other, other_env)
    first, second = _outs(dest / "dvc.lock"), _outs(other / "dvc.lock")
    assert "assemble" in second and "source" in second and not second.keys() - first.keys()
    assert {name: first[name] for name in second} == second


def test_second_repro_runs_nothing(clone):
    dest, env, _ = clone
    log = _sh(["dvc", "repro"], dest, env)
    assert "Running stage" not in log, log


def test_benchmark_outputs_and_plots(clone):
    dest, env, _ = clone
    params = yaml.safe_load((dest / "params.yaml").read_text())
    tasks = set()
    for name, spec in params["detect"]["detectors"].items():
        assert (dest / "models" / "detectors" / name / "model.safetensors").is_file()
        result = records.read_json(dest / "metrics" / "eval" / f"{name}.json")
        # The offline profile is sized so that its numbers can be read: enough test images and negatives, and
        # detectors that demonstrably find the twins' edits.
        assert result["task"] == (spec.get("task") or params["detect"]["task"]), name
        assert result["test_images"] >= 40 and result["test_negatives"] >= 10, result
        assert result["binary"]["iou_edited"]["value"] >= 0.5, (name, result["binary"]["iou_edited"])
        assert result["binary"]["detection_auc"]["value"] >= 0.9, (name, result["binary"]["detection_auc"])
        tasks.add(result["task"])
        assert records.read_json(dest / "metrics" / "robustness" / f"{name}.json")["jpeg"]
    assert tasks == {"binary", "attribution"}, tasks
    for held_out in params["crossgen"]["held_out"]:
        cross = records.read_json(dest / "metrics" / "crossgen" / f"{held_out}.json")
        assert cross["unseen"]["iou_edited"]["value"] is not None and cross["seen"]["iou_edited"]["value"] is not None
    # The paired ranking recomputes each detector's headline figures from its per-image counts: the same values
    ranked = records.read_json(dest / "metrics" / "ranking.json")
    for metric, entries in ranked["by"].items():
        assert sorted(e["detector"] for e in entries) == sorted(params["detect"]["detectors"]), metric
        for e in entries:
            evaluated = records.read_json(dest / "metrics" / "eval" / f"{e['detector']}.json")["binary"][metric]
            assert abs(e["value"] - evaluated["value"]) <= 1e-6, (metric, e, evaluated)
    report = (dest / "metrics" / "report.md").read_text()
    for heading in ["Ranking", "Binary segmentation", "Attribution", "Robustness", "Cross-generator", "image-level classifiers"]:
        assert heading in report
    _sh(["dvc", "plots", "show", "-o", "plots_html"], dest, env)
    html = (dest / "plots_html" / "index.html").read_text()
    for name in params["detect"]["detectors"]:
        assert "train_loss" in html and f"metrics/confusion/{name}.json" in html
        assert f"metrics/robustness_curves/{name}/jpeg.json" in html


def test_robustness_level_reruns_only_robustness_and_report(clone):
    dest, env, _ = clone
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["robustness"]["jpeg"] = [*params["robustness"]["jpeg"], 30]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = _sh(["dvc", "repro"], dest, env)
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {f"robustness@{d}" for d in params["detect"]["detectors"]} | {"report"}, ran


def test_filter_threshold_reruns_filters_not_earlier_edits(clone):
    dest, env, _ = clone
    params = yaml.safe_load((dest / "params.yaml").read_text())
    # A threshold no edit meets: every decision flips, so everything after filter@t1 changes.
    # Only the generation half is reproduced here; the benchmark half would retrain on the new data.
    params["filter"]["min_change"] = 255.0
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = _sh(["dvc", "repro", "assemble"], dest, env)
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert {"filter@t1", "propose@t2", "edit@t2", "filter@t2", "filter@t3", "assemble"} <= ran, ran
    assert not ran & {"source", "twins", "propose@t1", "edit@t1"}, ran
    stats = records.read_json(dest / "data" / "dataset" / "stats.json")
    assert stats["n_edits"] == 0 and stats["n_edited_images"] == 0
