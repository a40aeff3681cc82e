"""The ``vlm`` planner: Qwen2.5-VL proposes candidate edits, Grounded-SAM turns the target into a mask.

Per image with a turn left in its budget (:func:`annotations.planned_turns`): the model sees the current
image, its caption, its annotated objects and its edit history, and answers with up to
``propose.vlm.n_candidates`` candidate edits as JSON (:mod:`answers`). An answer with no valid candidate
is asked again once, quoting the parser's reasons. The candidates are then tried in order: *remove* and
*change* targets are segmented (:mod:`grounding`), *add* gets an ellipse in the model's placement box or
in a free region; every mask is refined and must pass the area bounds. The first candidate that passes
is the plan; generator and seed are drawn as the annotations planner draws them
(:func:`annotations.finish_plan`). Images are processed ``batch_size`` at a time, every model call batched.

Every row keeps the model's raw answers (``vlm_answer``) and why each attempt or candidate failed
(``vlm_reason``); a failed row's ``reason`` says why no plan came out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from diffseg import masks, records
from diffseg.params import Params
from diffseg.propose import grounding, retry, templates
from diffseg.vlm import answers, backends
from diffseg.propose.annotations import Plan, attempt_key, finish_plan, free_region, plan_image, planned_turns
from diffseg.seeding import keyed_rng

PLAN_PROMPT = """You are planning one local edit of this photo for an image-forensics dataset: a diffusion \
model will repaint a masked region, and detectors must later find it. The image is {width} x {height} pixels.
{context}
Propose up to {n} different candidate edits, best first. Allowed actions: {actions}.
- "remove": an existing object disappears; "target" names it so that an open-vocabulary detector finds it.
- "change": an existing object changes an attribute (colour, material, clothing); "target" names it.
- "add": a new object appears in an empty area; "target" names the new object; "box" [x0, y0, x1, y1] in \
pixels of this image may say where it goes (or null).
"prompt" describes what the region shows after the edit (a description, not an instruction); \
"negative_prompt" lists what to avoid; "rationale" is one short sentence.
Answer with only this JSON, no other text:
{{"candidates": [{{"action": "...", "target": "...", "prompt": "...", "negative_prompt": "...", \
"rationale": "...", "box": null}}]}}"""

# Columns the vlm planner adds to the plan manifest (the annotations planner's stay as they are).
COLUMNS = ["vlm_candidate", "rationale", "box", "grounding_score", "annotation_iou", "iou_ann_id", "vlm_attempts",
           "vlm_answer", "vlm_reason"]
NO_VLM = {"vlm_candidate": 0, "rationale": "", "box": "", "grounding_score": -1.0, "annotation_iou": -1.0,
          "iou_ann_id": -1, "vlm_attempts": 0, "vlm_answer": "", "vlm_reason": ""}


@dataclass
class Item:
    """One image to plan, with what the prompt and the segmenter need."""

    image_id: str
    image: np.ndarray
    instances: list[dict]  # annotations of the state, each with its category 'name'
    caption: str
    history: list[dict]  # the image's earlier rows of history.parquet
    tried: list[dict] = field(default_factory=list)  # a retry round: this turn's earlier attempts (history rows)
    shown: tuple[int, int] = (0, 0)  # (width, height) of the image the model sees
    exchange: backends.Exchange | None = None
    queue: list[answers.Candidate] = field(default_factory=list)  # valid candidates not tried yet
    failures: list[str] = field(default_factory=list)
    result: tuple[Plan, dict] | None = None  # the plan and its vlm columns, once one passed


def describe_history(rows: list[dict], limit: int) -> str:
    edits = [r for r in rows if r.get("action", "none") != "none"][-limit:] if limit else []
    if not edits:
        return "none"
    return "; ".join(f"{r['turn']}: {r['action']} '{r['target']}' ({r['decision']})" for r in edits)


def plan_request(item: Item, params: Params, turn: str) -> backends.Request:
    cfg = params.propose
    shown = backends.fit_pixels(Image.fromarray(item.image), cfg.vlm.max_pixels)
    item.shown = shown.size
    names = sorted({a["name"] for a in item.instances})
    context = "\n".join([f"Caption: {item.caption}" if item.caption else "Caption: none",
                         f"Annotated objects (may be incomplete): {', '.join(names) if names else 'none'}",
                         f"Earlier edits of this image: {describe_history(item.history, cfg.vlm.max_history)}"])
    actions = ", ".join(sorted(a for a, w in cfg.action_weights.items() if w > 0))
    text = PLAN_PROMPT.format(width=shown.size[0], height=shown.size[1], context=context, n=cfg.vlm.n_candidates,
                              actions=actions)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return backends.Request("plan", item.image_id, turn, messages, [shown])


def plan_batch(params: Params, turn: str, turn_index: int, items: list[Item], backend, segmenter,
               attempt: int = 1) -> None:
    """Fill ``item.result`` or ``item.failures`` of every item (one batch of images). ``turn`` is the stage's
    ``turns`` entry (a retry round's own name, so its answers replay apart); ``attempt`` > 1 a retry's attempt."""
    cfg = params.propose
    actions = {a for a, w in cfg.action_weights.items() if w > 0}
    by_id = {item.image_id: item for item in items}

    def parse(request: backends.Request, text: str):
        found, problems = answers.parse_plan(text, actions, cfg.vlm.n_candidates, by_id[request.image_id].shown)
        return (found, problems), ([] if found else problems)  # one valid candidate makes the answer usable

    requests = [plan_request(item, params, turn) for item in items]
    for item, exchange in zip(items, backends.ask(backend, requests, parse)):
        item.exchange = exchange
        candidates, problems = exchange.parsed or ([], [])
        # A retry tries the candidates its earlier attempts of the turn did not first: the plan's next candidate.
        tried = retry.tried_targets(item.tried)
        item.queue = sorted(candidates, key=lambda c: (c.action, c.target) in tried)
        if exchange.ok:  # refused earlier attempts and refused candidates stay on record
            item.failures = [f"answer {i + 1}: {'; '.join(p[:4])}" for i, p in enumerate(exchange.problems[:-1])]
            item.failures += problems
        else:
            item.failures = [exchange.reason]

    while True:  # one round per candidate rank: every image's next candidate, segmented in one call
        trying = [(item, item.queue.pop(0)) for item in items if item.result is None and item.queue]
        if not trying:
            return
        jobs = [grounding.Job(item.image_id, item.image, c.target, item.instances)
                for item, c in trying if c.action != "add"]
        found = iter(segmenter.segment(jobs) if jobs else [])
        for item, candidate in trying:
            segment = next(found) if candidate.action != "add" else None
            _try(params, turn_index, item, candidate, segment, attempt)


def _try(params: Params, turn_index: int, item: Item, c: answers.Candidate, segment: grounding.Segment | None,
         attempt: int) -> None:
    cfg = params.propose
    tag = f"candidate {c.index + 1} ({c.action} '{c.target}')"
    height, width = item.image.shape[:2]
    extra = {"grounding_score": -1.0, "annotation_iou": -1.0, "iou_ann_id": -1}
    category_id, ann_id = _category(c.target, item.instances, params), -1
    if c.action == "add":
        if c.box is not None:
            scale = (width / item.shown[0], height / item.shown[1])
            mask = masks.ellipse((height, width), (c.box[0] * scale[0], c.box[1] * scale[1], c.box[2] * scale[0],
                                                   c.box[3] * scale[1]))
        else:
            rng = keyed_rng(params.seed, "propose-vlm-add", item.image_id, *attempt_key(turn_index, attempt), c.index)
            mask = free_region(rng, (height, width), item.instances, cfg.add_size)
            if mask is None:
                item.failures.append(f"{tag}: no free region for an added object")
                return
    else:
        if segment.mask is None:
            item.failures.append(f"{tag}: {segment.reason}")
            return
        problem = grounding.mask_problem(segment.mask, c.target)
        if problem:
            item.failures.append(f"{tag}: {problem}")
            return
        extra["grounding_score"] = segment.score
        named = grounding.named_instances(c.target, item.instances)
        if named:  # a known instance: how well does the segmenter's mask match the annotation?
            ious = [(_iou(segment.mask, masks.rle_decode(a["segmentation"])), int(a["id"])) for a in named]
            best_iou, best_id = max(ious)
            extra.update(annotation_iou=best_iou, iou_ann_id=best_id)
            ann_id = best_id if best_iou >= cfg.grounding.match_iou else -1
        mask = grounding.refine(segment.mask, cfg.grounding, cfg.mask_dilation)
    rng = keyed_rng(params.seed, "propose-vlm", item.image_id, *attempt_key(turn_index, attempt))
    plan = finish_plan(params, rng, item.image_id, turn_index, c.action, mask,
                       {"target": c.target, "category_id": category_id, "ann_id": ann_id, "attribute": "",
                        "prompt": c.prompt, "negative_prompt": c.negative_prompt}, attempt)
    if plan.action == "none":
        item.failures.append(f"{tag}: {plan.reason}")
        return
    extra.update(vlm_candidate=c.index + 1, rationale=c.rationale, box=json.dumps(list(c.box)) if c.box else "")
    item.result = (plan, extra)


def _category(phrase: str, instances: list[dict], params: Params) -> int:
    """The COCO category the phrase names (annotated ones first, then the addable ones), or -1."""
    named = grounding.named_instances(phrase, instances)
    if named:
        return int(named[0]["category_id"])
    known = [{"name": name, "category_id": cat_id} for cat_id, name in templates.ADDABLE]
    named = grounding.named_instances(phrase, known)
    return int(named[0]["category_id"]) if named else -1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def row_of(params: Params, turn_index: int, item: Item, shape: tuple[int, int], categories: dict[int, str],
           instances: list[dict], attempt: int = 1) -> tuple[Plan, dict]:
    """The item's plan and its row fields: the VLM's, the fallback's, or a failure with its reason."""
    exchange = item.exchange
    audit = {**NO_VLM, "vlm_attempts": len(exchange.answers), "vlm_answer": exchange.raw,
             "vlm_reason": " | ".join(item.failures)[:4000]}
    if item.result is not None:
        plan, extra = item.result
        return plan, {**audit, **extra, "planner": "vlm", "status": records.OK, "reason": ""}
    why = "; ".join(item.failures) or "no candidate"
    if params.propose.vlm.fallback == "annotations":
        plan = plan_image(params, item.image_id, turn_index, shape, instances, categories, item.caption, attempt,
                          frozenset(retry.tried_instances(item.tried)))
        reason = f"vlm: {why}; planned by the annotations planner (propose.vlm.fallback)"
        status = records.OK if plan.action != "none" else records.SKIPPED
        return plan, {**audit, "planner": "annotations", "status": status,
                      "reason": (reason if plan.action != "none" else f"{reason}: {plan.reason}")[:4000]}
    # Failed: the model gave no usable answer. Skipped: it did, but no candidate could be masked within bounds
    # (an infeasible plan, as when the annotations planner finds no free region).
    status = records.FAILED if not exchange.ok else records.SKIPPED
    return Plan(reason=f"vlm: {why}"[:4000]), {**audit, "planner": "vlm", "status": status,
                                                "reason": f"vlm: {why}"[:4000]}


def needs_plan(params: Params, image_id: str, turn_index: int) -> bool:
    return turn_index <= planned_turns(params, image_id)
