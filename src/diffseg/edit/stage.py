"""``edit@<turn>``: execute one turn's plan, generator by generator.

Each generator is loaded once and runs its items in batches at its native resolution. With
``edit.output_resolution: source`` the output is mapped back to the image's own size and composited
there; with ``generator`` the whole state (image, label, turn mask) is resampled to the native size
instead and the output composited at that size, so inside and outside the mask share one resampling.
Either way every pixel outside the mask is bit-identical to the state the edit started from, at the
size it was composited, and the label map (last editor wins) and the per-turn mask are updated exactly
on the mask.

Batches run on an executor (:mod:`diffseg.edit.executors`: in-process, or Ray actors) and are
journaled as they finish (:mod:`diffseg.edit.journal`), so a killed run resumes; the output folder is
assembled from the journal at the end, the same bytes whichever executor ran and however often the
run was interrupted.

Output (``data/turns/<turn>/edit``): ``images/``, ``labels/``, ``turnmasks/`` of edited items and
``manifest.parquet`` (one row per planned edit; ``failed`` rows carry the reason, e.g. NaN output).
A retry round (``t<k>_retry<n>``) runs the same way on its plan, whose only ``ok`` rows are the edits it retries.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from diffseg import masks, records, resampling, resume
from diffseg.edit import executors, families, fitting, journal
from diffseg.edit.jobs import Inputs, Job, Outcome
from diffseg.params import Params
from diffseg.runtime import pick_device


def to_uint8(generated: np.ndarray) -> np.ndarray:
    return np.clip(np.round(generated * 255.0), 0, 255).astype(np.uint8)


def check_generators(params: Params, names: set[str]) -> list[families.Family]:
    """Adapters of the generators this turn uses, validated before any work."""
    adapters = []
    for gen in params.edit.generators:
        if gen.name in names:
            adapter = families.create(gen, params.edit.device, params.edit.cpu_offload, params.edit.vae_tiling)
            adapter.check_source()
            adapters.append(adapter)
    return adapters


def run(params: Params, turn: str, out_dir: Path) -> pd.DataFrame:
    executor = executors.create(params.edit, f"edit@{turn}")  # a bad cluster address stops here, before work
    _, turn_index, _ = params.turn_of(turn)  # a retry round edits turn t<k>'s bit, as its first attempt would
    prev = records.StateDir(params.turns[turn].prev)
    plan = records.PlanDir(records.turn_dir(turn, "plan"))
    todo = plan.manifest()
    todo = todo[todo["status"] == records.OK].sort_values("image_id")
    class_id = {name: k for k, name in enumerate(params.classes)}
    adapters = check_generators(params, set(todo["generator"]))

    groups, all_jobs = [], []
    for adapter in adapters:
        batches = _batches(todo[todo["generator"] == adapter.gen.name], prev, adapter, params.edit.batch_size)
        jobs = [Job(len(all_jobs) + k, adapter.gen.name, size, rows) for k, (size, rows) in enumerate(batches)]
        groups.append((adapter.gen, jobs))
        all_jobs += jobs
    log = journal.Journal(f"edit-{turn}", _fingerprint(params, turn_index, prev, plan, todo))
    done = log.finished()
    print(f"edit@{turn}: {len(all_jobs)} batch(es): {len(done & {j.index for j in all_jobs})} reused from an "
          f"interrupted run, {len([j for j in all_jobs if j.index not in done])} to run")

    native = params.edit.output_resolution == "generator"
    auto = params.edit.memory == "auto"

    def prepare(job: Job) -> Inputs:
        return Inputs([prev.image(r["image_id"]) for r in job.rows], [plan.mask(r["image_id"]) for r in job.rows],
                      [r["prompt"] for r in job.rows], [r["negative_prompt"] for r in job.rows],
                      [int(r["seed"]) for r in job.rows], native, auto)

    def finish(job: Job, inputs: Inputs, outcome: Outcome) -> None:
        rows = _finish(job, inputs, outcome, prev, log.items, class_id[job.generator], turn_index)
        log.record(job.index, rows, retry=outcome.retry)

    executor.run([(gen, [j for j in jobs if j.index not in done]) for gen, jobs in groups], prepare, attempt, finish)

    out = records.StateDir(records.fresh_dir(out_dir))
    manifest = _assemble(log, all_jobs, out, MANIFEST_COLUMNS + (fitting.MEMORY_COLUMNS if auto else []))
    records.write_table(out.root / records.MANIFEST, manifest)
    records.check_failures(f"edit@{turn}", manifest["status"], params.max_item_failure)
    log.remove()  # kept when too many items failed: a rerun with a looser threshold reuses the work
    print(f"edit@{turn}: {int((manifest['status'] == records.OK).sum())} edited, "
          f"{int((manifest['status'] == records.FAILED).sum())} failed")
    return manifest


MANIFEST_COLUMNS = ["image_id", "turn", "generator", "class_id", "native_width", "native_height", "status", "reason"]


def _assemble(log: journal.Journal, jobs: list[Job], out: records.StateDir, columns: list[str]) -> pd.DataFrame:
    """Copy the journaled items into ``out``, in batch order; the manifest of every planned edit."""
    rows = [row for job in jobs for row in log.rows(job.index)]
    for row in rows:
        if row["status"] == records.OK:
            for kind in ("image_path", "label_path", "turnmask_path"):
                source = getattr(log.items, kind)(row["image_id"])
                records.write_bytes(getattr(out, kind)(row["image_id"]), source.read_bytes())
    return pd.DataFrame(rows, columns=columns)


def _fingerprint(params: Params, turn_index: int, prev: records.StateDir, plan: records.PlanDir,
                 todo: pd.DataFrame) -> str:
    """Every input of the output: the files read, the generator settings, the code, the libraries."""
    import diffusers
    import torch
    import transformers

    settings = dataclasses.asdict(params.edit)
    del settings["executor"], settings["ray"]  # where batches run does not change what they produce
    package = Path(records.__file__).parent
    base = ("records.py", "masks.py", "runtime.py", "resampling.py", "resume.py")
    code = sorted((package / "edit").glob("*.py")) + [package / name for name in base]
    files = [p for image_id in todo["image_id"] for p in (
        prev.image_path(image_id), prev.label_path(image_id), prev.turnmask_path(image_id), plan.mask_path(image_id))]
    return resume.fingerprint([
        json.dumps({"edit": settings, "turn": turn_index, "classes": params.classes,
                    "device": pick_device(params.edit.device), "threads": torch.get_num_threads(),
                    "versions": [torch.__version__, diffusers.__version__, transformers.__version__]},
                   sort_keys=True, default=str),
        plan.root / records.MANIFEST, *code, *files])


def _batches(items: pd.DataFrame, prev: records.StateDir, adapter: families.Family,
             batch_size: int) -> list[tuple[tuple[int, int], list[dict]]]:
    """Rows grouped by native size (one pipeline call needs one size), then cut into batches: (size, rows)."""
    by_size: dict[tuple[int, int], list[dict]] = {}
    for row in items.to_dict("records"):
        with Image.open(prev.image_path(row["image_id"])) as img:
            size = adapter.native_size(*img.size)
        by_size.setdefault(size, []).append(row)
    return [(size, by_size[size][start:start + batch_size])
            for size in sorted(by_size) for start in range(0, len(by_size[size]), batch_size)]


def generate(adapter: families.Family, befores: list[np.ndarray], edit_masks: list[np.ndarray], prompts: list[str],
             negative_prompts: list[str], seeds: list[int],
             native: bool = False) -> tuple[tuple[int, int], list[np.ndarray | None]]:
    """One pipeline call on images of one native size: resized to it, run, each mapped back to its own size
    (or, with ``native``, kept at the native size).

    Returns the native (width, height) and per image the generated uint8 image, or None where the output is
    not finite. Compositing is the caller's (``masks.composite``).
    """
    height, width = befores[0].shape[:2]
    size = adapter.native_size(width, height)
    batch = families.Batch(
        images=[Image.fromarray(resampling.resample_image(b, size)) for b in befores],
        masks=[Image.fromarray(masks.resize_mask(m, size).astype(np.uint8) * 255) for m in edit_masks],
        prompts=list(prompts), negative_prompts=list(negative_prompts), seeds=[int(s) for s in seeds])
    backs = []
    for image, before in zip(adapter.run(batch), befores):  # one native size can come from several image sizes
        back_size = size if native else (before.shape[1], before.shape[0])
        backs.append(np.asarray(Image.fromarray(to_uint8(image)).resize(back_size, Image.Resampling.LANCZOS))
                     if np.isfinite(image).all() else None)
    return size, backs


def attempt(adapter: families.Family, inputs: Inputs) -> Outcome:
    """The generated images (see :func:`generate`), or the reason when the pipeline call raised; with
    ``edit.memory: auto`` run in chunks that fit, stepping down on out-of-memory (:mod:`diffseg.edit.fitting`)."""
    if inputs.fitted:
        return fitting.attempt(adapter, inputs, _call)
    try:
        return Outcome(_call(adapter, inputs))
    except Exception as err:  # noqa: BLE001 - one bad batch (e.g. out of memory) must not stop the stage
        return Outcome(None, f"generator error: {type(err).__name__}: {err}"[:500])


def _call(adapter: families.Family, inputs: Inputs) -> list[np.ndarray | None]:
    return generate(adapter, inputs.befores, inputs.masks, inputs.prompts, inputs.negative_prompts, inputs.seeds,
                    inputs.native)[1]


def _finish(job: Job, inputs: Inputs, outcome: Outcome, prev: records.StateDir, out: records.StateDir,
            class_id: int, turn_index: int) -> list[dict]:
    """Composite the batch's outputs into ``out``; its manifest rows."""
    base = [{"image_id": r["image_id"], "turn": r["turn"], "generator": job.generator, "class_id": class_id,
             "native_width": job.size[0], "native_height": job.size[1], "status": records.OK, "reason": ""}
            for r in job.rows]
    if outcome.memory is not None:
        for row, setting in zip(base, outcome.memory):
            row.update(setting)
    if outcome.failed:
        return [dict(row, status=records.FAILED, reason=outcome.error) for row in base]
    reasons = outcome.reasons or [""] * len(base)
    for row, before, mask, back, why in zip(base, inputs.befores, inputs.masks, outcome.images, reasons):
        if back is None:
            row.update(status=records.FAILED, reason=why or "generator output contains NaN or Inf")
            continue
        h, w = before.shape[:2]
        image_id = row["image_id"]
        label, turnmask = prev.label(image_id, (h, w)), prev.turnmask(image_id, (h, w))
        if inputs.native:  # the whole state moves to the native size: one resampling inside and outside the mask
            size = job.size
            before, mask = resampling.resample_image(before, size), masks.resize_mask(mask, size)
            label, turnmask = resampling.resample_map(label, size), resampling.resample_map(turnmask, size)
        records.write_png(out.image_path(image_id), masks.composite(before, back, mask))
        records.write_png(out.label_path(image_id), masks.update_label(label, mask, class_id))
        records.write_png(out.turnmask_path(image_id), masks.update_turnmask(turnmask, mask, turn_index))
    return base
