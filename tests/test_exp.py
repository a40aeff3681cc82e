"""DVC experiments over seeds, generators and detectors, and a queued seed sweep, on the real pipeline.

The project is a clone of the working tree with the offline source shrunk, plus one test-only stage,
`plan_stats`, that turns turn t1's plan into metrics (the real pipeline's first metrics come after
`assemble`, minutes later). Every experiment targets `plan_stats`, so only the real `diffseg source` and
`diffseg propose t1` stages run beneath it.
"""
from __future__ import annotations

import json
import re
import textwrap
import time

import pytest
import yaml

from clone_fixture import commit, make_clone, sh

pytestmark = pytest.mark.slow  # each experiment runs real stages (about 10-20 s each)

PLAN_STATS = textwrap.dedent('''\
    """Turn t1's plan as metrics: how many images, how many edits, edits per generator."""
    from collections import Counter

    from diffseg import records

    plan = records.PlanDir("data/turns/t1/plan").manifest()
    edits = plan[(plan["status"] == records.OK) & (plan["action"] != "none")]
    records.write_json("metrics/plan.json", {"plan": {
        "n_images": len(plan), "n_edits": len(edits),
        "per_generator": {g: int(n) for g, n in sorted(Counter(edits["generator"]).items())}}})
''')
ONE_GENERATOR = "edit.generators=[{name:sd2,family:sd2,model:models/twins/sd2,steps:3,guidance:7.5,resolution:128}]"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dest, env = make_clone(tmp_path_factory.mktemp("exp") / "diffseg")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["source"]["offline"] = {"n_crops": 2, "n_procedural": 6, "size": 128}
    # propose@t1 depends on the twins stage (the vlm planner's twins); planning never loads a generator, so
    # only those are built and every seed's twins stage stays short.
    params["twins"].update(families=[], clip=False)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "plan_stats.py").write_text(PLAN_STATS)
    pipeline = yaml.safe_load((dest / "dvc.yaml").read_text())
    pipeline["stages"]["plan_stats"] = {"cmd": "python plan_stats.py", "deps": ["data/turns/t1/plan", "plan_stats.py"],
                                        "outs": [{"metrics/plan.json": {"cache": False}}]}
    pipeline["metrics"].append("metrics/plan.json")
    (dest / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    sh(["dvc", "repro", "plan_stats"], dest, env)
    commit(dest, env, "baseline: plan_stats")
    yield dest, env
    sh(["dvc", "queue", "stop", "--kill"], dest, env, check=False)  # no worker outlives the tests


def _experiments(dest, env) -> dict[str, dict]:
    """`dvc exp show --json` as {experiment name: {"params": ..., "metrics": ...}} (baseline as 'main')."""
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], dest, env).stdout)
    found = {}

    def walk(node):
        if isinstance(node, dict):
            if "rev" in node and isinstance(node.get("data"), dict):
                data = node["data"]
                name = node.get("name") or data.get("name") or node["rev"]
                found[name] = {"params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                               "metrics": data.get("metrics", {}).get("metrics/plan.json", {}).get("data", {}),
                               "status": data.get("status")}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(shown)
    return found


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def test_exp_run_seed_and_generators(project):
    dest, env = project
    base = json.loads((dest / "metrics" / "plan.json").read_text())["plan"]
    seeded = sh(["dvc", "exp", "run", "-n", "seed1", "-S", "seed=1", "plan_stats"], dest, env).stdout
    assert {"source", "propose@t1", "plan_stats"} <= _ran(seeded), seeded
    assert not {s for s in _ran(seeded) if s.startswith(("edit", "filter", "assemble"))}, seeded  # targets only
    one = sh(["dvc", "exp", "run", "-n", "only-sd2", "-S", "seed=0", "-S", ONE_GENERATOR, "plan_stats"], dest, env)
    assert "source" not in _ran(one.stdout), one.stdout  # seed 0's source is restored from the run-cache

    exps = _experiments(dest, env)
    assert exps["seed1"]["params"]["seed"] == 1 and exps["only-sd2"]["params"]["seed"] == 0
    assert [g["name"] for g in exps["only-sd2"]["params"]["edit"]["generators"]] == ["sd2"]
    assert set(exps["only-sd2"]["metrics"]["plan"]["per_generator"]) == {"sd2"}
    assert len(base["per_generator"]) > 1
    assert exps["seed1"]["metrics"]["plan"] != base
    table = sh(["dvc", "exp", "show", "--md", "--only-changed"], dest, env).stdout
    assert "seed1" in table and "only-sd2" in table and "plan.n_edits" in table


def test_exp_run_detectors_by_adding_and_removing_keys(project):
    """`-S key={...}` would merge into the existing dict, so `~` removes a detector and `+` adds one.

    crossgen.detector names one of detect.detectors, so removing its detector means choosing another."""
    dest, env = project
    sh(["dvc", "exp", "run", "-n", "segformer-unet", "-S", "~detect.detectors.fcn8s",
        "-S", "~detect.detectors.deeplabv3plus", "-S", "~detect.detectors.upernet",
        "-S", "~detect.detectors.deeplabv3plus_srm",
        "-S", "+detect.detectors.unet={arch:Unet,encoder:resnet18,encoder_weights:null}",
        "-S", "crossgen.detector=segformer", "plan_stats"], dest, env)
    params = _experiments(dest, env)["segformer-unet"]["params"]
    assert params["crossgen"]["detector"] == "segformer"
    detectors = params["detect"]["detectors"]
    assert detectors == {"segformer": {"arch": "Segformer", "encoder": "mit_b0", "encoder_weights": None,
                                       "epochs": 30, "lr": 0.003},
                         "unet": {"arch": "Unet", "encoder": "resnet18", "encoder_weights": None}}
    # The workspace holds the experiment: the pipeline now trains exactly these two, and the schema accepts them.
    stages = sh(["dvc", "stage", "list", "--name-only"], dest, env).stdout.split()
    assert {s for s in stages if s.startswith("train@")} == {"train@segformer", "train@unet"}
    sh(["diffseg", "info"], dest, env)


def test_queued_seed_sweep(project):
    dest, env = project
    sh(["git", "checkout", "--", "params.yaml"], dest, env)  # back to the committed baseline
    queued = sh(["dvc", "exp", "run", "--queue", "-S", "seed=2,3", "plan_stats"], dest, env).stdout
    assert queued.count("Queued experiment") == 2, queued
    sh(["dvc", "queue", "start", "-j", "1"], dest, env)
    deadline = time.monotonic() + 600
    while True:
        status = sh(["dvc", "queue", "status"], dest, env).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") >= 2, status
    swept = {e["params"]["seed"]: e["metrics"] for e in _experiments(dest, env).values()
             if e["params"].get("seed") in (2, 3) and e["metrics"]}
    assert set(swept) == {2, 3} and swept[2] != swept[3], swept
