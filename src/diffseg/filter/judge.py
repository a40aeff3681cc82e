"""The ``vlm`` judge: Qwen2.5-VL scores every edit that passed the heuristics against a written rubric.

DiffSeg30k let the same VLM that planned the edits discard about half of them. Here the model sees the
image before and after the edit and the edit's instruction, and scores *realism* and *instruction
following* from 1 to 5 (:data:`RUBRIC`); an edit needs ``filter.vlm.min_realism`` and
``filter.vlm.min_instruction`` to stay. The answer is parsed as strictly as a plan (one retry with a
correction message); an answer that stays unusable rejects the edit, or keeps it with
``on_failure: accept``. Scores, the raw answers and the reason go into the history row.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from PIL import Image

from diffseg import records
from diffseg.params import Params
from diffseg.vlm import answers, backends

RUBRIC = """Image 1 is a photo before a local edit, image 2 the same photo after it. The edit: {action} \
"{target}"; the edited region was to show: "{prompt}".
Score the edit on two scales from 1 to 5.
- realism: 5 = the edited region cannot be told from a real photograph (lighting, perspective, texture and \
edges blend in); 3 = plausible at a glance, flaws visible on inspection; 1 = obviously synthetic or broken \
(smears, noise, distorted shapes, seams).
- instruction_following: 5 = image 2 shows exactly the requested edit; 3 = partly (wrong attribute, incomplete \
removal, object hard to recognise); 1 = the requested edit is not visible.
Answer with only this JSON, no other text:
{{"realism": <1-5>, "instruction_following": <1-5>, "reason": "<one short sentence>"}}"""

KEYS = ("realism", "instruction_following", "reason")
# History columns of the judge, with the values of rows it did not judge (so each column keeps one type).
NOT_JUDGED = {"judge_realism": -1, "judge_instruction": -1, "judge_reason": "", "judge_attempts": 0,
              "judge_answer": ""}
TRANSCRIPT = "judge_transcript.jsonl"


@dataclass(frozen=True)
class Verdict:
    realism: int
    instruction: int
    reason: str


def parse_verdict(text: str) -> tuple[Verdict | None, list[str]]:
    """A verdict, or the reasons the answer is not one."""
    value, problem = answers.extract_json(text)
    if problem:
        return None, [problem]
    if not isinstance(value, dict):
        return None, [f"answer must be a JSON object, got {'null' if value is None else type(value).__name__}"]
    problems = [f"unknown key {k!r}" for k in value if k not in KEYS]
    problems += [f"missing key {k!r}" for k in KEYS if k not in value]
    if problems:
        return None, problems
    for key in KEYS[:2]:
        score = value[key]
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            problems.append(f"'{key}' must be an integer from 1 to 5, got {score!r}"[:200])
    reason, problem = answers.check_text(value["reason"], "reason", answers.LIMITS["rationale"], required=True)
    if problem:
        problems.append(problem)
    if problems:
        return None, problems
    return Verdict(value["realism"], value["instruction_following"], reason), []


def decide(verdict: Verdict, params: Params) -> tuple[bool, str]:
    cfg = params.filter.vlm
    low = [f"{name} {score} < {need}" for name, score, need in
           (("realism", verdict.realism, cfg.min_realism),
            ("instruction_following", verdict.instruction, cfg.min_instruction)) if score < need]
    if low:
        return False, f"judge: {', '.join(low)} ({verdict.reason})"
    return True, f"passed heuristics and judge (realism {verdict.realism}, instruction {verdict.instruction})"


def request(turn: str, image_id: str, plan: pd.Series, before, after, max_pixels: int) -> backends.Request:
    text = RUBRIC.format(action=plan["action"], target=plan["target"], prompt=plan["prompt"])
    images = [backends.fit_pixels(Image.fromarray(a), max_pixels) for a in (before, after)]
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]
    return backends.Request("judge", image_id, turn, [{"role": "user", "content": content}], images)


def judge(params: Params, turn: str, backend, image_ids: list[str], plans: pd.DataFrame,
          prev: records.StateDir, edit: records.StateDir) -> tuple[dict[str, dict], list[dict]]:
    """Per judged image: its decision, reason and judge columns; and the transcript lines."""
    cfg = params.filter.vlm
    out, transcript = {}, []
    for start in range(0, len(image_ids), cfg.batch_size):  # one batch of images in memory at a time
        chunk = image_ids[start:start + cfg.batch_size]
        requests = [request(turn, i, plans.loc[i], prev.image(i), edit.image(i), cfg.max_pixels) for i in chunk]
        exchanges = backends.ask(backend, requests, lambda _, text: parse_verdict(text))
        transcript += backends.transcript_lines(exchanges)
        out.update({image_id: outcome(exchange, params) for image_id, exchange in zip(chunk, exchanges)})
    return out, transcript


def outcome(exchange: backends.Exchange, params: Params) -> dict:
    """The judge columns of one edit, whether it stays (``accepted``) and why (``reason``)."""
    audit = {**NOT_JUDGED, "judge_attempts": len(exchange.answers), "judge_answer": exchange.raw}
    if exchange.ok:
        verdict = exchange.parsed
        accepted, reason = decide(verdict, params)
        audit.update(judge_realism=verdict.realism, judge_instruction=verdict.instruction,
                     judge_reason=verdict.reason)
    elif params.filter.vlm.on_failure == "accept":
        accepted = True
        reason = f"passed heuristics; judge answer unusable, kept (filter.vlm.on_failure): {exchange.reason}"
    else:
        accepted, reason = False, f"judge answer unusable: {exchange.reason}"
    return {**audit, "accepted": accepted, "reason": reason[:4000]}
