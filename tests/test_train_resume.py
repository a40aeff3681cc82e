"""A ``train`` killed mid-epoch resumes from its last finished epoch and writes the bytes of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, write_params
from dataset_fixture import build_dataset
from diffseg import resume
from diffseg.detect.checkpoint import EpochJournal

EPOCHS = 3
PARAMS = {"detect": {"dataset": "data/dataset", "image_size": 64, "epochs": EPOCHS, "batch_size": 4,
                     "detectors": {"segformer": {"epochs": None, "lr": None}}}}
_COMMAND = [sys.executable, "-m", "diffseg.cli", "train", "segformer"]


def _project(folder: Path) -> tuple[Path, dict]:
    folder.mkdir(parents=True)
    build_dataset(folder / "data" / "dataset")
    write_params(folder, PARAMS)
    return folder, dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def _outputs(folder: Path) -> dict[str, bytes]:
    return {**_tree(folder / "models" / "detectors"), **_tree(folder / "metrics" / "train")}


def _epochs_saved(folder: Path) -> int:
    saved = list((folder / resume.ROOT).glob("train-segformer/*/epoch.pt"))
    return len(torch.load(saved[0], weights_only=True)["history"]) if saved else 0


@pytest.mark.slow
def test_killed_train_resumes_and_writes_the_uninterrupted_bytes(tmp_path):
    whole, env = _project(tmp_path / "whole")
    run = subprocess.run(_COMMAND, cwd=whole, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (whole / resume.ROOT).exists()

    folder, env = _project(tmp_path / "killed")
    first = subprocess.Popen(_COMMAND, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((folder / resume.ROOT).glob("train-segformer/*/epoch.pt")) and first.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    done = _epochs_saved(folder)
    assert 1 <= done < EPOCHS

    second = subprocess.run(_COMMAND, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming after epoch {done - 1} of an interrupted run" in second.stdout
    assert _outputs(folder) == _outputs(whole)  # checkpoint, config and every DVCLive file
    assert not (folder / resume.ROOT).exists()


def test_a_state_of_other_inputs_is_never_loaded(workdir):
    old = EpochJournal("segformer", "a" * 64)
    old.save({"history": [{"epoch": 0, "loss": 1.0}]})
    assert EpochJournal("segformer", "a" * 64).load() == {"history": [{"epoch": 0, "loss": 1.0}]}
    new = EpochJournal("segformer", "b" * 64)
    assert new.load() is None and not old.root.exists()
    new.save({"history": []})
    new.remove()
    assert not resume.ROOT.exists()
