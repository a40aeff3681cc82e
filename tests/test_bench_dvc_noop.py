"""The no-op ``dvc repro`` breakdown of benchmarks/bench_dvc_noop.py counts what DVC really does, on a
three-stage project where one directory is an out of one stage and a dep of two."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_dvc_noop  # noqa: E402
import dvc_memo  # noqa: E402

WRITE = "import os; os.makedirs('d', exist_ok=True); [open(f'd/{n}', 'w').write(n) for n in 'xyz']"
DVC_YAML = f"""stages:
  make:
    cmd: python -c "{WRITE}"
    params: [a]
    outs: [d]
  use1:
    cmd: python -c "open('o1', 'w').write(str(len(__import__('os').listdir('d'))))"
    deps: [d]
    outs: [o1]
  use2:
    cmd: python -c "open('o2', 'w').write('2')"
    deps: [d]
    params: [a]
    outs: [o2]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    (root / "params.yaml").write_text("a: 1\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    for argv in (["dvc", "init", "-q", "--no-scm"], ["dvc", "repro", "-q"], ["dvc", "status", "-q"]):
        subprocess.run(argv, cwd=root, check=True)
    return root


def test_breakdown_counts_one_walk_per_dep_and_out(finished):
    breakdown = bench_dvc_noop.Breakdown()
    breakdown.run(finished, ["repro", "-q"])
    assert breakdown.walks == {"d": [3, 3]}  # make's out, use1's dep, use2's dep: 3 files each time
    assert breakdown.calls["  params.yaml reads (read_param_file)"] == 2  # make and use2
    assert breakdown.calls["stage status (Stage.changed)"] == 3


def test_memo_walks_a_directory_once_as_out_and_once_as_dep(finished):
    undo = dvc_memo.install({"dirs", "params"})
    try:
        breakdown = bench_dvc_noop.Breakdown()
        breakdown.run(finished, ["repro", "-q"])
    finally:
        undo()
    assert breakdown.walks == {"d": [2, 3]}  # once as make's out, once for both deps
    assert subprocess.run(["dvc", "status", "-q"], cwd=finished).returncode == 0


def test_memo_rejects_unknown_kinds():
    with pytest.raises(ValueError, match=r"unknown memo kinds \['state'\]"):
        dvc_memo.install({"state"})
