"""The ``annotations`` planner: edit plans from the state's COCO instance masks, no model needed.

Per image it draws how many turns the image gets (0 keeps a never-edited negative), then per turn an
action among the feasible ones, a target (an existing instance, or a free region for *add*), a mask,
prompts from :mod:`templates`, a generator and a seed. Every draw is keyed by (seed, image, turn).

The turn budget (:func:`planned_turns`), the free-region finder and the tail every plan shares (area
bounds, generator, seed: :func:`finish_plan`) are used by the ``vlm`` planner too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffseg import masks
from diffseg.params import Params
from diffseg.propose import templates
from diffseg.seeding import keyed_rng, keyed_seed

ADD_TRIES = 24  # random placements tried for an added object; the least overlapping one wins
MAX_ADD_OVERLAP = 0.2  # share of an added object's mask allowed on existing instances


@dataclass
class Plan:
    """One image's edit for one turn. ``action`` is 'none' when nothing is to be done."""

    action: str = "none"
    reason: str = ""
    mask: np.ndarray | None = None
    fields: dict = field(default_factory=dict)


def planned_turns(params: Params, image_id: str) -> int:
    """How many edits ``image_id`` receives in total, drawn once from ``propose.turn_weights``."""
    w = np.asarray(params.propose.turn_weights, dtype=float)
    return int(keyed_rng(params.seed, "turns", image_id).choice(len(w), p=w / w.sum()))


def attempt_key(turn_index: int, attempt: int) -> tuple:
    """The key part of an edit's draws: the turn, and for a retry its attempt (attempt 1 keeps the plain turn key,
    so a run without retry rounds draws what it always drew)."""
    return (turn_index,) if attempt == 1 else (turn_index, f"attempt{attempt}")


def plan_image(params: Params, image_id: str, turn_index: int, shape: tuple[int, int],
               instances: list[dict], categories: dict[int, str], caption: str, attempt: int = 1,
               avoid: frozenset[int] = frozenset()) -> Plan:
    """The plan of turn ``turn_index`` (1-based) for one image of ``shape`` (height, width).

    ``attempt`` > 1 is a retry round's new attempt: its own keyed draws, and instances of ``avoid`` (targets of
    the turn's earlier attempts) are not targeted again while another one fits.
    """
    budget = planned_turns(params, image_id)
    if turn_index > budget:
        return Plan(reason=f"image gets {budget} edit(s)")
    cfg = params.propose
    rng = keyed_rng(params.seed, "propose", image_id, *attempt_key(turn_index, attempt))
    n_pixels = shape[0] * shape[1]

    candidates = []
    for ann in instances:
        mask = masks.dilate(masks.rle_decode(ann["segmentation"]), cfg.mask_dilation)
        if cfg.min_area <= mask.sum() / n_pixels <= cfg.max_area:
            candidates.append((ann, mask))
    untried = [c for c in candidates if int(c[0]["id"]) not in avoid]
    candidates = untried or candidates
    feasible = {a: w for a, w in cfg.action_weights.items() if w > 0 and (a == "add" or candidates)}
    if not feasible:
        return Plan(reason="no instance within the mask-area bounds and add is disabled")
    actions = sorted(feasible)
    weights = np.asarray([feasible[a] for a in actions], dtype=float)
    action = str(actions[rng.choice(len(actions), p=weights / weights.sum())])

    if action == "add":
        placed = free_region(rng, shape, instances, cfg.add_size)
        if placed is None:
            return Plan(reason="no free region for an added object")
        mask = placed
        cat_id, category = templates.ADDABLE[rng.integers(len(templates.ADDABLE))]
        attribute = templates.new_attribute(category, rng)
        prompt, negative = templates.add_prompt(category, attribute, caption)
        ann_id = -1
    else:
        ann, mask = candidates[rng.integers(len(candidates))]
        cat_id, ann_id = int(ann["category_id"]), int(ann["id"])
        category = categories.get(cat_id, f"category {cat_id}")
        if action == "remove":
            attribute = ""
            prompt, negative = templates.remove_prompt(category, caption)
        else:
            attribute = templates.new_attribute(category, rng)
            prompt, negative = templates.change_prompt(category, attribute)

    return finish_plan(params, rng, image_id, turn_index, action, mask, {
        "target": category, "category_id": cat_id, "ann_id": ann_id, "attribute": attribute,
        "prompt": prompt, "negative_prompt": negative}, attempt)


def area_problem(mask: np.ndarray, cfg) -> str:
    """Why ``mask`` is outside the area bounds of ``cfg`` (``propose``), or '' when it is within them."""
    area = float(mask.sum() / mask.size)
    if not cfg.min_area <= area <= cfg.max_area:
        return f"mask area {area:.3f} outside [{cfg.min_area}, {cfg.max_area}]"
    return ""


def finish_plan(params: Params, rng: np.random.Generator, image_id: str, turn_index: int, action: str,
                mask: np.ndarray, fields: dict, attempt: int = 1) -> Plan:
    """What every planner does once it has an action, a mask and prompts: the area bounds, then a generator
    drawn from ``rng`` and the edit's keyed seed (a new one per attempt). ``fields`` holds target, category_id,
    ann_id, attribute, prompt and negative_prompt."""
    problem = area_problem(mask, params.propose)
    if problem:
        return Plan(reason=problem)
    generators = params.edit.generators
    generator = generators[rng.integers(len(generators))].name
    seed = keyed_seed(params.seed, "edit", image_id, *attempt_key(turn_index, attempt)) % (1 << 32)
    return Plan(action=action, mask=mask, fields={
        **fields, "generator": generator, "seed": seed, "mask_area": float(mask.sum() / mask.size)})


def free_region(rng: np.random.Generator, shape: tuple[int, int], instances: list[dict],
                size_range: list[float]) -> np.ndarray | None:
    """An elliptical mask where an object can be added, overlapping existing instances the least."""
    height, width = shape
    occupied = np.zeros(shape, bool)
    for ann in instances:
        occupied |= masks.rle_decode(ann["segmentation"])
    best, best_overlap = None, 1.0
    for _ in range(ADD_TRIES):
        side = rng.uniform(*size_range) * min(height, width)
        h = max(8, int(side * rng.uniform(0.8, 1.25)))
        w = max(8, int(side * rng.uniform(0.8, 1.25)))
        if h >= height or w >= width:
            continue
        y0, x0 = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        ellipse = masks.ellipse(shape, (x0, y0, x0 + w, y0 + h))
        overlap = float((ellipse & occupied).sum() / max(ellipse.sum(), 1))
        if overlap < best_overlap:
            best, best_overlap = ellipse, overlap
    return best if best is not None and best_overlap <= MAX_ADD_OVERLAP else None
