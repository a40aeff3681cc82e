"""`diffseg train` and `diffseg evaluate` of a tiny transformers detector (UperNet on ConvNeXt) and of a user's
model from a ``detectors/`` folder, as the stages run them: in a temporary workspace holding the small test
dataset, through the command line, each in its own process (so the reload needs no state of the training run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, write_params
from dataset_fixture import build_dataset

pytestmark = pytest.mark.slow

STAGES = ["stage1", "stage2", "stage3", "stage4"]
DETECTORS = {
    "tiny-upernet": {"arch": "transformers", "epochs": 6, "lr": 0.01,
                     "config": {"model_type": "upernet", "hidden_size": 16, "auxiliary_channels": 8,
                                "backbone_config": {"model_type": "convnext", "depths": [1, 1, 1, 1],
                                                    "hidden_sizes": [8, 16, 24, 32], "out_features": STAGES}}},
    "mine": {"target": "detectors.mynet:build", "kwargs": {"width": 8}, "epochs": 4, "lr": 0.01},
    "missing": {"target": "detectors.nonet:build"},
}
MYNET = '''from torch import nn


def build(n_classes, in_channels, width=32):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, n_classes, 1))
'''


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "diffseg.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


def test_train_and_evaluate_a_transformers_and_a_user_detector(workdir):
    build_dataset(workdir / "data" / "dataset")
    (workdir / "detectors").mkdir()
    (workdir / "detectors" / "__init__.py").write_text("")
    (workdir / "detectors" / "mynet.py").write_text(MYNET)
    write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": 64, "batch_size": 4,
                                      "task": "binary", "device": "cpu", "detectors": DETECTORS},
                           "crossgen": {"held_out": [], "detector": "mine"}})
    for name in ("tiny-upernet", "mine"):
        start = time.monotonic()
        for command in ("train", "evaluate"):
            run = _cli([command, name], workdir)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
            print(run.stdout.strip().splitlines()[-1])
        config = json.loads((workdir / "models" / "detectors" / name / "config.json").read_text())
        metrics = json.loads((workdir / "metrics" / "eval" / f"{name}.json").read_text())
        print(f"{name}: arch {config['arch']}, encoder {config['encoder']}, kept epoch {config['kept_epoch']}, "
              f"val IoU edited {config['val_iou_edited']}; test IoU edited {metrics['binary']['iou_edited']}, "
              f"detection AUC {metrics['binary']['detection_auc']}; {time.monotonic() - start:.1f} s")
        assert (metrics["arch"], metrics["test_images"]) == (config["arch"], 6)
        assert 0 <= metrics["binary"]["iou_edited"]["value"] <= 1
    assert config["target"] == "detectors.mynet:build" and config["kwargs"] == {"width": 8}

    run = _cli(["train", "missing"], workdir)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(
        "detector 'missing' (target 'detectors.nonet:build'): cannot import 'detectors.nonet' (No module named "
        "'detectors.nonet'); code in the repository's detectors/ folder is imported as detectors.<module>")
