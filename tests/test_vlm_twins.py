"""The real model code paths on the offline twins (Qwen2.5-VL, Grounding DINO, SAM) and the judge in filter@t.

The twins answer gibberish and box at random: these tests check loading, batching, recording and that
every outcome carries a reason; the decisions themselves are tested on recorded answers.
"""
from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest

from conftest import link_twins
from diffseg import records
from diffseg.edit import stage as edit_stage
from diffseg.twins import stage as twins
from diffseg.errors import UserError
from diffseg.filter import stage as filter_stage
from diffseg.propose import stage as propose_stage
from vlm_fixture import build_scene, candidate, one_turn_params, plan_answer, write_replay

PLAN, EDIT, STATE = (records.turn_dir("t1", kind) for kind in ("plan", "edit", "state"))


@pytest.fixture(scope="module")
def vlm_twins(tmp_path_factory):
    """The vlm twins, written by the twins stage's own code."""
    out = tmp_path_factory.mktemp("vlm_twins") / "twins"
    manifest = twins.run(0, [], out, vlm=True)
    assert list(manifest["folder"]) == ["qwen2_5_vl", "grounding_dino", "sam"]
    return out


@pytest.fixture
def project(workdir, vlm_twins):
    ids = build_scene(workdir, 2)
    link_twins(vlm_twins, workdir)
    return ids


@pytest.fixture(scope="module")
def edited(vlm_twins, twins_dir, tmp_path_factory):
    """A turn planned by the annotations planner and edited by the sd2 twin, once for every judge test."""
    root = tmp_path_factory.mktemp("edited")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        ids = build_scene(root, 4)
        link_twins(vlm_twins, root)
        os.symlink(twins_dir / "sd2", vlm_twins / "sd2")  # the session's generator twin, built once
        p = one_turn_params(root, propose={"planner": "annotations"})
        p.edit.generators[0].steps, p.edit.generators[0].resolution = 1, 128  # any real edit will do
        propose_stage.run(p, "t1", PLAN)
        edit_stage.run(p, "t1", EDIT)
    return root, ids


def _judged(edited, monkeypatch, judge_over: dict):
    """filter@t1 of the edited turn with the judge settings ``judge_over``."""
    root, ids = edited
    monkeypatch.chdir(root)
    p = one_turn_params(root, propose={"planner": "annotations"},
                        filter_={"judge": "vlm", "vlm": {"max_new_tokens": 16, **judge_over}})
    return ids, filter_stage.run(p, "t1", STATE).set_index("image_id")


def test_twins_load_by_the_real_lines(vlm_twins, tmp_path):
    from segment_anything import sam_model_registry
    from transformers import AutoModelForImageTextToText, AutoProcessor, GroundingDinoForObjectDetection

    from diffseg.sam_twin import register_sam_twin
    from diffseg.twins import vlm as vt

    assert type(AutoModelForImageTextToText.from_pretrained(vlm_twins / "qwen2_5_vl")).__name__ == \
        "Qwen2_5_VLForConditionalGeneration"
    assert type(AutoProcessor.from_pretrained(vlm_twins / "qwen2_5_vl")).__name__ == "Qwen2_5_VLProcessor"
    assert GroundingDinoForObjectDetection.from_pretrained(vlm_twins / "grounding_dino").config.d_model == 32
    register_sam_twin()
    sam = sam_model_registry["vit_twin"](checkpoint=str(vlm_twins / "sam" / "sam_vit_twin.pth"))
    assert sam.image_encoder.img_size == 256
    again = tmp_path / "again"
    vt.build_vlm_twins(again, 0)
    for path in (vlm_twins / "qwen2_5_vl" / "model.safetensors", vlm_twins / "grounding_dino" / "model.safetensors"):
        assert path.read_bytes() == (again / path.parent.name / path.name).read_bytes()


def test_planner_on_the_twins_records_every_answer(project, workdir):
    # The twin's answers never parse, so no target reaches the segmenter: Grounded-SAM is the next test's.
    p = one_turn_params(workdir, propose={"vlm": {"fallback": "none", "batch_size": 2, "max_new_tokens": 8},
                                          "grounding": {"segmenter": "annotations"}})
    plan = propose_stage.run(p, "t1", PLAN)
    assert len(plan) == 2 and (plan["reason"].str.len() > 0).all()
    assert set(plan["status"]) <= {"failed", "skipped", "ok"}
    transcript = [json.loads(line) for line in (PLAN / "transcript.jsonl").read_text().splitlines()]
    assert len(transcript) == int(plan["vlm_attempts"].sum()) and {t["attempt"] for t in transcript} <= {0, 1}
    assert all(json.loads(raw) for raw in plan["vlm_answer"])
    # The model's transcript re-plans without the model, to the same manifest.
    (workdir / "kept.jsonl").write_bytes((PLAN / "transcript.jsonl").read_bytes())
    replayed = one_turn_params(workdir, propose={"vlm": {"fallback": "none", "backend": "replay",
                                                         "replay": "kept.jsonl"},
                                                 "grounding": {"segmenter": "annotations"}})
    pd.testing.assert_frame_equal(plan, propose_stage.run(replayed, "t1", PLAN))


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_grounded_sam_twins_on_recorded_answers(project, workdir, threshold):
    answers = {("plan", i, 0): plan_answer(candidate("remove", "the cup")) for i in project}
    replay = write_replay(workdir / "a.jsonl", answers)
    p = one_turn_params(workdir, propose={"vlm": {"backend": "replay", "replay": str(replay), "fallback": "none"},
                                          "grounding": {"box_threshold": threshold, "batch_size": 2}})
    plan = propose_stage.run(p, "t1", PLAN)
    if threshold == 1.0:  # no box can score above 1: grounding finds nothing
        assert (plan["status"] == "skipped").all()
        assert plan["reason"].str.contains("grounding found no 'the cup' above box_threshold 1.0").all()
    else:  # a random box and a random SAM mask: a plan, or the reason the mask was refused
        assert (plan.loc[plan["status"] != "ok", "reason"].str.len() > 0).all()
        ok = plan[plan["status"] == "ok"]
        assert ((ok["grounding_score"] >= 0) & (ok["grounding_score"] <= 1) & (ok["annotation_iou"] >= 0)).all()


def test_judge_on_the_twin(edited, monkeypatch):
    ids, history = _judged(edited, monkeypatch, {"on_failure": "reject", "batch_size": 4, "max_new_tokens": 8})
    judged = history[history["judge_attempts"] > 0]
    assert len(judged) >= 1 and (judged["decision"] == "rejected").all()
    assert judged["reason"].str.startswith("judge answer unusable: answer 1:").all()
    assert (judged["judge_realism"] == -1).all() and judged["judge_answer"].str.len().gt(0).all()
    lines = (STATE / "judge_transcript.jsonl").read_text().splitlines()
    assert len(lines) == int(judged["judge_attempts"].sum())
    source = records.StateDir("data/source")
    for image_id in judged.index:
        assert records.StateDir(STATE).image_path(image_id).read_bytes() == source.image_path(image_id).read_bytes()


def test_judge_decisions_on_recorded_answers(edited, monkeypatch):
    root, ids = edited

    def verdict(realism: int, instruction: int) -> str:
        return json.dumps({"realism": realism, "instruction_following": instruction,
                           "reason": f"scores {realism} {instruction}"})

    answers = {("judge", ids[0], 0): verdict(5, 4), ("judge", ids[1], 0): verdict(2, 5),
               ("judge", ids[2], 0): "Looks fine!", ("judge", ids[2], 1): verdict(3, 3),
               ("judge", ids[3], 0): "{", ("judge", ids[3], 1): '{"realism": 9}'}
    replay = write_replay(root / "judge.jsonl", answers)
    _, history = _judged(edited, monkeypatch, {"backend": "replay", "replay": str(replay), "on_failure": "reject"})
    edit, source = records.StateDir(EDIT), records.StateDir("data/source")
    expected = {ids[0]: ("accepted", "passed heuristics and judge (realism 5, instruction 4)"),
                ids[1]: ("rejected", "judge: realism 2 < 3 (scores 2 5)"),
                ids[2]: ("accepted", "passed heuristics and judge (realism 3, instruction 3)"),
                ids[3]: ("rejected", "judge answer unusable: answer 1: not valid JSON")}
    assert (history["judge_attempts"] > 0).all()  # every twin edit passed the heuristics (fixed seeds)
    for image_id, (decision, reason) in expected.items():
        row = history.loc[image_id]
        assert row["decision"] == decision and row["reason"].startswith(reason), row["reason"]
        chosen = edit if decision == "accepted" else source
        assert records.StateDir(STATE).image_path(image_id).read_bytes() == chosen.image_path(image_id).read_bytes()
    assert history.loc[ids[2], "judge_attempts"] == 2 and history.loc[ids[2], "judge_realism"] == 3
    assert "missing key 'instruction_following'" in history.loc[ids[3], "reason"]


def test_hub_model_offline_fails_fast_before_work(project, workdir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = one_turn_params(workdir, propose={"vlm": {"model": "Qwen/Qwen2.5-VL-7B-Instruct"}})
    started = time.perf_counter()
    with pytest.raises(UserError, match="huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct"):
        propose_stage.run(p, "t1", PLAN)
    assert time.perf_counter() - started < 10 and not PLAN.exists()
