"""The vlm planner's logic on recorded answers (replay backend) with the annotation masks as segmenter.

The replay backend and the ``annotations`` segmenter are real backends of the stage (a user re-plans
from a transcript, or plans with a VLM but keeps COCO's masks), so these tests run the stage's own code
from answer text to plan manifest, masks, transcript and the annotation-quality table.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from diffseg import masks, records
from diffseg.params import ParamsError
from diffseg.propose import annotation_quality
from diffseg.propose import stage as propose_stage
from diffseg.propose.annotations import plan_image
from vlm_fixture import (CUP, add_empty_instance, build_scene, candidate, one_turn_params, plan_answer,
                         write_replay)

PLAN = records.turn_dir("t1", "plan")


def _oracle(workdir, answers, **propose):
    replay = write_replay(workdir / "answers.jsonl", answers)
    over = {"vlm": {"backend": "replay", "replay": str(replay), "fallback": "none"},
            "grounding": {"segmenter": "annotations"}, **propose}
    return one_turn_params(workdir, propose=over)


def _cup_mask(image_id: str) -> np.ndarray:
    coco = records.StateDir("data/source").annotations()
    ann = next(a for a in coco["annotations"] if f"{a['image_id']:012d}" == image_id and a["category_id"] == CUP)
    return masks.rle_decode(ann["segmentation"])


def test_recorded_answers_give_plans_or_reasons(workdir):
    ids = build_scene(workdir, 11, extras={6: ["wall"], 7: ["dog"]})
    add_empty_instance(workdir, ids[4])
    remove_cup = plan_answer(candidate("remove", "the white cup"))
    answers = {
        ("plan", ids[0], 0): remove_cup,  # valid
        ("plan", ids[1], 0): remove_cup[:-5], ("plan", ids[1], 1): remove_cup,  # malformed, then corrected
        ("plan", ids[2], 0): json.dumps({"edits": []}), ("plan", ids[2], 1): json.dumps([1, 2]),  # wrong schema twice
        ("plan", ids[3], 0): plan_answer(candidate("remove", "the giraffe"), candidate("change", "the cup")),
        ("plan", ids[4], 0): plan_answer(candidate("remove", "the kite")),  # empty mask
        ("plan", ids[5], 0): plan_answer(candidate("change", "the wall")),  # the whole image
        ("plan", ids[6], 0): plan_answer(candidate("remove", "the dog")),  # too large an area
        ("plan", ids[7], 0): plan_answer(candidate("add", "a red umbrella", box=[100, 20, 180, 120])),
        ("plan", ids[8], 0): plan_answer(candidate("add", "a small robot")),  # free region, unknown category
        ("plan", ids[9], 0): plan_answer(candidate("remove", "the giraffe")),  # grounding finds nothing
        # ids[10]: nothing recorded
    }
    p = _oracle(workdir, answers)
    plan = propose_stage.run(p, "t1", PLAN).set_index("image_id")
    plan_dir = records.PlanDir(PLAN)

    row = plan.loc[ids[0]]
    assert (row["status"], row["action"], row["target"], row["planner"]) == ("ok", "remove", "the white cup", "vlm")
    assert row["prompt"] == "remove the white cup, photorealistic" and row["annotation_iou"] == 1.0
    assert row["ann_id"] == row["iou_ann_id"] == 1001 and row["category_id"] == CUP
    assert np.array_equal(plan_dir.mask(ids[0]), masks.dilate(_cup_mask(ids[0]), p.propose.mask_dilation))
    assert row["generator"] == "sd2" and row["seed"] >= 0 and row["reason"] == ""

    assert plan.loc[ids[1], "status"] == "ok" and plan.loc[ids[1], "vlm_attempts"] == 2
    assert "answer 1: not valid JSON" in plan.loc[ids[1], "vlm_reason"]
    assert plan.loc[ids[2], "status"] == "failed"
    assert "unknown top-level key 'edits'" in plan.loc[ids[2], "reason"]
    assert "must be a JSON object with 'candidates', got list" in plan.loc[ids[2], "reason"]
    assert plan.loc[ids[3], "status"] == "ok" and plan.loc[ids[3], "vlm_candidate"] == 2
    assert "candidate 1 (remove 'the giraffe'): no annotated instance" in plan.loc[ids[3], "vlm_reason"]
    assert "empty mask" in plan.loc[ids[4], "reason"] and plan.loc[ids[4], "status"] == "skipped"
    assert "covers the whole image" in plan.loc[ids[5], "reason"]
    assert "mask area 0.6" in plan.loc[ids[6], "reason"]

    add = plan.loc[ids[7]]
    assert add["status"] == "ok" and add["category_id"] == 28 and json.loads(add["box"]) == [100, 20, 180, 120]
    mask = plan_dir.mask(ids[7])
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (100, 179, 20, 119)  # the ellipse inscribed in the box
    assert plan.loc[ids[8], "status"] == "ok" and plan.loc[ids[8], "category_id"] == -1
    assert plan.loc[ids[9], "status"] == "skipped" and "no annotated instance is a 'the giraffe'" in plan.loc[
        ids[9], "reason"]
    assert plan.loc[ids[10], "status"] == "failed" and "replay: no recorded answer" in plan.loc[ids[10], "reason"]

    assert (plan.loc[plan["status"] != "ok", "reason"].str.len() > 0).all()
    assert not any((PLAN / "masks" / f"{i}.png").exists() for i in plan.index[plan["status"] != "ok"])
    transcript = [json.loads(line) for line in (PLAN / "transcript.jsonl").read_text().splitlines()]
    assert len(transcript) == 10 + 2 + 2 and {t["role"] for t in transcript} == {"plan"}


def test_transcript_replays_to_the_same_plan(workdir):
    ids = build_scene(workdir, 3)
    answers = {("plan", ids[0], 0): plan_answer(candidate("remove", "cup")), ("plan", ids[1], 0): "no",
               ("plan", ids[1], 1): plan_answer(candidate("add", "a cat"))}
    first = propose_stage.run(_oracle(workdir, answers), "t1", PLAN)
    (workdir / "kept.jsonl").write_bytes((PLAN / "transcript.jsonl").read_bytes())
    p = one_turn_params(workdir, propose={"vlm": {"backend": "replay", "replay": "kept.jsonl", "fallback": "none"},
                                          "grounding": {"segmenter": "annotations"}})
    again = propose_stage.run(p, "t1", PLAN)
    pd.testing.assert_frame_equal(first, again)


def test_fallback_plans_like_the_annotations_planner(workdir):
    ids = build_scene(workdir, 2)
    p = _oracle(workdir, {("plan", ids[0], 0): "gibberish", ("plan", ids[0], 1): "{"})
    p.propose.vlm.fallback = "annotations"
    plan = propose_stage.run(p, "t1", PLAN).set_index("image_id")
    coco = records.StateDir("data/source").annotations()
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    for image_id in ids:
        row = plan.loc[image_id]
        assert row["planner"] == "annotations" and row["status"] == "ok"
        assert row["reason"].startswith("vlm: ") and "planned by the annotations planner" in row["reason"]
        anns = [a for a in coco["annotations"] if f"{a['image_id']:012d}" == image_id]
        caption = f"A cup on a table, picture {int(image_id)}."
        expected = plan_image(p, image_id, 1, (168, 224), anns, categories, caption)
        assert (row["action"], row["prompt"], row["generator"], row["seed"]) == (
            expected.action, expected.fields["prompt"], expected.fields["generator"], expected.fields["seed"])
    assert "answer 1: not valid JSON" in plan.loc[ids[0], "reason"]
    assert "replay: no recorded answer" in plan.loc[ids[1], "reason"]


def test_annotation_quality_with_an_oracle_segmenter(workdir):
    ids = build_scene(workdir, 4)
    answers = {("plan", ids[0], 0): plan_answer(candidate("remove", "the cup")),
               ("plan", ids[1], 0): plan_answer(candidate("change", "two cups")),
               ("plan", ids[2], 0): plan_answer(candidate("add", "a dog")),  # an add measures nothing
               ("plan", ids[3], 0): "not json"}
    p = _oracle(workdir, answers)
    turns = workdir / "metrics" / "annotation_quality"
    propose_stage.run(p, "t1", PLAN, turns / "t1.json")
    summary = annotation_quality.run(p, turns, workdir / "metrics" / "aq.json", workdir / "metrics" / "aq.md")
    total = summary["total"]
    assert (total["n_planned"], total["n"], total["mean_iou"], total["n_iou_75"]) == (3, 2, 1.0, 2)
    assert summary["by_category"]["cup"]["mean_iou"] == 1.0
    table = (workdir / "metrics" / "aq.md").read_text()
    assert "| t1 | vlm | annotations | 3 | 2 | 1.000 | 100% | 100% |" in table
    assert "| cup | 2 | 1.000 | 100% | 100% |" in table
    assert records.read_json(workdir / "metrics" / "aq.json") == summary


def test_annotations_planner_is_unchanged(workdir):
    build_scene(workdir, 3)
    p = one_turn_params(workdir, propose={"planner": "annotations"})
    turns = workdir / "metrics" / "annotation_quality"
    plan = propose_stage.run(p, "t1", PLAN, turns / "t1.json")
    assert list(plan.columns) == propose_stage._COLUMNS and (plan["planner"] == "annotations").all()
    assert not (PLAN / "transcript.jsonl").exists()
    summary = records.read_json(turns / "t1.json")
    assert summary["n"] == 0 and summary["mean_iou"] is None and summary["n_planned"] == 3


@pytest.mark.parametrize("section, override, key", [
    ("propose", {"planner": "llm"}, "propose.planner"),
    ("propose", {"vlm": {"backend": "replay"}}, "propose.vlm.replay"),
    ("propose", {"vlm": {"n_candidates": 0}}, "propose.vlm.n_candidates"),
    ("propose", {"vlm": {"fallback": "random"}}, "propose.vlm.fallback"),
    ("propose", {"grounding": {"box_threshold": 2.0}}, "propose.grounding.box_threshold"),
    ("propose", {"grounding": {"segmenter": "sam2"}}, "propose.grounding.segmenter"),
    ("filter", {"judge": "gpt"}, "filter.judge"),
    ("filter", {"vlm": {"min_realism": 6}}, "filter.vlm.min_realism"),
    ("filter", {"vlm": {"on_failure": "maybe"}}, "filter.vlm.on_failure"),
    ("filter", {"vlm": {"batch_size": 0}}, "filter.vlm.batch_size"),
])
def test_bad_vlm_params_name_the_key(tmp_path, section, override, key):
    with pytest.raises(ParamsError) as err:
        one_turn_params(tmp_path, **{"propose" if section == "propose" else "filter_": override})
    assert key in str(err.value)
