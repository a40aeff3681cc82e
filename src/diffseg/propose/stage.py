"""``propose@<turn>``: the edit plan of one turn for every image of the previous state.

Output (``data/turns/<turn>/plan``): ``masks/<id>.png`` for planned edits and ``manifest.parquet``
with one row per image: action (add / remove / change / none), target, prompts, generator, seed,
mask area, ``status`` (ok = an edit is planned, skipped = nothing to do this turn, failed = the planner
could not produce a plan) and ``reason``. The ``vlm`` planner adds its audit columns
(:data:`vlm_planner.COLUMNS`) and ``transcript.jsonl``, every model answer, replayable. The
``annotations`` planner refuses a state without instance annotations (a folder source's); the ``vlm``
planner finds its targets itself.

A retry round (a ``turns`` entry ``t<k>_retry<n>``, :mod:`retry`) plans a new attempt of turn t<k> for the
images whose last attempt was rejected or failed; its rows keep ``turn`` t<k> and add ``attempt`` (0 for the
images it passes through).

With ``quality_path`` (the CLI passes ``metrics/annotation_quality/<turn>.json``) the turn's
annotation-quality summary is written there (:mod:`annotation_quality`).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from diffseg import records
from diffseg.errors import UserError
from diffseg.params import Params
from diffseg.propose import annotation_quality, grounding, retry, vlm_planner
from diffseg.vlm import backends
from diffseg.propose.annotations import Plan, plan_image, planned_turns

TRANSCRIPT = "transcript.jsonl"
# Set to false in annotations.json by a source without instance annotations (source.ingest.ANNOTATED).
ANNOTATED_KEY = "annotated"


def run(params: Params, turn: str, out_dir: Path, quality_path: Path | None = None) -> pd.DataFrame:
    prev = records.StateDir(params.turns[turn].prev)
    coco = prev.annotations()
    if params.propose.planner == "annotations" and not coco.get(ANNOTATED_KEY, True):
        raise UserError(f"propose.planner: annotations needs instance annotations, and {prev.root} has none (its "
                        "source is a folder of plain images); set propose.planner: vlm (Qwen2.5-VL plans, Grounded-SAM "
                        "masks)")
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    image_of = {f"{img['id']:012d}": img for img in coco["images"]}
    instances = defaultdict(list)
    for ann in coco["annotations"]:
        instances[ann["image_id"]].append(ann)
    captions = defaultdict(list)
    for cap in coco.get("captions", []):
        captions[cap["image_id"]].append(cap["caption"])
    context = {image_id: (info, instances[info["id"]], sorted(captions[info["id"]])[0] if captions[info["id"]] else "")
               for image_id, info in image_of.items()}
    entry = _Entry(params, turn, prev)
    if params.propose.planner == "vlm":
        rows = _vlm_rows(params, entry, prev, out_dir, context, categories)
        columns = _COLUMNS + vlm_planner.COLUMNS
    else:
        rows, columns = _annotation_rows(params, entry, prev, out_dir, context, categories), _COLUMNS
    if entry.attempt > 1:  # only a retry round's plan has the column: a run without retries keeps its bytes
        columns = columns[:3] + ["attempt"] + columns[3:]

    manifest = pd.DataFrame(rows, columns=columns)
    records.write_table(Path(out_dir) / records.MANIFEST, manifest)
    if quality_path is not None:
        records.write_json(quality_path, annotation_quality.summarise(manifest, turn, params, categories))
    counts = manifest["action"].value_counts().to_dict()
    print(f"propose@{turn}: {len(manifest)} images, actions {counts}, status "
          f"{manifest['status'].value_counts().to_dict()}")
    records.check_failures(f"propose@{turn}", manifest["status"], params.max_item_failure)
    return manifest


class _Entry:
    """The ``turns`` entry being planned: the turn it belongs to, its index, its attempt and, for a retry round,
    the turn's earlier attempts per image."""

    def __init__(self, params: Params, stage_turn: str, prev: records.StateDir):
        self.stage_turn = stage_turn
        self.turn, self.index, self.attempt = params.turn_of(stage_turn)
        self.earlier = retry.earlier_attempts(prev.history(), self.turn) if self.attempt > 1 else {}

    def skip_reason(self, params: Params, image_id: str) -> str:
        """Why this round plans nothing for the image ('' when it plans): a retry round's pass-through."""
        if self.attempt == 1:
            return ""
        return retry.why_not(self.earlier.get(image_id, []), planned_turns(params, image_id), self.index)

    def row(self, params: Params, image_id: str, plan: Plan, extra: dict) -> dict:
        row = {"image_id": image_id, "turn": self.turn, "turn_index": self.index, "action": plan.action,
               "planned_turns": planned_turns(params, image_id), "planner": params.propose.planner, **_NO_EDIT}
        if self.attempt > 1:
            row["attempt"] = retry.NOT_RETRIED if self.skip_reason(params, image_id) else self.attempt
        row.update(extra)
        row.update(plan.fields)
        return row


def _annotation_rows(params: Params, entry: _Entry, prev: records.StateDir, out_dir: Path,
                     context: dict, categories: dict[int, str]) -> list[dict]:
    plan_dir = records.PlanDir(records.fresh_dir(out_dir))
    rows = []
    for image_id in tqdm(prev.ok_ids(), desc=f"propose@{entry.stage_turn}", unit="img"):
        info, anns, caption = context[image_id]
        skip = entry.skip_reason(params, image_id)
        if skip:
            plan = Plan(reason=skip)
        else:
            avoid = frozenset(retry.tried_instances(entry.earlier.get(image_id, [])))
            plan = plan_image(params, image_id, entry.index, (info["height"], info["width"]), anns, categories,
                              caption, entry.attempt, avoid)
        rows.append(entry.row(params, image_id, plan,
                               {"status": records.OK if plan.action != "none" else records.SKIPPED,
                                "reason": plan.reason}))
        if plan.mask is not None:
            plan_dir.write_mask(image_id, plan.mask)
    return rows


def _vlm_rows(params: Params, entry: _Entry, prev: records.StateDir, out_dir: Path, context: dict,
              categories: dict[int, str]) -> list[dict]:
    """Rows of the vlm planner: models loaded once, images streamed ``batch_size`` at a time."""
    vp = vlm_planner
    cfg = params.propose
    turn, turn_index = entry.stage_turn, entry.index
    ids = prev.ok_ids()
    todo = [i for i in ids if vp.needs_plan(params, i, turn_index) and not entry.skip_reason(params, i)]
    backend, segmenter = backends.create(cfg.vlm, "propose.vlm"), grounding.create(cfg.grounding)
    if todo:  # bad model settings stop the stage here, before the previous output is replaced
        backend.load()
        segmenter.load()
    plan_dir = records.PlanDir(records.fresh_dir(out_dir))
    history = prev.history()
    past = {k: g.to_dict("records") for k, g in history.groupby("image_id")} if len(history) else {}
    done, transcript = {}, []
    size = max(cfg.vlm.batch_size, cfg.grounding.batch_size)
    try:
        for start in tqdm(range(0, len(todo), size), desc=f"propose@{turn}", unit="batch"):
            items = []
            for image_id in todo[start:start + size]:
                info, anns, caption = context[image_id]
                named = [dict(a, name=categories.get(a["category_id"], f"category {a['category_id']}")) for a in anns]
                items.append(vp.Item(image_id, prev.image(image_id), named, caption, past.get(image_id, []),
                                     entry.earlier.get(image_id, [])))
            vp.plan_batch(params, turn, turn_index, items, backend, segmenter, entry.attempt)
            for item in items:
                info, anns, _ = context[item.image_id]
                plan, extra = vp.row_of(params, turn_index, item, (info["height"], info["width"]), categories, anns,
                                        entry.attempt)
                done[item.image_id] = entry.row(params, item.image_id, plan, extra)
                if plan.mask is not None:
                    plan_dir.write_mask(item.image_id, plan.mask)
            transcript += backends.transcript_lines([item.exchange for item in items])
    finally:
        backend.unload()
        segmenter.unload()
    backends.write_transcript(plan_dir.root / TRANSCRIPT, transcript)
    rows = []
    for image_id in ids:
        if image_id in done:
            rows.append(done[image_id])
        else:
            why = entry.skip_reason(params, image_id) or f"image gets {planned_turns(params, image_id)} edit(s)"
            rows.append(entry.row(params, image_id, Plan(reason=why),
                                   {**vp.NO_VLM, "status": records.SKIPPED, "reason": why}))
    return rows


# Field values of a row without an edit, so every column keeps one type.
_NO_EDIT = {"target": "", "category_id": -1, "ann_id": -1, "attribute": "", "prompt": "", "negative_prompt": "",
            "generator": "", "seed": -1, "mask_area": 0.0}
_COLUMNS = ["image_id", "turn", "turn_index", "action", "planned_turns", "planner", "target", "category_id",
            "ann_id", "attribute", "prompt", "negative_prompt", "generator", "seed", "mask_area",
            "status", "reason"]
