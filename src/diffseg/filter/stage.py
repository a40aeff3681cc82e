"""``filter@<turn>``: accept or reject each edit of the turn and write the complete state after it.

A rejected (or failed) edit leaves the image, label and turn mask exactly as before the turn. The
state's ``history.parquet`` gains one provenance row per image for this turn (plan, generator,
checkpoint, sampler settings, seed, scores, decision, reason), and ``annotations.json`` follows the
accepted edits: a removed instance is dropped, an added object becomes a new instance.

With ``edit.output_resolution: generator`` an edit may come back at the generator's native size: it is
scored against the previous state resampled to that size (as the edit stage composited it), an accepted
one moves the image's instances to that size too, and the history gains the resampling columns
(:data:`RESAMPLING_COLUMNS`).

With ``filter.judge: vlm`` the edits that pass the heuristics are then scored by Qwen2.5-VL
(:mod:`judge`): its scores, raw answers and reason join the history row, and every answer is kept in
``judge_transcript.jsonl`` (replayable with ``filter.vlm.backend: replay``).

A retry round (``t<k>_retry<n>``) decides only the images its plan retries (``attempt`` > 0) and copies every
other image of the previous state byte for byte, adding no history row for it. With retry rounds in params,
every history row records its ``attempt`` and the image's ``planned_turns`` (the edits it was planned to get).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from diffseg import masks, records, resampling
from diffseg.filter import judge
from diffseg.filter.heuristics import decide, score
from diffseg.params import Params
from diffseg.vlm import backends

ACCEPTED, REJECTED, NO_EDIT = "accepted", "rejected", "none"
NOT_RETRIED = 0  # a retry round's plan gives this attempt to the images it passes through (as propose/retry.py)


def added_ann_id(coco_id: int, turn_index: int) -> int:
    """A new instance id that cannot collide with COCO's (all below 2**40)."""
    return (1 << 40) + coco_id * 16 + turn_index


def run(params: Params, turn: str, out_dir: Path) -> pd.DataFrame:
    _, turn_index, attempt = params.turn_of(turn)
    prev = records.StateDir(params.turns[turn].prev)
    plan = records.PlanDir(records.turn_dir(turn, "plan"))
    edit = records.StateDir(records.turn_dir(turn, "edit"))
    plans = plan.manifest().set_index("image_id")
    edits = edit.manifest().set_index("image_id")
    coco = prev.annotations()
    native = params.edit.output_resolution == "generator"
    backend = None
    if params.filter.judge == "vlm":  # bad model settings stop the stage before the previous output is replaced
        backend = backends.create(params.filter.vlm, "filter.vlm")
        backend.load()
    out = records.StateDir(records.fresh_dir(out_dir))

    history, decided, source_of, to_judge = [], {}, {}, []
    for image_id in tqdm(prev.ok_ids(), desc=f"filter@{turn}", unit="img"):
        p = plans.loc[image_id]
        source_of[image_id] = prev
        if attempt > 1 and p["attempt"] == NOT_RETRIED:
            continue
        row = {"image_id": image_id, **{k: p[k] for k in _PLAN_FIELDS}, **_generator_fields(params, p["generator"]),
               "mask_area": float(p["mask_area"]), "change_in_mask": 0.0, "brightness_in_mask": 0.0,
               "changed_outside_mask": 0.0}
        if params.retries:  # only then: a run without retry rounds keeps its history's columns
            row.update(attempt=attempt, planned_turns=int(p["planned_turns"]))
        if p["status"] != records.OK:
            row.update(decision=NO_EDIT, reason=p["reason"])
        elif image_id not in edits.index or edits.loc[image_id, "status"] != records.OK:
            why = edits.loc[image_id, "reason"] if image_id in edits.index else "no edit output"
            row.update(decision=REJECTED, reason=f"edit failed: {why}")
        else:
            before, after, mask = prev.image(image_id), edit.image(image_id), plan.mask(image_id)
            if native:  # the edit was composited at its generator's size: compare it there
                size = (after.shape[1], after.shape[0])
                before, mask = resampling.resample_image(before, size), masks.resize_mask(mask, size)
            scores = score(before, after, mask)
            accepted, reason = decide(scores, params.filter)
            row.update(scores, decision=ACCEPTED if accepted else REJECTED, reason=reason)
            if accepted:
                source_of[image_id] = edit
                to_judge.append(image_id)
        decided[image_id] = row
        history.append(row)

    if backend is not None:
        try:
            verdicts, transcript = judge.judge(params, turn, backend, to_judge, plans, prev, edit)
        finally:
            backend.unload()
        backends.write_transcript(out.root / judge.TRANSCRIPT, transcript)
        for image_id, row in decided.items():
            verdict = verdicts.get(image_id, {})
            row.update({k: verdict.get(k, v) for k, v in judge.NOT_JUDGED.items()})
            if verdict:
                row.update(decision=ACCEPTED if verdict["accepted"] else REJECTED, reason=verdict["reason"])
                source_of[image_id] = edit if verdict["accepted"] else prev
    for image_id, source in source_of.items():
        _copy_item(source, out, image_id)

    sizes = _record_resampling(decided, source_of, prev, edit) if native else {}
    annotations = _updated_annotations(coco, plans, decided, plan, turn_index)
    records.write_json(out.root / records.ANNOTATIONS, resampling.scale_annotations(annotations, {
        int(i): size for i, size in sizes.items()}))
    new_history = pd.DataFrame(history)
    # A retry round with nothing to retry keeps the history as it was.
    records.write_table(out.root / records.HISTORY, pd.concat([prev.history(), new_history], ignore_index=True)
                        if len(new_history) else prev.history())
    manifest = prev.manifest()
    manifest = manifest[manifest["status"] == records.OK].reset_index(drop=True)
    accepted_now = manifest["image_id"].map(lambda i: i in decided and decided[i]["decision"] == ACCEPTED)
    manifest["n_edits"] = manifest.get("n_edits", 0) + accepted_now.astype(int)
    for image_id, (width, height) in sizes.items():  # the state's own size, which the manifest describes
        manifest.loc[manifest["image_id"] == image_id, ["width", "height"]] = [width, height]
    records.write_table(out.root / records.MANIFEST, manifest)
    counts = new_history["decision"].value_counts().to_dict() if len(new_history) else {}
    print(f"filter@{turn}: {counts}" + (f", {len(source_of) - len(decided)} passed through" if attempt > 1 else ""))
    return new_history


_PLAN_FIELDS = ["turn", "turn_index", "action", "planner", "target", "category_id", "ann_id", "attribute", "prompt",
                "negative_prompt", "generator", "seed"]


def _generator_fields(params: Params, name: str) -> dict:
    """Checkpoint and sampler settings of the generator, for provenance ('' when no edit).

    The LoRA columns exist only when some generator carries a LoRA, so that every other run's history keeps
    its columns; a generator without one has '' (and scale 0) in them.
    """
    gen = params.generator(name) if name else None
    fields = {"model": "", "revision": "", "prior": "", "prior_revision": "", "variant": "", "family": "",
              "steps": 0, "guidance": 0.0, "strength": 0.0, "scheduler": "", "resolution": 0}
    if gen is not None:
        fields = {"model": gen.model, "revision": gen.revision or "", "prior": gen.prior or "",
                  "prior_revision": gen.prior_revision or "", "variant": gen.variant or "", "family": gen.family,
                  "steps": gen.steps, "guidance": gen.guidance, "strength": gen.strength,
                  "scheduler": gen.scheduler or "", "resolution": gen.resolution}
    if any(g.lora is not None for g in params.edit.generators):
        lora = gen.lora if gen is not None else None
        if lora is None:
            fields.update(lora="", lora_weight_name="", lora_scale=0.0, lora_revision="")
        else:
            fields.update(lora=lora.path, lora_weight_name=lora.weight_name or "", lora_scale=float(lora.scale),
                          lora_revision=lora.revision or "")
    return fields


# The resampling record of a turn with ``edit.output_resolution: generator``: the size the generator ran and
# composited at (0 without an edit output), and the per-axis factor by which this turn resampled the image's
# state (native / previous size when the edit was accepted, else 1).
RESAMPLING_COLUMNS = ["native_width", "native_height", "resample_x", "resample_y"]


def _record_resampling(decided: dict[str, dict], source_of: dict, prev: records.StateDir,
                       edit: records.StateDir) -> dict[str, tuple[int, int]]:
    """Fill the resampling columns of every row; the new (width, height) of each image whose size changed."""
    sizes = {}
    for image_id, row in decided.items():
        before = _size(prev.image_path(image_id))
        native = _size(edit.image_path(image_id)) if edit.image_path(image_id).is_file() else (0, 0)
        after = native if source_of[image_id] is edit else before
        row.update(zip(RESAMPLING_COLUMNS, (*native, *resampling.scale_factors(before, after))))
        if after != before:
            sizes[image_id] = after
    return sizes


def _size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _copy_item(source: records.StateDir, out: records.StateDir, image_id: str) -> None:
    """Bytes are copied as they are: both sides were written by the same encoder."""
    for path_of in (source.image_path, source.label_path, source.turnmask_path):
        src = path_of(image_id)
        if src.is_file():
            dst = out.root / src.parent.name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def _updated_annotations(coco: dict, plans: pd.DataFrame, decided: dict, plan: records.PlanDir,
                         turn_index: int) -> dict:
    """Instances after the accepted edits of this turn, at the sizes the images had before it (an image the
    turn resampled has its instances moved to its new size afterwards, the added object's with them)."""
    accepted = {i for i, row in decided.items() if row["decision"] == ACCEPTED}
    removed = {int(plans.loc[i, "ann_id"]) for i in accepted if plans.loc[i, "action"] == "remove"}
    anns = []
    for ann in coco["annotations"]:
        if ann["id"] in removed:
            continue
        image_id = f"{ann['image_id']:012d}"
        if image_id in accepted and plans.loc[image_id, "action"] == "change" and ann["id"] == plans.loc[image_id, "ann_id"]:
            ann = dict(ann, attribute=plans.loc[image_id, "attribute"])
        anns.append(ann)
    for image_id in sorted(accepted):
        # An added object of no known category (a vlm plan's free-text target) is labelled, not annotated.
        if plans.loc[image_id, "action"] != "add" or int(plans.loc[image_id, "category_id"]) < 0:
            continue
        mask = plan.mask(image_id)
        coco_id = int(image_id)
        anns.append({"id": added_ann_id(coco_id, turn_index), "image_id": coco_id,
                     "category_id": int(plans.loc[image_id, "category_id"]), "segmentation": masks.rle_encode(mask),
                     "area": float(mask.sum()), "bbox": masks.bbox(mask), "iscrowd": 0,
                     "attribute": plans.loc[image_id, "attribute"], "added_in_turn": turn_index})
    return dict(coco, annotations=anns)
