"""``edit@<turn>``: execute one turn's plan, generator by generator.

Each generator is loaded once and runs its items in batches at its native resolution; the output
is mapped back to the image's own size and composited so that every pixel outside the mask is
bit-identical to the previous state. The label map (last editor wins) and the per-turn mask are
updated exactly on the mask.

Output (``data/turns/<turn>/edit``): ``images/``, ``labels/``, ``turnmasks/`` of edited items and
``manifest.parquet`` (one row per planned edit; ``failed`` rows carry the reason, e.g. NaN output).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from diffseg import masks, records
from diffseg.edit import families
from diffseg.params import Params


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
    turn_index = params.turn_names.index(turn) + 1
    prev = records.StateDir(params.turns[turn].prev)
    plan = records.PlanDir(records.turn_dir(turn, "plan"))
    todo = plan.manifest()
    todo = todo[todo["status"] == records.OK].sort_values("image_id")
    class_id = {name: k for k, name in enumerate(params.classes)}
    adapters = check_generators(params, set(todo["generator"]))  # before the previous output is replaced
    out = records.StateDir(records.fresh_dir(out_dir))

    rows = []
    for adapter in adapters:
        items = todo[todo["generator"] == adapter.gen.name]
        started = time.perf_counter()
        try:
            adapter.load()
            for batch_rows in _batches(items, prev, adapter, params.edit.batch_size):
                rows.extend(_edit_batch(adapter, batch_rows, prev, plan, out, class_id[adapter.gen.name], turn_index))
        finally:  # one generator resident at a time, also when a load fails half-way
            adapter.unload()
        print(f"edit@{turn}: {adapter.gen.name}: {len(items)} item(s) in {time.perf_counter() - started:.1f} s")

    manifest = pd.DataFrame(rows, columns=["image_id", "turn", "generator", "class_id", "native_width",
                                           "native_height", "status", "reason"])
    records.write_table(out.root / records.MANIFEST, manifest)
    records.check_failures(f"edit@{turn}", manifest["status"], params.max_item_failure)
    print(f"edit@{turn}: {int((manifest['status'] == records.OK).sum())} edited, "
          f"{int((manifest['status'] == records.FAILED).sum())} failed")
    return manifest


def _batches(items: pd.DataFrame, prev: records.StateDir, adapter: families.Family, batch_size: int):
    """Rows grouped by native size (one pipeline call needs one size), then cut into batches."""
    by_size: dict[tuple[int, int], list[dict]] = {}
    for row in items.to_dict("records"):
        with Image.open(prev.image_path(row["image_id"])) as img:
            size = adapter.native_size(*img.size)
        by_size.setdefault(size, []).append(row)
    for size in sorted(by_size):
        group = by_size[size]
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def generate(adapter: families.Family, befores: list[np.ndarray], edit_masks: list[np.ndarray], prompts: list[str],
             negative_prompts: list[str], seeds: list[int]) -> tuple[tuple[int, int], list[np.ndarray | None]]:
    """One pipeline call on images of one native size: resized to it, run, each mapped back to its own size.

    Returns the native (width, height) and per image the generated uint8 image at the image's own size,
    or None where the output is not finite. Compositing is the caller's (``masks.composite``).
    """
    height, width = befores[0].shape[:2]
    size = adapter.native_size(width, height)
    batch = families.Batch(
        images=[Image.fromarray(b).resize(size, Image.Resampling.LANCZOS) for b in befores],
        masks=[Image.fromarray(masks.resize_mask(m, size).astype(np.uint8) * 255) for m in edit_masks],
        prompts=list(prompts), negative_prompts=list(negative_prompts), seeds=[int(s) for s in seeds])
    backs = []
    for image, before in zip(adapter.run(batch), befores):  # one native size can come from several image sizes
        back_size = (before.shape[1], before.shape[0])
        backs.append(np.asarray(Image.fromarray(to_uint8(image)).resize(back_size, Image.Resampling.LANCZOS))
                     if np.isfinite(image).all() else None)
    return size, backs


def _edit_batch(adapter: families.Family, batch_rows: list[dict], prev: records.StateDir,
                plan: records.PlanDir, out: records.StateDir, class_id: int, turn_index: int) -> list[dict]:
    befores = [prev.image(r["image_id"]) for r in batch_rows]
    edit_masks = [plan.mask(r["image_id"]) for r in batch_rows]
    height, width = befores[0].shape[:2]
    size = adapter.native_size(width, height)
    base = [{"image_id": r["image_id"], "turn": r["turn"], "generator": adapter.gen.name, "class_id": class_id,
             "native_width": size[0], "native_height": size[1], "status": records.OK, "reason": ""}
            for r in batch_rows]
    try:
        _, backs = generate(adapter, befores, edit_masks, [r["prompt"] for r in batch_rows],
                            [r["negative_prompt"] for r in batch_rows], [r["seed"] for r in batch_rows])
    except Exception as err:  # noqa: BLE001 - one bad batch (e.g. out of memory) must not stop the stage
        return [dict(row, status=records.FAILED, reason=f"generator error: {type(err).__name__}: {err}"[:500])
                for row in base]

    for row, before, mask, back in zip(base, befores, edit_masks, backs):
        if back is None:
            row.update(status=records.FAILED, reason="generator output contains NaN or Inf")
            continue
        h, w = before.shape[:2]
        image_id = row["image_id"]
        records.write_png(out.image_path(image_id), masks.composite(before, back, mask))
        records.write_png(out.label_path(image_id), masks.update_label(prev.label(image_id, (h, w)), mask, class_id))
        records.write_png(out.turnmask_path(image_id),
                          masks.update_turnmask(prev.turnmask(image_id, (h, w)), mask, turn_index))
    return base
