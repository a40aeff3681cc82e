"""`diffseg check-metrics`: the comparison rules, and the command on a temporary clone.

The clone's workspace metrics are its committed ones (no DVC run here), so the untouched clone must
pass; a committed metric tampered with in a new commit must fail, naming the metric and both values.
The check after a real from-scratch reproduction is in test_pipeline_e2e.py.
"""
from __future__ import annotations

import json
import math

import pytest

from clone_fixture import commit, make_clone, sh
from diffseg import repro_check
from diffseg.repro_check import ABS_TOL, compare_file, same


@pytest.mark.parametrize("committed, reproduced, equal", [
    (0.5, 0.5 + ABS_TOL / 2, True),
    (0.5, 0.5 + ABS_TOL * 3, False),
    (3, 3, True),
    (3, 4, False),
    (1, 1.0, True),  # a whole float written as an int is the same number
    (True, 1, False),  # a bool is not a number
    (None, 0.0, False),
    (None, None, True),
    (math.nan, math.nan, True),
    (math.nan, 0.0, False),
    ("fcn8s", "fcn8s", True),
    ("fcn8s", "segformer", False),
])
def test_value_rules(committed, reproduced, equal):
    assert same(committed, reproduced) is equal


def test_nested_keys_lists_and_missing_values():
    old = {"task": {"miou": 0.25, "per_class": [0.1, 0.2]}, "n_images": 8, "gone": 1}
    new = {"task": {"miou": 0.25, "per_class": [0.1, 0.3]}, "n_images": 8, "added": 2}
    diffs = {d.key: (d.committed, d.reproduced) for d in compare_file("m.json", old, new)}
    assert diffs == {"task.per_class[1]": (0.2, 0.3), "gone": (1, repro_check.MISSING),
                     "added": (repro_check.MISSING, 2)}


@pytest.fixture
def clone(tmp_path):
    return make_clone(tmp_path / "diffseg")


def _check(dest, env, *args):
    return sh(["diffseg", "check-metrics", *args], dest, env, check=False)


def _metric_files(dest):
    return sorted(repro_check.workspace_files(dest, repro_check.declared_entries(dest)))


def test_untouched_clone_passes_and_tampered_commit_fails(clone):
    dest, env = clone
    names = _metric_files(dest)
    assert "metrics/dataset.json" in names and any(n.startswith("metrics/eval/") for n in names)
    untouched = _check(dest, env)
    assert untouched.returncode == 0, untouched.stdout + untouched.stderr
    assert f"{len(names)} metric files match HEAD" in untouched.stdout

    # Tamper with two committed values (a float beyond the tolerance, an int by one), keep the workspace.
    dataset = dest / "metrics" / "dataset.json"
    reproduced = dataset.read_text()
    tampered = json.loads(reproduced)
    stats = tampered["dataset"]
    old_fraction, old_images = stats["edited_pixel_fraction"], stats["n_images"]
    stats["edited_pixel_fraction"] = round(old_fraction + 10 * ABS_TOL, 6)
    stats["n_images"] = old_images + 1
    dataset.write_text(json.dumps(tampered, indent=2))
    commit(dest, env, "tamper")
    dataset.write_text(reproduced)

    failed = _check(dest, env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[0].startswith("check-metrics: 2 value(s) differ from HEAD")
    assert (f"  metrics/dataset.json dataset.edited_pixel_fraction: committed {stats['edited_pixel_fraction']}, "
            f"reproduced {old_fraction}") in lines
    assert f"  metrics/dataset.json dataset.n_images: committed {old_images + 1}, reproduced {old_images}" in lines
    # The commit before the tampering still matches.
    assert _check(dest, env, "--rev", "HEAD~1").returncode == 0


def test_within_tolerance_passes(clone):
    dest, env = clone
    dataset = dest / "metrics" / "dataset.json"
    data = json.loads(dataset.read_text())
    data["dataset"]["edited_pixel_fraction"] += ABS_TOL / 2
    dataset.write_text(json.dumps(data))
    assert _check(dest, env).returncode == 0


def test_missing_and_extra_metric_files_fail(clone, tmp_path):
    dest, env = clone
    evaluated = sorted((dest / "metrics" / "eval").glob("*.json"))[0]
    evaluated.unlink()
    (dest / "metrics" / "crossgen" / "extra.json").write_text('{"binary_miou": 0.5}')
    failed = _check(dest, env)
    assert failed.returncode == 1
    name = evaluated.relative_to(dest).as_posix()
    assert f"  {name}: committed (present), reproduced (missing)" in failed.stdout
    assert "  metrics/crossgen/extra.json: committed (missing), reproduced (present)" in failed.stdout


def test_reference_folder(clone, tmp_path):
    dest, env = clone
    reference = tmp_path / "reference"
    sh(["git", "clone", "-q", str(dest), str(reference)], tmp_path, env)
    assert _check(dest, env, "--reference", str(reference)).returncode == 0
    dataset = reference / "metrics" / "dataset.json"
    dataset.write_text(dataset.read_text().replace('"n_edits": ', '"n_edits": 1'))
    assert _check(dest, env, "--reference", str(reference)).returncode == 1
