"""The params schema: the repository's params.yaml loads; bad files stop with the key named."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, write_params
from diffseg import params


def test_repository_params_load():
    p = params.load(ROOT / "params.yaml")
    assert p.turn_names == ["t1", "t2", "t3"]
    assert p.classes[0] == "authentic" and len(p.classes) == len(p.edit.generators) + 1
    assert p.final_state == "data/turns/t3/state"


def test_paper_profile_loads_with_the_eight_generators():
    p = params.load(ROOT / "configs" / "paper.yaml")
    assert p.classes == ["authentic", "sd2", "sdxl", "flux", "sd3", "glide", "kolors", "hunyuan", "kandinsky"]
    assert p.source.kind == "coco" and not p.twins.families and not p.twins.clip
    assert all(d.encoder_weights == "imagenet" for d in p.detect.detectors.values())


@pytest.mark.parametrize("override, key", [
    ({"filter": {"min_chnage": 1.0}}, "filter.min_chnage"),  # unknown key (typo)
    ({"seed": "zero"}, "seed"),  # wrong type
    ({"edit": {"batch_size": 0}}, "edit.batch_size"),  # out of range
    ({"edit": {"executor": "dask"}}, "edit.executor"),
    ({"edit": {"ray": {"num_workers": 0}}}, "edit.ray.num_workers"),
    ({"edit": {"ray": {"num_gpus": -1}}}, "edit.ray.num_gpus"),
    ({"propose": {"turn_weights": [0.5, 0.5]}}, "propose.turn_weights"),  # length must be turns + 1
    ({"turns": {"t1": {"prev": "data/source"}, "t3": {"prev": "data/turns/t1/state"}}}, "turns.t3"),
    ({"final_state": "data/turns/t2/state"}, "final_state"),
    ({"source": {"kind": "flickr"}}, "source.kind"),
    ({"edit": {"generators": [{"name": "sd2", "family": "sd2", "model": "m", "resolution": 100}]}},
     "edit.generators[0].resolution"),
])
def test_bad_params_name_the_key(tmp_path, override, key):
    path = write_params(tmp_path, override)
    with pytest.raises(params.ParamsError) as err:
        params.load(path)
    assert key in str(err.value)


def test_cli_stops_before_work_on_bad_params(tmp_path):
    write_params(tmp_path, {"filter": {"min_chnage": 1.0}})
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2
    assert "filter.min_chnage" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "data").exists()
