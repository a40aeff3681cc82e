"""End to end: the generation half of a shrunk offline profile (twelve images, two turns, one generator) in a
temporary project copy, then `diffseg browse --turns data/turns` on it, opened in headless Chromium: the site
works on the pipeline's own layout (data/dataset, data/source, data/turns/<t>/state), not only on a fixture.

The stages run in dvc.yaml's order in one Python process (`diffseg <stage>` each, as dvc.yaml's commands), so
torch and diffusers are imported once: `dvc repro` would start a process per stage and take minutes here."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import browser
from clone_fixture import copy_working_tree
from conftest import repo_params
from test_browse import grid_items

pytestmark = pytest.mark.slow


def _sh(args: list[str], cwd: Path, env: dict) -> str:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def _project(dest: Path) -> dict:
    """The working tree without outputs, with params for two turns of sd2 edits on twelve offline images."""
    copy_working_tree(dest, ("data/", "models/", "metrics/"))
    data = repo_params()
    data["source"]["offline"].update(n_crops=0, n_procedural=4)
    data["twins"].update(families=["sd2"], clip=False, vlm=False)
    data["turns"] = {"t1": {"prev": "data/source"}, "t2": {"prev": "data/turns/t1/state"}}
    data["final_state"] = "data/turns/t2/state"
    data["propose"]["turn_weights"] = [0.2, 0.3, 0.5]
    data["edit"]["generators"] = [g for g in data["edit"]["generators"] if g["name"] == "sd2"]
    (dest / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=str(dest / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return env


STAGES = [["source"], ["twins"]] + [[stage, turn] for turn in ("t1", "t2") for stage in ("propose", "edit", "filter")
                                    ] + [["assemble"]]
# Stops at the first stage that fails, with its exit status.
RUN_STAGES = f"import sys; from diffseg import cli; sys.exit(next(filter(None, map(cli.main, {STAGES!r})), 0))"


@pytest.mark.skipif(browser.find() is None, reason="no Chromium on PATH: apt-get install chromium")
def test_pipeline_dataset_in_the_browser(tmp_path):
    dest = tmp_path / "diffseg"
    env = _project(dest)
    started = time.monotonic()
    _sh([sys.executable, "-c", RUN_STAGES], dest, env)
    repro_s = time.monotonic() - started
    started = time.monotonic()
    log = _sh(["diffseg", "browse", "--turns", "data/turns"], dest, env)
    browse_s = time.monotonic() - started
    assert "browse: 12 images -> data/browse/index.html" in log and "without their turn states" not in log

    manifest = pd.read_parquet(dest / "data" / "dataset" / "manifest.parquet")
    meta = pd.read_parquet(dest / "data" / "dataset" / "metadata.parquet")
    items = grid_items(dest / "data" / "browse" / "index.html")
    assert [i["id"] for i in items] == sorted(manifest["image_id"])
    assert {i["id"]: i["n_edits"] for i in items} == dict(zip(manifest["image_id"], manifest["n_edits"]))
    edited = max(items, key=lambda i: (i["n_edits"], i["id"]))
    assert edited["n_edits"] >= 1
    accepted = meta[(meta["image_id"] == edited["id"]) & (meta["decision"] == "accepted")]
    test_ids = sorted(manifest.loc[manifest["split"] == "test", "image_id"])

    with browser.Browser(1000, 1400) as page:
        page.open((dest / "data" / "browse" / "index.html").as_uri())
        assert page.evaluate("document.querySelectorAll('#grid .card').length") == 12
        page.evaluate("""(() => { const s = document.querySelector('#filters select[name=split]');
            s.value = 'test'; s.dispatchEvent(new Event('change', {bubbles: true})); })()""")
        assert page.evaluate("Array.from(document.querySelectorAll('#grid .card')).map(c => c.dataset.id)") == test_ids
        page.open((dest / "data" / "browse" / "images" / f"{edited['id']}.html").as_uri())
        captions = page.evaluate("Array.from(document.querySelectorAll('.strip figcaption')).map(c => c.textContent)")
        page.wait("Array.from(document.querySelectorAll('.strip img')).every(img => img.complete && img.naturalWidth)")
    assert captions[0] == "source (before any turn)" and len(captions) == 3
    assert sum("by sd2" in c and "rejected" not in c for c in captions) == len(accepted)
    print(f"\nsource..assemble: {repro_s:.1f} s; diffseg browse --turns: {browse_s:.1f} s for {len(items)} images "
          f"({len(test_ids)} test); image {edited['id']}: {edited['n_edits']} edits, strip {captions}")
