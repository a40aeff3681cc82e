"""The ``openai`` VLM backend against a local OpenAI-compatible stub server (tests/openai_stub.py).

The stub answers from a recorded transcript, keyed by the ``X-Request-Key`` header the backend sends, with
fault switches for slow, malformed, refused, throttled and vanishing servers. The backend is the one the
planner and the judge get from ``backends.create``; the last tests run the real planner through it.
"""
from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffseg import records
from diffseg.errors import UserError
from diffseg.filter.judge import parse_verdict
from diffseg.params import VLM, ParamsError
from diffseg.propose import stage as propose_stage
from diffseg.vlm import backends, served
from openai_stub import ChatServer
from vlm_fixture import build_scene, candidate, one_turn_params, plan_answer, write_replay

KEY = "propose.vlm"
VERDICT = json.dumps({"realism": 4, "instruction_following": 5, "reason": "The cup is gone cleanly."})
REFUSAL = "I'm sorry, but I can't help with judging this image."


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(served, "BACKOFF_S", 0.05)


def _requests(n: int, role: str = "judge") -> list[backends.Request]:
    out = []
    for i in range(n):
        image = Image.fromarray(np.full((30 + i, 40, 3), (10 * i, 100, 200), np.uint8))
        content = [{"type": "image"}, {"type": "text", "text": f"Question {i}"}]
        out.append(backends.Request(role, f"{i:012d}", "t1", [{"role": "user", "content": content}], [image]))
    return out


def _lines(answers: dict[int, str], role: str = "judge") -> list[dict]:
    return [{"role": role, "image_id": f"{i:012d}", "turn": "t1", "attempt": 0, "answer": text, "error": ""}
            for i, text in answers.items()]


def _backend(server: ChatServer, **over) -> backends.ServedVLM:
    cfg = VLM(**{"backend": "openai", "model": "served-vlm", "endpoint": server.url, "batch_size": 8,
                 "concurrency": 4, "timeout_s": 5.0, "retries": 2, "max_new_tokens": 64, **over})
    cfg.check(KEY)
    backend = backends.create(cfg, KEY)
    backend.load()
    return backend


def _key(i: int, attempt: int = 0) -> tuple:
    return "judge", f"{i:012d}", "t1", attempt


def test_answers_in_request_order_with_requests_in_flight_together():
    requests = _requests(8)
    with ChatServer(_lines({i: f"answer {i}" for i in range(8)})) as server:
        server.delay = 0.3
        answers = _backend(server).answer(requests)
    assert [(a.text, a.error) for a in answers] == [(f"answer {i}", "") for i in range(8)]
    assert len(server.requests) == 8 and 2 <= server.max_in_flight <= 4
    key, payload, auth = next(r for r in server.requests if r[0] == _key(3))
    assert auth is None
    assert (payload["model"], payload["temperature"], payload["max_tokens"], payload["seed"]) == (
        "served-vlm", 0, 64, 0)
    (message,) = payload["messages"]
    image_part, text_part = message["content"]
    assert message["role"] == "user" and text_part == {"type": "text", "text": "Question 3"}
    prefix, data = image_part["image_url"]["url"].split(",", 1)
    assert image_part["type"] == "image_url" and prefix == "data:image/png;base64"
    sent = Image.open(io.BytesIO(base64.b64decode(data)))
    assert sent.format == "PNG" and np.array_equal(np.asarray(sent), np.asarray(requests[3].images[0]))


def test_throttled_and_overloaded_requests_are_retried_and_counted():
    with ChatServer(_lines({0: "zero", 1: "one", 2: "two"})) as server:
        server.faults = {_key(0): ["429", "503"], _key(2): ["503", "503", "503"]}
        backend = _backend(server, retries=2)
        answers = backend.answer(_requests(3))
    assert [(a.text, a.error) for a in answers] == [
        ("zero", ""), ("one", ""), ("", "vlm error: HTTP 503: stub: 503, try later (after 3 tries)")]
    assert len(server.requests) == 3 + 1 + 3
    assert (backend.client.sent, backend.client.retried) == (7, 4)


def test_slow_answers_time_out_are_retried_then_recorded():
    with ChatServer(_lines({0: "zero", 1: "one"})) as server:
        server.faults = {_key(0): ["slow", "slow"], _key(1): ["slow"]}
        server.slow_s = 1.5
        started = time.monotonic()
        answers = _backend(server, timeout_s=0.3, retries=1).answer(_requests(2))
        took = time.monotonic() - started
    assert [(a.text, a.error) for a in answers] == [
        ("", "vlm error: no answer within timeout_s (0.3 s) (after 2 tries)"), ("one", "")]
    assert len(server.requests) == 4 and took < 1.5


def test_malformed_responses_and_refusals_are_the_items_errors_not_retried():
    with ChatServer(_lines({i: "fine" for i in range(4)})) as server:
        server.faults = {_key(0): ["not_json"], _key(1): ["no_choices"], _key(2): ["400"]}
        answers = _backend(server).answer(_requests(4))
    assert [(a.text, a.error) for a in answers] == [
        ("", "vlm error: malformed response: not JSON (b'<html>502 Bad Gateway</html>')"),
        ("", "vlm error: malformed response: no choices[0].message"),
        ("", "vlm error: HTTP 400: stub: the request was refused"),
        ("fine", "")]
    assert len(server.requests) == 4


def test_a_refusal_text_is_refused_by_the_parser_and_corrected_by_ask():
    lines = _lines({0: REFUSAL, 1: VERDICT}) + [dict(_lines({0: VERDICT})[0], attempt=1)]
    with ChatServer(lines) as server:
        exchanges = backends.ask(_backend(server), _requests(2), lambda _, text: parse_verdict(text))
    first, second = exchanges
    assert [a.text for a in first.answers] == [REFUSAL, VERDICT] and first.ok
    assert first.problems[0] == ["not valid JSON: Expecting value (line 1 column 1)"]
    assert (first.parsed.realism, first.parsed.instruction) == (4, 5)
    assert [a.text for a in second.answers] == [VERDICT]
    corrected = next(p for k, p, _ in server.requests if k == _key(0, 1))
    assert [m["role"] for m in corrected["messages"]] == ["user", "assistant", "user"]
    assert corrected["messages"][1]["content"] == [{"type": "text", "text": REFUSAL}]
    assert [k for k, _, _ in server.requests].count(_key(0, 1)) == 1 and len(server.requests) == 3


def test_a_server_going_away_mid_run_leaves_the_rest_as_errors():
    with ChatServer(_lines({i: f"answer {i}" for i in range(6)})) as server:
        server.stop_after = 3
        answers = _backend(server, concurrency=1, retries=1).answer(_requests(6))
    assert [a.text for a in answers[:3]] == ["answer 0", "answer 1", "answer 2"]
    assert {a.error for a in answers[3:]} == {
        "vlm error: connection failed: [Errno 111] Connection refused (after 2 tries)"}
    assert len(server.requests) == 3


def test_answers_are_cut_like_the_other_backends():
    with ChatServer(_lines({0: "x" * (backends.MAX_ANSWER_CHARS + 50)})) as server:
        (answer,) = _backend(server).answer(_requests(1))
    assert answer.text == "x" * backends.MAX_ANSWER_CHARS


def test_the_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("DIFFSEG_TEST_KEY", "sk-local-1")
    with ChatServer(_lines({0: "zero"})) as server:
        server.api_key = "sk-local-1"
        (answer,) = _backend(server, api_key_env="DIFFSEG_TEST_KEY").answer(_requests(1))
        assert answer.text == "zero" and server.requests[0][2] == "Bearer sk-local-1"
        monkeypatch.setenv("DIFFSEG_TEST_KEY", "sk-wrong")
        with pytest.raises(UserError, match=r"^propose\.vlm\.api_key_env: .* refused the request .*invalid API key"):
            _backend(server, api_key_env="DIFFSEG_TEST_KEY")


def test_load_stops_on_a_missing_server_or_another_model():
    with ChatServer([], models=["Qwen/Qwen2.5-VL-7B-Instruct"]) as server:
        url = server.url
        with pytest.raises(UserError, match=r"^propose\.vlm\.model: .* serves Qwen/Qwen2\.5-VL-7B-Instruct, not "
                                            r"'served-vlm'"):
            _backend(server)
    with ChatServer([], models=None) as unlisted:  # no /v1/models: nothing to compare, the load goes on
        _backend(unlisted)
    with pytest.raises(UserError) as err:  # the first server has stopped: nothing listens at its port
        backends.create(VLM(backend="openai", endpoint=url + "/v1/"), KEY).load()
    assert str(err.value) == (f"propose.vlm.endpoint: no OpenAI-compatible server answers at {url}/v1/models "
                              f"(connection failed: [Errno 111] Connection refused); start one (docs/scale.md, "
                              f"Served VLM) or fix the URL")


# ------------------------------------------------------------------ the planner through the served backend
def _plan(workdir, backend: dict) -> pd.DataFrame:
    over = {"vlm": {"fallback": "none", "batch_size": 4, **backend}, "grounding": {"segmenter": "annotations"}}
    return propose_stage.run(one_turn_params(workdir, propose=over), "t1", records.turn_dir("t1", "plan"))


def test_the_planner_writes_the_same_plans_served_as_replayed(workdir):
    ids = build_scene(workdir, 5)
    recorded = {("plan", ids[0], 0): plan_answer(candidate("remove", "the white cup")),
                ("plan", ids[1], 0): "Sure! Here is a plan.",
                ("plan", ids[1], 1): plan_answer(candidate("change", "cup")),
                ("plan", ids[2], 0): plan_answer(candidate("add", "a red umbrella", box=[100, 20, 180, 120])),
                ("plan", ids[3], 0): plan_answer(candidate("remove", "the giraffe")),
                ("plan", ids[4], 0): "{", ("plan", ids[4], 1): "still no"}
    write_replay(workdir / "answers.jsonl", recorded)
    replayed = _plan(workdir, {"backend": "replay", "replay": "answers.jsonl"})
    transcript = (workdir / "data/turns/t1/plan/transcript.jsonl").read_bytes()
    masks = {i: (workdir / f"data/turns/t1/plan/masks/{i}.png").read_bytes() for i in ids[:3]}
    with ChatServer(workdir / "answers.jsonl", models=["served-vlm"]) as server:
        servedrun = _plan(workdir, {"backend": "openai", "model": "served-vlm", "endpoint": server.url,
                                    "concurrency": 4})
    pd.testing.assert_frame_equal(replayed, servedrun)
    assert (workdir / "data/turns/t1/plan/transcript.jsonl").read_bytes() == transcript
    assert masks == {i: (workdir / f"data/turns/t1/plan/masks/{i}.png").read_bytes() for i in ids[:3]}
    assert list(servedrun["status"]) == ["ok", "ok", "ok", "skipped", "failed"]
    assert sorted(k for k, _, _ in server.requests) == sorted(
        ("plan", i, "t1", a) for (_, i, a) in recorded)  # 5 first answers, 2 corrections
    shown = Image.open(io.BytesIO(base64.b64decode(
        server.requests[0][1]["messages"][0]["content"][0]["image_url"]["url"].split(",", 1)[1])))
    assert shown.size == (224, 168)  # within the offline max_pixels: the image as the planner fitted it


def test_a_planner_run_survives_a_server_that_goes_away(workdir):
    ids = build_scene(workdir, 4)
    write_replay(workdir / "answers.jsonl", {("plan", i, 0): plan_answer(candidate("remove", "cup")) for i in ids})
    with ChatServer(workdir / "answers.jsonl", models=["served-vlm"]) as server:
        server.stop_after = 2
        plan = _plan(workdir, {"backend": "openai", "model": "served-vlm", "endpoint": server.url, "concurrency": 1,
                               "retries": 1})
    assert list(plan["status"]) == ["ok", "ok", "failed", "failed"]
    refused = "vlm error: connection failed: [Errno 111] Connection refused (after 2 tries)"
    assert set(plan["reason"][2:]) == {f"vlm: answer 1: {refused} | answer 2: {refused}"}


@pytest.mark.parametrize("override, key", [
    ({"backend": "openai"}, "propose.vlm.endpoint"),
    ({"backend": "openai", "endpoint": "localhost:8000"}, "propose.vlm.endpoint"),
    ({"endpoint": "ftp://host/v1"}, "propose.vlm.endpoint"),
    ({"concurrency": 0}, "propose.vlm.concurrency"),
    ({"backend": "openai", "endpoint": "http://localhost:8000", "concurrency": 8, "batch_size": 4},
     "propose.vlm.concurrency"),
    ({"timeout_s": 0}, "propose.vlm.timeout_s"),
    ({"timeout_s": float("inf")}, "propose.vlm.timeout_s"),
    ({"retries": -1}, "propose.vlm.retries"),
    ({"retries": 21}, "propose.vlm.retries"),
    ({"api_key_env": "MY KEY"}, "propose.vlm.api_key_env"),
    ({"api_key_env": ""}, "propose.vlm.api_key_env"),
])
def test_bad_served_params_name_the_key(tmp_path, override, key):
    with pytest.raises(ParamsError) as err:
        one_turn_params(tmp_path, propose={"vlm": override})
    assert key in str(err.value)


def test_bad_served_params_of_the_judge_name_its_key(tmp_path):
    with pytest.raises(ParamsError, match=r"filter\.vlm\.endpoint"):
        one_turn_params(tmp_path, filter_={"vlm": {"backend": "openai"}})


# ------------------------------------------------------------------ evidence: one turn planned and judged served
@pytest.mark.slow  # builds the sd2 twin and runs propose, edit and filter of one turn twice (served, replayed)
def test_one_turn_planned_and_judged_by_a_served_model(workdir):
    from diffseg.edit import stage as edit_stage
    from diffseg.filter import judge
    from diffseg.filter import stage as filter_stage
    from diffseg.twins import stage as twins

    twins.run(0, ["sd2"], workdir / "models" / "twins")
    ids = build_scene(workdir, 16)
    recorded = {("plan", i, 0): plan_answer(candidate("remove", "the cup")) for i in ids}
    recorded.update({("judge", i, 0): json.dumps({"realism": 1 + k % 5, "instruction_following": 4,
                                                  "reason": f"Verdict {k}."}) for k, i in enumerate(ids)})
    write_replay(workdir / "answers.jsonl", recorded)
    served_vlm = {"backend": "openai", "model": "served-vlm", "batch_size": 8, "concurrency": 4}
    figures = {}
    with ChatServer(workdir / "answers.jsonl", models=["served-vlm"]) as server:
        server.delay = 0.2  # a served answer's latency: with 4 in flight the stage waits for a quarter of them
        served_vlm["endpoint"] = server.url
        p = one_turn_params(workdir, propose={"vlm": {**served_vlm, "fallback": "none"},
                                              "grounding": {"segmenter": "annotations"}},
                            filter_={"judge": "vlm", "vlm": {**served_vlm, "on_failure": "reject"}})
        for name, stage, out in (("propose", propose_stage, "plan"), ("edit", edit_stage, "edit"),
                                 ("filter", filter_stage, "state")):
            started = time.monotonic()
            stage.run(p, "t1", records.turn_dir("t1", out))
            figures[name] = time.monotonic() - started
    state = records.StateDir(records.turn_dir("t1", "state"))
    history = state.history().set_index("image_id")
    judged = history[history["judge_realism"].notna()]
    assert len(judged) > 0 and len(server.requests) == 16 + len(judged) and 2 <= server.max_in_flight <= 4
    for image_id, row in judged.iterrows():
        realism = 1 + ids.index(image_id) % 5
        assert (row["judge_realism"], row["judge_instruction"]) == (realism, 4)
        assert row["decision"] == ("accepted" if realism >= 3 else "rejected")
    served_bytes = _files(state.root)

    (workdir / "kept.jsonl").write_bytes((state.root / judge.TRANSCRIPT).read_bytes())
    p.filter.vlm.backend, p.filter.vlm.replay = "replay", "kept.jsonl"
    filter_stage.run(p, "t1", records.turn_dir("t1", "state"))
    assert _files(state.root) == served_bytes

    with ChatServer(workdir / "answers.jsonl", models=["served-vlm"]) as serial_server:  # the planner, one at a time
        serial_server.delay = 0.2
        p.propose.vlm.endpoint, p.propose.vlm.concurrency = serial_server.url, 1
        started = time.monotonic()
        propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
        serial = time.monotonic() - started
    assert serial_server.max_in_flight == 1
    print(f"\nserved planner and judge: {len(server.requests)} requests (16 plans, {len(judged)} verdicts), "
          f"at most {server.max_in_flight} in flight, 0.2 s each; propose {figures['propose']:.2f} s "
          f"(concurrency 1: {serial:.2f} s), edit {figures['edit']:.2f} s, filter {figures['filter']:.2f} s; "
          f"{(judged['decision'] == 'accepted').sum()} of {len(judged)} judged edits accepted; "
          f"the replayed judge wrote the same {len(served_bytes)} files byte for byte")


def _files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}
