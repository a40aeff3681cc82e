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

SIZE_MULTIPLE = 64  # latent grids of every family divide evenly at multiples of 64 pixels


def native_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) with the longer side at ``resolution``, both multiples of 64, aspect kept."""
    scale = resolution / max(width, height)
    return tuple(max(SIZE_MULTIPLE, int(round(side * scale / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
                 for side in (width, height))


def to_uint8(generated: np.ndarray) -> np.ndarray:
    return np.clip(np.round(generated * 255.0), 0, 255).astype(np.uint8)


def check_generators(params: Params, names: set[str]) -> list[families.Family]:
    """Adapters of the generators this turn uses, validated before any work."""
    adapters = []
    for gen in params.edit.generators:
        if gen.name in names:
            adapter = families.create(gen, params.edit.device, params.edit.cpu_offload)
            adapter.check_source()
            adapters.append(adapter)
    return adapters


def run(params: Params, turn: str, out_dir: Path) -> pd.DataFrame:
    turn_index = params.turn_names.index(turn) + 1
    prev = records.StateDir(params.turns[turn].prev)
    plan = records.PlanDir(records.turn_dir(turn, "plan"))
    out = records.StateDir(records.fresh_dir(out_dir))
    todo = plan.manifest()
    todo = todo[todo["status"] == records.OK].sort_values("image_id")
    class_id = {name: k for k, name in enumerate(params.classes)}

    rows = []
    for adapter in check_generators(params, set(todo["generator"])):
        items = todo[todo["generator"] == adapter.gen.name]
        started = time.perf_counter()
        adapter.load()
        for batch_rows in _batches(items, prev, adapter.gen.resolution, params.edit.batch_size):
            rows.extend(_edit_batch(adapter, batch_rows, prev, plan, out, class_id[adapter.gen.name], turn_index))
        adapter.unload()
        print(f"edit@{turn}: {adapter.gen.name}: {len(items)} item(s) in {time.perf_counter() - started:.1f} s")

    manifest = pd.DataFrame(rows, columns=["image_id", "turn", "generator", "class_id", "native_width",
                                           "native_height", "status", "reason"])
    records.write_table(out.root / records.MANIFEST, manifest)
    records.check_failures(f"edit@{turn}", manifest["status"], params.max_item_failure)
    print(f"edit@{turn}: {int((manifest['status'] == records.OK).sum())} edited, "
          f"{int((manifest['status'] == records.FAILED).sum())} failed")
    return manifest


def _batches(items: pd.DataFrame, prev: records.StateDir, resolution: int, batch_size: int):
    """Rows grouped by native size (one pipeline call needs one size), then cut into batches."""
    by_size: dict[tuple[int, int], list[dict]] = {}
    for row in items.to_dict("records"):
        with Image.open(prev.image_path(row["image_id"])) as img:
            size = native_size(*img.size, resolution)
        by_size.setdefault(size, []).append(row)
    for size in sorted(by_size):
        group = by_size[size]
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def _edit_batch(adapter: families.Family, batch_rows: list[dict], prev: records.StateDir,
                plan: records.PlanDir, out: records.StateDir, class_id: int, turn_index: int) -> list[dict]:
    befores = [prev.image(r["image_id"]) for r in batch_rows]
    edit_masks = [plan.mask(r["image_id"]) for r in batch_rows]
    height, width = befores[0].shape[:2]
    size = native_size(width, height, adapter.gen.resolution)
    batch = families.Batch(
        images=[Image.fromarray(b).resize(size, Image.Resampling.LANCZOS) for b in befores],
        masks=[Image.fromarray(masks.resize_mask(m, size).astype(np.uint8) * 255) for m in edit_masks],
        prompts=[r["prompt"] for r in batch_rows], negative_prompts=[r["negative_prompt"] for r in batch_rows],
        seeds=[int(r["seed"]) for r in batch_rows])
    base = [{"image_id": r["image_id"], "turn": r["turn"], "generator": adapter.gen.name, "class_id": class_id,
             "native_width": size[0], "native_height": size[1], "status": records.OK, "reason": ""}
            for r in batch_rows]
    try:
        generated = adapter.run(batch)
    except Exception as err:  # noqa: BLE001 - one bad batch (e.g. out of memory) must not stop the stage
        return [dict(row, status=records.FAILED, reason=f"generator error: {type(err).__name__}: {err}"[:500])
                for row in base]

    for row, before, mask, image in zip(base, befores, edit_masks, generated):
        if not np.isfinite(image).all():
            row.update(status=records.FAILED, reason="generator output contains NaN or Inf")
            continue
        h, w = before.shape[:2]
        back = np.asarray(Image.fromarray(to_uint8(image)).resize((w, h), Image.Resampling.LANCZOS))
        image_id = row["image_id"]
        records.write_png(out.image_path(image_id), masks.composite(before, back, mask))
        records.write_png(out.label_path(image_id), masks.update_label(prev.label(image_id, (h, w)), mask, class_id))
        records.write_png(out.turnmask_path(image_id),
                          masks.update_turnmask(prev.turnmask(image_id, (h, w)), mask, turn_index))
    return base
