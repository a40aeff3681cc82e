"""``propose@<turn>``: the edit plan of one turn for every image of the previous state.

Output (``data/turns/<turn>/plan``): ``masks/<id>.png`` for planned edits and ``manifest.parquet``
with one row per image: action (add / remove / change / none), target, prompts, generator, seed,
mask area, ``status`` (ok = an edit is planned, skipped = nothing to do this turn, failed = the planner
could not produce a plan) and ``reason``. The ``vlm`` planner adds its audit columns
(:data:`vlm_planner.COLUMNS`) and ``transcript.jsonl``, every model answer, replayable. The
``annotations`` planner refuses a state without instance annotations (a folder source's); the ``vlm``
planner finds its targets itself.

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
from diffseg.propose import annotation_quality, grounding, vlm_planner
from diffseg.vlm import backends
from diffseg.propose.annotations import Plan, plan_image, planned_turns

TRANSCRIPT = "transcript.jsonl"
# Set to false in annotations.json by a source without instance annotations (source.ingest.ANNOTATED).
ANNOTATED_KEY = "annotated"


def run(params: Params, turn: str, out_dir: Path, quality_path: Path | None = None) -> pd.DataFrame:
    turn_index = params.turn_names.index(turn) + 1
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
    if params.propose.planner == "vlm":
        rows = _vlm_rows(params, turn, turn_index, prev, out_dir, context, categories)
        columns = _COLUMNS + vlm_planner.COLUMNS
    else:
        rows, columns = _annotation_rows(params, turn, turn_index, prev, out_dir, context, categories), _COLUMNS

    manifest = pd.DataFrame(rows, columns=columns)
    records.write_table(Path(out_dir) / records.MANIFEST, manifest)
    if quality_path is not None:
        records.write_json(quality_path, annotation_quality.summarise(manifest, turn, params, categories))
    counts = manifest["action"].value_counts().to_dict()
    print(f"propose@{turn}: {len(manifest)} images, actions {counts}, status "
          f"{manifest['status'].value_counts().to_dict()}")
    records.check_failures(f"propose@{turn}", manifest["status"], params.max_item_failure)
    return manifest


def _row(params: Params, image_id: str, turn: str, turn_index: int, plan: Plan, extra: dict) -> dict:
    row = {"image_id": image_id, "turn": turn, "turn_index": turn_index, "action": plan.action,
           "planned_turns": planned_turns(params, image_id), "planner": params.propose.planner, **_NO_EDIT}
    row.update(extra)
    row.update(plan.fields)
    return row


def _annotation_rows(params: Params, turn: str, turn_index: int, prev: records.StateDir, out_dir: Path,
                     context: dict, categories: dict[int, str]) -> list[dict]:
    plan_dir = records.PlanDir(records.fresh_dir(out_dir))
    rows = []
    for image_id in tqdm(prev.ok_ids(), desc=f"propose@{turn}", unit="img"):
        info, anns, caption = context[image_id]
        plan = plan_image(params, image_id, turn_index, (info["height"], info["width"]), anns, categories, caption)
        rows.append(_row(params, image_id, turn, turn_index, plan,
                         {"status": records.OK if plan.action != "none" else records.SKIPPED, "reason": plan.reason}))
        if plan.mask is not None:
            plan_dir.write_mask(image_id, plan.mask)
    return rows


def _vlm_rows(params: Params, turn: str, turn_index: int, prev: records.StateDir, out_dir: Path, context: dict,
              categories: dict[int, str]) -> list[dict]:
    """Rows of the vlm planner: models loaded once, images streamed ``batch_size`` at a time."""
    vp = vlm_planner
    cfg = params.propose
    ids = prev.ok_ids()
    todo = [i for i in ids if vp.needs_plan(params, i, turn_index)]
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
                items.append(vp.Item(image_id, prev.image(image_id), named, caption, past.get(image_id, [])))
            vp.plan_batch(params, turn, turn_index, items, backend, segmenter)
            for item in items:
                info, anns, _ = context[item.image_id]
                plan, extra = vp.row_of(params, turn_index, item, (info["height"], info["width"]), categories, anns)
                done[item.image_id] = _row(params, item.image_id, turn, turn_index, plan, extra)
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
            budget = planned_turns(params, image_id)
            rows.append(_row(params, image_id, turn, turn_index, Plan(reason=f"image gets {budget} edit(s)"),
                             {**vp.NO_VLM, "status": records.SKIPPED, "reason": f"image gets {budget} edit(s)"}))
    return rows


# Field values of a row without an edit, so every column keeps one type.
_NO_EDIT = {"target": "", "category_id": -1, "ann_id": -1, "attribute": "", "prompt": "", "negative_prompt": "",
            "generator": "", "seed": -1, "mask_area": 0.0}
_COLUMNS = ["image_id", "turn", "turn_index", "action", "planned_turns", "planner", "target", "category_id",
            "ann_id", "attribute", "prompt", "negative_prompt", "generator", "seed", "mask_area",
            "status", "reason"]
