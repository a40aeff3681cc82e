"""``source`` over a COCO site of broken and unusual files: exact reasons, the same bytes from every run
(wherever it ran, whatever temporary folder it had), and a run killed mid-download that resumes and
leaves nothing behind."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, write_params
from corpus_fixture import EXPECT, MAX_SIDE, MIN_SIDE, SPLIT, build_site
from diffseg import records
from http_fixture import FileServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    build_site(www)
    with FileServer(www) as srv:
        yield srv


def _project(folder: Path, server: FileServer) -> tuple[Path, dict]:
    """A repository-shaped folder reading the corpus, and an environment with a temporary folder of its own."""
    folder.mkdir(parents=True)
    write_params(folder, {"max_item_failure": 1.0, "source": {
        "kind": "coco", "n_images": len(EXPECT), "min_side": MIN_SIDE, "max_side": MAX_SIDE,
        "coco": {"base_url": server.url, "cache_dir": "data/cache/coco"}}})
    (folder / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(folder / "tmp"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return folder, env


_COMMAND = [sys.executable, "-m", "diffseg.cli", "source"]


def _source(folder: Path, env: dict) -> None:
    run = subprocess.run(_COMMAND, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    """Anything a finished run should not leave: its scratch folder, partial or temporary files."""
    found = [p for p in (folder / "data" / "cache").rglob("*") if p.suffix in (".part", ".tmp")]
    found += list((folder / "tmp").iterdir()) + [p for p in [folder / "data/cache/resume"] if p.exists()]
    return sorted(str(p.relative_to(folder)) for p in found)


@pytest.fixture(scope="module")
def first(server, tmp_path_factory) -> Path:
    folder, env = _project(tmp_path_factory.mktemp("first") / "repo", server)
    _source(folder, env)
    return folder


@pytest.mark.slow
def test_each_broken_file_gets_its_exact_status_and_reason(first):
    manifest = records.StateDir(first / "data" / "source").manifest().set_index("file")
    got = {name: (row.status, row.reason if row.status != records.OK else row.note) for name, row in
           manifest.iterrows()}
    assert got == EXPECT
    kept = sorted(p.name for p in (first / "data" / "source" / "images").iterdir())
    assert kept == ["000000000004.png", "000000000005.png", "000000000006.png", "000000000007.png",
                    "000000000012.png"]
    assert _leftovers(first) == []


@pytest.mark.slow
def test_a_second_run_elsewhere_writes_the_same_bytes(first, server, tmp_path):
    folder, env = _project(tmp_path / "elsewhere" / "repo", server)
    _source(folder, env)
    assert _hashes(folder / "data" / "source") == _hashes(first / "data" / "source")
    assert _leftovers(folder) == []


@pytest.mark.slow
def test_source_killed_during_the_download_resumes_and_leaves_nothing(first, server, tmp_path):
    folder, env = _project(tmp_path / "repo", server)
    images = folder / "data" / "cache" / "coco" / SPLIT
    server.delay = 0.2  # the 12000x9000 JPEG (about 2 MB) takes several seconds
    try:
        run = subprocess.Popen(_COMMAND, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while run.poll() is None and time.monotonic() < deadline and not any(
                p.stat().st_size for p in images.glob("*.part")):
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        server.delay = 0.0
    assert run.returncode == -signal.SIGKILL
    partial = {p.name.removesuffix(".part"): p.stat().st_size for p in images.glob("*.part") if p.stat().st_size}
    assert partial and not (folder / "data" / "source" / records.MANIFEST).exists()
    asked = len(server.requests)

    _source(folder, env)
    resumed = {path.rsplit("/", 1)[-1]: rng for path, rng in server.requests[asked:] if rng}
    assert resumed == {name: f"bytes={size}-" for name, size in partial.items()}  # each partial file went on
    assert _hashes(folder / "data" / "source") == _hashes(first / "data" / "source")
    assert _leftovers(folder) == []
