"""The recorded-answer corpus (tests/data/vlm_answers.jsonl): valid answers parse exactly, the rest are refused
with a reason, none crashes: through the parsers, and through the planner stage and the judge's decision."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from diffseg import records
from diffseg.filter import judge
from diffseg.vlm import answers, backends
from diffseg.propose import stage as propose_stage
from vlm_fixture import build_scene, one_turn_params, write_replay

DATA = Path(__file__).parent / "data"


def _generator():
    spec = importlib.util.spec_from_file_location("make_vlm_answers", DATA / "make_vlm_answers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
CORPUS = [json.loads(line) for line in (DATA / "vlm_answers.jsonl").read_text().splitlines()]
PLANS = [c for c in CORPUS if c["kind"] == "plan"]
CONTEXT = (set(GEN.CONTEXT["actions"]), GEN.CONTEXT["n_max"], tuple(GEN.CONTEXT["size"]))


def test_corpus_is_current_and_large_enough():
    assert (DATA / "vlm_answers.jsonl").read_text() == GEN.render()
    assert sum(not c["valid"] for c in CORPUS) >= 100
    assert len({c["id"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("entry", PLANS, ids=[c["id"] for c in PLANS])
def test_plan_answers(entry):
    found, problems = answers.parse_plan(entry["answer"], *CONTEXT)
    if entry["valid"]:
        assert [dataclasses.asdict(c) | {"box": list(c.box) if c.box else None} for c in found] == entry["expect"]
    else:
        assert found == []
    if "problem" in entry:
        assert problems and any(entry["problem"] in p for p in problems), problems
    else:
        assert problems == []


@pytest.fixture(scope="module")
def judge_params(tmp_path_factory):
    return one_turn_params(tmp_path_factory.mktemp("judge"), filter_={"judge": "vlm", "vlm": {"on_failure": "reject"}})


@pytest.mark.parametrize("entry", [c for c in CORPUS if c["kind"] == "judge"],
                         ids=[c["id"] for c in CORPUS if c["kind"] == "judge"])
def test_judge_answers(entry, tmp_path, judge_params):
    params = judge_params
    # Both attempts get the recorded answer; the judge's decision carries the scores or the reason.
    replay = backends.Replay(write_replay(tmp_path / "a.jsonl", {("judge", "x", 0): entry["answer"],
                                                            ("judge", "x", 1): entry["answer"]}), "filter.vlm")
    request = backends.Request("judge", "x", "t1", [], [])
    exchange = backends.ask(replay, [request], lambda _, text: judge.parse_verdict(text))[0]
    result = judge.outcome(exchange, params)
    if entry["valid"]:
        assert dataclasses.asdict(exchange.parsed) == entry["expect"] and exchange.ok
        assert (result["judge_realism"], result["judge_instruction"]) == (entry["expect"]["realism"],
                                                                          entry["expect"]["instruction"])
    else:
        assert not exchange.ok and len(exchange.answers) == 2
        assert entry["problem"] in result["reason"] and result["accepted"] is False
        assert result["judge_answer"] and result["judge_realism"] == -1


def test_every_plan_answer_through_the_planner_stage(workdir):
    """One image per corpus answer (both attempts): no crash, a plan or a reason for every image."""
    ids = build_scene(workdir, len(PLANS), size=tuple(GEN.CONTEXT["size"]))
    recorded = {}
    for image_id, entry in zip(ids, PLANS):
        recorded[("plan", image_id, 0)] = recorded[("plan", image_id, 1)] = entry["answer"]
    replay = write_replay(workdir / "corpus.jsonl", recorded)
    p = one_turn_params(workdir, propose={"vlm": {"backend": "replay", "replay": str(replay), "fallback": "none",
                                                  "max_pixels": 224 * 168},
                                          "grounding": {"segmenter": "annotations"}})
    plan = propose_stage.run(p, "t1", records.turn_dir("t1", "plan")).set_index("image_id")
    for image_id, entry in zip(ids, PLANS):
        row = plan.loc[image_id]
        if not entry["valid"]:
            assert row["status"] == "failed" and entry["problem"] in row["reason"], (entry["id"], row["reason"])
            assert row["vlm_attempts"] == 2
        elif row["status"] == "ok":
            chosen = next(c for c in entry["expect"] if c["index"] == row["vlm_candidate"] - 1)
            assert (row["action"], row["target"], row["prompt"]) == (chosen["action"], chosen["target"],
                                                                     chosen["prompt"])
        else:
            assert row["status"] == "skipped" and row["reason"].startswith("vlm: candidate"), entry["id"]
        if "problem" in entry:
            assert entry["problem"] in row["vlm_reason"], entry["id"]
    assert (plan.loc[plan["status"] != "ok", "reason"].str.len() > 0).all()
    assert (plan["status"] == "ok").sum() > 0
