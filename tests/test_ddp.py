"""Data-parallel training: two CPU processes (gloo) against one, on the small detector dataset.

The reference is one process on the same distributed path (a world of one), so both runs see the
same keyed sample order and the same global batches: DistributedSampler deals one permutation per
epoch round-robin, and ``detect.batch_size`` is the global batch. With ``loss: ce`` the mean of the
two processes' losses is the global batch's loss, and DDP averages the gradients. Without
BatchNorm and stochastic depth the two runs agree to float rounding (about 1e-7 in the loss); the
SegFormer here has both, and CPU processes cannot share them: there is no SyncBatchNorm on CPU, so
each process normalises its half batch on its own, and each draws its own stochastic-depth masks.
Hence tolerances rather than equality, about 1.5 times the gaps seen over eight epochs (loss up to
7% apart per epoch; mIoU up to 0.12 apart on three validation and six test images, where a few
flipped regions move mIoU by several points and eval-mode BatchNorm uses running statistics that
16 steps barely move from their start). The plain one-process path (``nproc: 1``) keeps its own
sampler, so committed results do not move; it is not compared here.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, write_params
from dataset_fixture import CLASSES, build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import evaluate, train

# The profile's segformer sets its own epochs and lr; here it trains with these settings like any detector.
DETECT = {"dataset": "data/dataset", "image_size": 64, "epochs": 8, "batch_size": 4, "loss": "ce",
          "detectors": {"segformer": {"epochs": None, "lr": None}}}
LOSS_RTOL = 0.1  # per-epoch training loss, relative
MIOU_ATOL = 0.15  # validation and test mIoU, absolute


def _workspace(folder: Path, nproc: int) -> params_mod.Params:
    build_dataset(folder / "data" / "dataset")
    return params_mod.load(write_params(folder, {"detect": {**DETECT, "nproc": nproc}, "crossgen": {"held_out": []}}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, monkeypatch):
    two = tmp_path / "two"
    two_params = _workspace(two, nproc=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "diffseg.cli", "train", "segformer"], cwd=two, env=env, check=True)
    assert (two / "models" / "detectors" / "segformer" / "model.safetensors").is_file()
    monkeypatch.chdir(two)
    two_eval = evaluate.run(two_params, "segformer", two / "eval.json", two / "confusion.json")
    two_log = two / "metrics" / "train" / "segformer"
    two_losses = [float(line.split("\t")[-1])
                  for line in (two_log / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]]
    two_val = records.read_json(two_log / "metrics.json")["val"]["miou"]
    two_ious = [float(line.split("\t")[-1])
                for line in (two_log / "plots" / "metrics" / "val" / "iou_edited.tsv").read_text().splitlines()[1:]]
    two_config = records.read_json(two / "models" / "detectors" / "segformer" / "config.json")

    one = tmp_path / "one"
    one_params = _workspace(one, nproc=1)
    monkeypatch.chdir(one)
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    history = train.run(one_params, "segformer", one / "models" / "detectors" / "segformer", one / "log")["history"]
    one_eval = evaluate.run(one_params, "segformer", one / "eval.json", one / "confusion.json")

    print("loss one", [round(r["loss"], 4) for r in history], "two", [round(v, 4) for v in two_losses])
    print("val mIoU one", history[-1]["val_miou"], "two", two_val)
    print("val IoU edited one", [round(r["val_iou_edited"], 4) for r in history],
          "two", [round(v, 4) for v in two_ious])
    one_test, two_test = one_eval["attribution"]["miou"]["value"], two_eval["attribution"]["miou"]["value"]
    print("test mIoU one", one_test, "two", two_test)
    assert len(two_losses) == len(history) == len(two_ious) == DETECT["epochs"]
    for ours, theirs in zip(two_losses, (r["loss"] for r in history)):
        assert ours == pytest.approx(theirs, rel=LOSS_RTOL)
    assert two_val == pytest.approx(history[-1]["val_miou"], abs=MIOU_ATOL)
    assert two_ious == pytest.approx([r["val_iou_edited"] for r in history], abs=MIOU_ATOL)
    # the processes add up their val counts, so the kept epoch is the best of the summed scores
    assert two_config["kept_epoch"] == train.best_epoch(two_ious)
    assert two_config["val_iou_edited"] == pytest.approx(max(two_ious), abs=1e-6)
    assert two_eval["attribution"]["per_class_iou"].keys() == set(CLASSES)
    assert two_test == pytest.approx(one_test, abs=MIOU_ATOL)
