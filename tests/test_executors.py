"""The Ray executor and resumable ``edit@t``: both end with the bytes of an uninterrupted in-process run."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, repo_params, write_params
from diffseg import cli, records, resume
from diffseg.edit import journal
from diffseg.edit import stage as edit_stage
from diffseg.propose import stage as propose_stage
from test_stages import _params, project  # noqa: F401 - the small project (source, twins) of the stage tests

# Two generators, small batches: several batches per generator, and a batch of two items.
GENERATORS = [g for g in repo_params()["edit"]["generators"] if g["name"] in ("sd2", "sdxl")]


def _planned(project, batch_size: int):
    p = _params(project, {"edit": {"batch_size": batch_size, "generators": GENERATORS}})
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    return p


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture
def ray_cluster():
    """A local Ray cluster of two nodes, one CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.slow
def test_ray_on_two_nodes_writes_the_inprocess_bytes(project, ray_cluster, capsys):
    p = _planned(project, batch_size=2)
    edit_stage.run(p, "t1", project / "inprocess")
    p.edit.executor = "ray"
    p.edit.ray.address, p.edit.ray.num_workers = ray_cluster.address, 2
    manifest = edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    out = capsys.readouterr().out
    assert "on worker 0" in out and "on worker 1" in out  # both generators ran, one on each worker
    assert (manifest["status"] == records.OK).sum() >= 2
    assert _tree(records.turn_dir("t1", "edit")) == _tree(project / "inprocess")
    assert not resume.ROOT.exists()  # the journal and the folders above it are gone


def _journaled(project) -> list[Path]:
    return list((project / resume.ROOT).glob("edit-t1/*/batches/*.json"))


@pytest.mark.slow
def test_killed_edit_resumes_without_redoing_finished_batches(project):
    edit_stage.run(_planned(project, batch_size=1), "t1", project / "uninterrupted")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "diffseg.cli", "edit", "t1"]
    first = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _journaled(project) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = len(_journaled(project))
    assert first.returncode == -signal.SIGKILL and finished >= 1

    second = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    total, reused, ran = map(int, re.search(r"(\d+) batch\(es\): (\d+) reused from an interrupted run, (\d+) to run",
                                            second.stdout).groups())
    assert reused == finished and ran == total - finished and ran >= 1
    assert _tree(project / records.turn_dir("t1", "edit")) == _tree(project / "uninterrupted")
    assert not (project / resume.ROOT).exists()  # no journal, no empty edit-t1/ folder


def test_a_journal_of_other_inputs_is_never_reused(workdir):
    old = journal.Journal("edit-t1", resume.fingerprint(["plan A"]))
    old.record(0, [{"image_id": "a"}], retry=False)
    old.record(1, [{"image_id": "b"}], retry=True)
    assert journal.Journal("edit-t1", resume.fingerprint(["plan A"])).finished() == {0}  # errors run again
    new = journal.Journal("edit-t1", resume.fingerprint(["plan B"]))
    assert new.finished() == set() and not old.root.exists()


def test_fingerprint_follows_file_content(workdir):
    path = workdir / "mask.png"
    path.write_bytes(b"one")
    first = resume.fingerprint([path])
    path.write_bytes(b"two")
    assert resume.fingerprint([path]) != first


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "no Ray cluster answers there"),
    ("no-port", "expected host:port"),
])
def test_unreachable_cluster_is_a_one_line_error(workdir, capsys, address, message):
    write_params(workdir, {"edit": {"executor": "ray", "ray": {"address": address}}})
    assert cli.main(["edit", "t1"]) == 2
    err = capsys.readouterr().err
    assert "edit.ray.address" in err and message in err and "Traceback" not in err


def test_ray_address_from_the_environment(workdir, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    write_params(workdir, {"edit": {"executor": "ray"}})
    assert cli.main(["edit", "t1"]) == 2
    assert "RAY_ADDRESS='127.0.0.1:1'" in capsys.readouterr().err


@pytest.mark.parametrize("workers, sizes", [(1, [3, 1]), (2, [3, 1]), (4, [2, 1, 1]), (8, [1, 1, 1, 1])])
def test_shards_cut_each_generator_contiguously(workers, sizes):
    from diffseg.edit.executors import _shards

    groups = [("sd2", [0, 1, 2]), ("sdxl", [3]), ("flux", [])]
    shards = _shards(groups, workers)
    assert [len(s.jobs) for s in shards] == sizes
    assert [job for s in shards for job in s.jobs] == [0, 1, 2, 3]  # every batch once, in order
