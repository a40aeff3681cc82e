"""``propose@<turn>``: the edit plan of one turn for every image of the previous state.

Output (``data/turns/<turn>/plan``): ``masks/<id>.png`` for planned edits and ``manifest.parquet``
with one row per image: action (add / remove / change / none), target, prompts, generator, seed,
mask area, ``status`` (ok = an edit is planned, skipped = nothing to do this turn) and ``reason``.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from diffseg import records
from diffseg.params import Params
from diffseg.propose.annotations import plan_image, planned_turns


def run(params: Params, turn: str, out_dir: Path) -> pd.DataFrame:
    turn_index = params.turn_names.index(turn) + 1
    prev = records.StateDir(params.turns[turn].prev)
    plan_dir = records.PlanDir(records.fresh_dir(out_dir))
    coco = prev.annotations()
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    image_of = {f"{img['id']:012d}": img for img in coco["images"]}
    instances = defaultdict(list)
    for ann in coco["annotations"]:
        instances[ann["image_id"]].append(ann)
    captions = defaultdict(list)
    for cap in coco.get("captions", []):
        captions[cap["image_id"]].append(cap["caption"])

    rows = []
    for image_id in tqdm(prev.ok_ids(), desc=f"propose@{turn}", unit="img"):
        info = image_of[image_id]
        caption = sorted(captions[info["id"]])[0] if captions[info["id"]] else ""
        plan = plan_image(params, image_id, turn_index, (info["height"], info["width"]),
                          instances[info["id"]], categories, caption)
        row = {"image_id": image_id, "turn": turn, "turn_index": turn_index, "action": plan.action,
               "planned_turns": planned_turns(params, image_id), "planner": params.propose.planner,
               "status": records.OK if plan.action != "none" else records.SKIPPED, "reason": plan.reason,
               **_NO_EDIT}
        row.update(plan.fields)
        if plan.mask is not None:
            plan_dir.write_mask(image_id, plan.mask)
        rows.append(row)

    manifest = pd.DataFrame(rows, columns=_COLUMNS)
    records.write_table(plan_dir.root / records.MANIFEST, manifest)
    counts = manifest["action"].value_counts().to_dict()
    print(f"propose@{turn}: {len(manifest)} images, actions {counts}")
    return manifest


# Field values of a row without an edit, so every column keeps one type.
_NO_EDIT = {"target": "", "category_id": -1, "ann_id": -1, "attribute": "", "prompt": "", "negative_prompt": "",
            "generator": "", "seed": -1, "mask_area": 0.0}
_COLUMNS = ["image_id", "turn", "turn_index", "action", "planned_turns", "planner", "target", "category_id",
            "ann_id", "attribute", "prompt", "negative_prompt", "generator", "seed", "mask_area",
            "status", "reason"]
