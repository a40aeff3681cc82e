"""Retry rounds (``turns`` entries ``t<k>_retry<n>``): the params chain, the planner's new attempts and (slow) an
offline run whose strict filter rejects a fair share, with and without retries."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.dataset import assemble
from diffseg.edit import stage as edit_stage
from diffseg.filter import stage as filter_stage
from diffseg.propose import retry
from diffseg.propose import stage as propose_stage
from diffseg.propose.annotations import plan_image
from diffseg.source import stage as source_stage
from diffseg.twins import stage as twins


def retry_turns(n_turns: int, n_retries: int) -> tuple[dict, str]:
    """``turns`` with ``n_retries`` rounds after each of ``n_turns`` turns, and its final state."""
    turns, prev = {}, "data/source"
    for k in range(1, n_turns + 1):
        for name in [f"t{k}"] + [f"t{k}_retry{n}" for n in range(1, n_retries + 1)]:
            turns[name] = {"prev": prev, **({"retry": f"t{k}"} if name != f"t{k}" else {})}
            prev = f"data/turns/{name}/state"
    return turns, prev


def _load(tmp_path: Path, turns: dict, final_state: str, **overrides) -> params_mod.Params:
    path = write_params(tmp_path, overrides)
    data = yaml.safe_load(path.read_text())
    data["turns"], data["final_state"] = turns, final_state  # replaced, not merged into the profile's turns
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return params_mod.load(path)


# ------------------------------------------------------------------ params
def test_retry_rounds_chain_and_name_their_turn_and_attempt(tmp_path):
    turns, final = retry_turns(3, 2)
    p = _load(tmp_path, turns, final)
    assert p.base_turns == ["t1", "t2", "t3"] and len(p.turn_names) == 9 and p.retries
    assert [p.turn_of(t) for t in ("t1", "t1_retry2", "t2_retry1", "t3")] == [
        ("t1", 1, 1), ("t1", 1, 3), ("t2", 2, 2), ("t3", 3, 1)]
    assert p.max_attempts("t2") == 3
    assert not params_mod.load(write_params(tmp_path)).retries  # the offline profile has none


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update(t1_retry1=dict(t["t1_retry1"], retry="t2")),
     "key 'turns.t1_retry1.retry': a retry round follows the turn it retries (or that turn's earlier rounds): "
     "expected t1, got 't2'"),
    (lambda t: t.update(t1_retry1=dict(t["t1_retry1"], prev="data/source")),
     "key 'turns.t1_retry1.prev': must be 'data/turns/t1/state', got 'data/source'"),
    (lambda t: t.update(t2=dict(t["t2"], prev="data/turns/t1/state")),
     "key 'turns.t2.prev': must be 'data/turns/t1_retry1/state', got 'data/turns/t1/state'"),
])
def test_a_broken_retry_chain_names_the_key(tmp_path, edit, message):
    turns, final = retry_turns(2, 1)
    edit(turns)
    with pytest.raises(params_mod.ParamsError, match="params.yaml: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        _load(tmp_path, turns, final, propose={"turn_weights": [0.5, 0.25, 0.25]})


def test_a_misnamed_or_leading_retry_round_names_the_key(tmp_path):
    misnamed = {"t1": {"prev": "data/source"}, "t1_retry2": {"prev": "data/turns/t1/state", "retry": "t1"}}
    with pytest.raises(params_mod.ParamsError, match="key 'turns.t1_retry2': retry round 1 of t1 must be named "
                                                     "'t1_retry1'"):
        _load(tmp_path, misnamed, "data/turns/t1_retry2/state", propose={"turn_weights": [0.5, 0.5]})
    leading = {"t1_retry1": {"prev": "data/source", "retry": "t1"}}
    with pytest.raises(params_mod.ParamsError, match="key 'turns.t1_retry1.retry': .* expected a turn before it"):
        _load(tmp_path, leading, "data/turns/t1_retry1/state", propose={"turn_weights": [0.5, 0.5]})
    # turn_weights count the turns proper: two turns with a retry round each need three weights
    turns, final = retry_turns(2, 1)
    with pytest.raises(params_mod.ParamsError, match="key 'propose.turn_weights': needs one weight per turn count "
                                                     "0..2 \\(3 values\\), got 5"):
        _load(tmp_path, turns, final, propose={"turn_weights": [0.2] * 5})


# ------------------------------------------------------------------ the planner's new attempt
def _square(ann_id: int, x0: int) -> dict:
    from diffseg import masks

    mask = np.zeros((64, 64), bool)
    mask[8:28, x0:x0 + 20] = True
    return {"id": ann_id, "category_id": 18, "segmentation": masks.rle_encode(mask)}


def test_a_new_attempt_draws_anew_and_targets_another_instance(tmp_path):
    p = _load(tmp_path, *retry_turns(1, 2), propose={"turn_weights": [0.0, 1.0],
                                                     "action_weights": {"add": 0.0, "remove": 1.0, "change": 0.0}})
    anns = [_square(101, 4), _square(102, 36)]

    def plan(attempt=1, avoid=frozenset()):
        return plan_image(p, "000000000007", 1, (64, 64), anns, {18: "dog"}, "a dog", attempt, avoid)

    first = plan()
    assert first.fields == plan_image(p, "000000000007", 1, (64, 64), anns, {18: "dog"}, "a dog").fields
    tried = first.fields["ann_id"]
    for attempt in (2, 3):
        again = plan(attempt, frozenset({tried}))
        assert again.fields["ann_id"] == ({101, 102} - {tried}).pop()  # the other instance, every time
        assert again.fields["seed"] != first.fields["seed"]
    assert plan(2, frozenset({101, 102})).fields["ann_id"] in {101, 102}  # none left untried: any of them
    assert len({plan(a).fields["seed"] for a in (1, 2, 3)}) == 3


def test_which_images_a_retry_round_takes():
    rows = [{"attempt": 1, "decision": "rejected", "action": "remove", "target": "dog", "ann_id": 5},
            {"attempt": 2, "decision": "none", "action": "none", "target": "", "ann_id": -1}]
    assert retry.why_not(rows, budget=2, turn_index=1) == ""
    assert retry.why_not(rows, budget=0, turn_index=1) == "image gets 0 edit(s)"
    assert retry.why_not(rows + [dict(rows[0], attempt=3, decision="accepted")], 2, 1) == "edit accepted in attempt 3"
    assert retry.tried_targets(rows) == {("remove", "dog")} and retry.tried_instances(rows) == {5}


# ------------------------------------------------------------------ end to end, offline
MIN_CHANGE = 70.0  # the twins' edits change their masks by 35 to 170 levels, half of them by less than 72


def _run(folder: Path, shared: Path, turns: dict, final: str) -> params_mod.Params:
    """Every per-turn stage and assemble in ``folder`` (the working directory), on the shared source and twin."""
    folder.mkdir()
    os.chdir(folder)
    shutil.copytree(shared / "data" / "source", folder / "data" / "source")
    (folder / "models").mkdir()
    os.symlink(shared / "models" / "twins", folder / "models" / "twins")
    p = _load(folder, turns, final, **_OVERRIDES)
    for turn in p.turn_names:
        propose_stage.run(p, turn, records.turn_dir(turn, "plan"))
        edit_stage.run(p, turn, records.turn_dir(turn, "edit"))
        filter_stage.run(p, turn, records.turn_dir(turn, "state"))
    assemble.run(p, records.DATASET_DIR, folder / "metrics" / "dataset.json", folder / "metrics" / "dataset_plots")
    return p


_OVERRIDES = {
    "source": {"kind": "offline", "min_side": 32, "max_side": 64, "offline": {"n_crops": 2, "n_procedural": 6,
                                                                              "size": 64}},
    "propose": {"turn_weights": [0.2, 0.4, 0.4]},
    "edit": {"generators": [{"name": "sd2", "family": "sd2", "model": "models/twins/sd2", "steps": 2, "guidance": 1.0,
                             "resolution": 64}]},
    "filter": {"min_change": MIN_CHANGE},
    "crossgen": {"held_out": [], "unseen": []},
    "assemble": {"n_figure": 4},
}


def _check_contracts(root: Path, p: params_mod.Params) -> pd.DataFrame:
    """Composites, labels, turn masks, splits and provenance of a finished run in ``root``; its metadata."""
    data = records.StateDir(root / records.DATASET_DIR)
    meta = pd.read_parquet(data.root / "metadata.parquet")
    manifest = data.manifest()
    assert manifest.groupby("source_id")["split"].nunique().max() == 1
    for row in meta[meta["decision"] == "accepted"].itertuples():
        stage = row.turn if getattr(row, "attempt", 1) == 1 else f"{row.turn}_retry{row.attempt - 1}"
        before = records.StateDir(root / p.turns[stage].prev).image(row.image_id)
        after = records.StateDir(root / records.turn_dir(stage, "state")).image(row.image_id)
        mask = records.PlanDir(root / records.turn_dir(stage, "plan")).mask(row.image_id)
        assert np.array_equal(before[~mask], after[~mask]) and not np.array_equal(before[mask], after[mask])
    for image_id in manifest["image_id"]:
        label = records.read_gray(data.label_path(image_id))
        turnmask = records.read_gray(data.turnmask_path(image_id))
        assert np.array_equal(label > 0, turnmask > 0) and label.max() <= 1
        mine = meta[(meta["image_id"] == image_id) & (meta["decision"] == "accepted")]
        for k, turn in enumerate(p.base_turns, start=1):
            # bit k-1 is exactly the mask of turn k's accepted attempt, whichever round made it
            accepted = mine[mine["turn"] == turn]
            expected = np.zeros(label.shape, bool)
            if len(accepted):
                attempt = int(getattr(accepted.iloc[0], "attempt", 1))
                stage = turn if attempt == 1 else f"{turn}_retry{attempt - 1}"
                expected = records.PlanDir(root / records.turn_dir(stage, "plan")).mask(image_id)
            assert np.array_equal((turnmask >> (k - 1)) & 1 == 1, expected), (image_id, turn)
    return meta


@pytest.mark.slow  # the offline source (16 images), the sd2 twin, two turns with two retry rounds each, and again
def test_retry_rounds_reach_more_edited_images_and_keep_every_attempt(tmp_path):
    cwd = os.getcwd()
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        os.chdir(shared)
        twins.run(0, ["sd2"], shared / "models" / "twins")
        source_stage.run(_load(shared, *retry_turns(2, 0), **_OVERRIDES), records.SOURCE_DIR)
        plain = _run(tmp_path / "plain", shared, *retry_turns(2, 0))
        retried = _run(tmp_path / "retried", shared, *retry_turns(2, 2))
    finally:
        os.chdir(cwd)
    root_plain, root = tmp_path / "plain", tmp_path / "retried"
    stats_plain = records.read_json(root_plain / records.DATASET_DIR / "stats.json")
    stats = records.read_json(root / records.DATASET_DIR / "stats.json")
    meta = _check_contracts(root, retried)
    meta_plain = _check_contracts(root_plain, plain)
    a = stats["attempts"]
    print(f"\nwithout retries: {stats_plain['n_edited_images']} of {stats_plain['n_images']} images edited "
          f"({stats_plain['n_edited_images'] / a['n_target_images']:.4f} of the target), "
          f"{stats_plain['n_edits']} edits accepted, acceptance rate {stats_plain['acceptance_rate']}\n"
          f"with two retry rounds per turn: {a['n_edited_images']} of {stats['n_images']} images edited "
          f"(target {a['n_target_images']}: {a['edited_share_of_target']} of it), {a['n_accepted_edits']} of "
          f"{a['n_planned_edits']} planned edits accepted, {a['n_edit_attempts']} edit attempts, rejection rate "
          f"{a['rejection_rate']}, accepted by attempt {a['accepted_by_attempt']}")

    # Off: the history has no new column and stats.json no new block. Attempt 1 is the run without retries.
    assert "attempt" not in meta_plain.columns and "planned_turns" not in meta_plain.columns
    assert "attempts" not in stats_plain
    for kind in ("plan", "edit"):
        for path in sorted((root_plain / records.turn_dir("t1", kind)).rglob("*")):
            twin = root / path.relative_to(root_plain)
            assert path.is_dir() or twin.read_bytes() == path.read_bytes(), path
    assert 0.25 <= 1 - stats_plain["acceptance_rate"] <= 0.75  # the strict filter rejects a fair share

    # The retries reach more edited images and more of the planned edits.
    assert a["n_target_images"] == stats["n_images"] - (meta.groupby("image_id")["planned_turns"].first() == 0).sum()
    assert a["n_edited_images"] > stats_plain["n_edited_images"] and a["n_accepted_edits"] > stats_plain["n_edits"]
    plain_share = stats_plain["n_edited_images"] / a["n_target_images"]  # the same images are planned in both runs
    assert a["edited_share_of_target"] >= plain_share + 0.1 and a["edited_share_of_target"] >= 0.85
    assert sum(a["accepted_by_attempt"].values()) == a["n_accepted_edits"] == stats["n_edits"]
    assert a["accepted_by_attempt"]["2"] > 0 and a["accepted_by_attempt"]["3"] > 0
    assert metrics_of(root)["edited_share_of_target"] == a["edited_share_of_target"]

    # Every attempt is in the provenance: attempts 1..k of a turn, only the last may be accepted, each with its
    # own seed, and every image a round retried has its row.
    for (image_id, turn), rows in meta.groupby(["image_id", "turn"]):
        assert list(rows["attempt"]) == list(range(1, len(rows) + 1))
        assert (rows["decision"].iloc[:-1] != "accepted").all()
        planned = rows[rows["action"] != "none"]
        assert planned["seed"].is_unique and (rows["reason"] != "").all()
    for stage in retried.turn_names:
        turn, _, attempt = retried.turn_of(stage)
        if attempt == 1:
            continue
        plan = pd.read_parquet(root / records.turn_dir(stage, "plan") / records.MANIFEST)
        tried = plan[plan["attempt"] == attempt]
        found = meta[(meta["turn"] == turn) & (meta["attempt"] == attempt)]
        assert sorted(tried["image_id"]) == sorted(found["image_id"]) and len(tried) > 0
        # the images a round passes through keep their bytes
        prev, state = records.StateDir(root / retried.turns[stage].prev), records.StateDir(
            root / records.turn_dir(stage, "state"))
        for image_id in plan.loc[plan["attempt"] == retry.NOT_RETRIED, "image_id"]:
            for path_of in ("image_path", "label_path", "turnmask_path"):
                before, after = getattr(prev, path_of)(image_id), getattr(state, path_of)(image_id)
                assert before.is_file() == after.is_file()
                assert not before.is_file() or before.read_bytes() == after.read_bytes()
    card = (root / records.DATASET_DIR / "README.md").read_text()
    assert f"edited images: {a['n_edited_images']} ({a['edited_share']} of all images)" in card


def metrics_of(root: Path) -> dict:
    return records.read_json(root / "metrics" / "dataset.json")["dataset"]


def test_attempt_statistics_by_hand():
    # Image a: planned 1 edit, rejected then accepted in attempt 2. Image b: planned 2 edits; t1 accepted at once,
    # t2 rejected three times (once as a failed edit), then no plan. Image c: planned none.
    rows = [("a", 1, 1, 1, "add", "rejected"), ("a", 1, 2, 1, "remove", "accepted"),
            ("a", 2, 1, 1, "none", "none"),
            ("b", 1, 1, 2, "change", "accepted"),
            ("b", 2, 1, 2, "add", "rejected"), ("b", 2, 2, 2, "add", "rejected"), ("b", 2, 3, 2, "none", "none"),
            ("c", 1, 1, 0, "none", "none"), ("c", 2, 1, 0, "none", "none")]
    meta = pd.DataFrame(rows, columns=["image_id", "turn_index", "attempt", "planned_turns", "action", "decision"])
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "n_edits": [1, 1, 0]})
    assert assemble.attempt_statistics(images, meta, {"t1": 3, "t2": 3}) == {
        "max_attempts": {"t1": 3, "t2": 3}, "n_attempts": 6, "n_edit_attempts": 5, "rejection_rate": 0.6,
        "accepted_by_attempt": {"1": 1, "2": 1, "3": 0}, "n_planned_edits": 3, "n_accepted_edits": 2,
        "accepted_share_of_planned_edits": 0.6667, "n_target_images": 2, "n_edited_images": 2,
        "target_share": 0.6667, "edited_share": 0.6667, "edited_share_of_target": 1.0}


def test_a_vlm_retry_round_tries_the_next_candidate(workdir):
    from vlm_fixture import build_scene, candidate, plan_answer, write_replay

    ids = build_scene(workdir, 2)
    turns = {"t1": {"prev": "data/source"}, "t1_retry1": {"prev": "data/turns/t1/state", "retry": "t1"}}
    answer = plan_answer(candidate("remove", "the cup"), candidate("change", "the cup"))
    replay = write_replay(workdir / "answers.jsonl", {("plan", i, 0): answer for i in ids}, turn="t1_retry1")
    p = _load(workdir, turns, "data/turns/t1_retry1/state", max_item_failure=1.0,
              propose={"planner": "vlm", "turn_weights": [0.0, 1.0],
                       "vlm": {"backend": "replay", "replay": str(replay), "fallback": "none"},
                       "grounding": {"segmenter": "annotations"}})
    # The state after t1 by hand: the first image's removal was rejected, the second image's accepted.
    state = records.fresh_dir(records.turn_dir("t1", "state"))
    shutil.copytree("data/source", state, dirs_exist_ok=True)
    tried = {"turn": "t1", "turn_index": 1, "attempt": 1, "planned_turns": 1, "action": "remove",
             "target": "the cup", "ann_id": 1001, "reason": ""}
    records.write_table(state / records.HISTORY, pd.DataFrame([
        {"image_id": ids[0], **tried, "decision": "rejected"}, {"image_id": ids[1], **tried, "decision": "accepted"}]))

    plan = propose_stage.run(p, "t1_retry1", records.turn_dir("t1_retry1", "plan")).set_index("image_id")
    assert list(plan.loc[ids[0], ["turn", "turn_index", "attempt", "status", "action", "target", "vlm_candidate"]]) \
        == ["t1", 1, 2, "ok", "change", "the cup", 2]  # the removal was tried: the answer's next candidate
    assert list(plan.loc[ids[1], ["attempt", "status", "reason"]]) == [0, "skipped", "edit accepted in attempt 1"]
