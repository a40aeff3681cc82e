"""A small assembled dataset in the exact on-disk format `assemble` writes, for detector tests.

Edited images carry a bright square (so a detector can learn something in a few steps) whose label
is a generator class; every third image is never edited.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffseg import masks, records

CLASSES = ["authentic", "sd2", "sdxl"]  # generator names that params.yaml knows


def build_dataset(root: Path, n: int = 18, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = records.StateDir(root)
    rows = []
    for i in range(n):
        image_id = f"{i:012d}"
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        generator = ""
        if i % 3 != 1:  # every third image, including test ones, stays authentic
            k = 1 + (i // 6) % 2  # both generators appear in every split
            y, x = rng.integers(0, size // 2, 2)
            label[y:y + size // 3, x:x + size // 3] = k
            image[label == k] = 200 + 20 * (k - 1)
            generator = CLASSES[k]
        records.write_png(data.image_path(image_id), image)
        records.write_png(data.label_path(image_id), label)
        split = ["train", "train", "train", "val", "test", "test"][i % 6]
        rows.append({"image_id": image_id, "source_id": f"s{i}", "split": split, "n_edits": int(bool(generator)),
                     "generators": generator, "status": "ok", "reason": ""})
    records.write_table(root / records.MANIFEST, pd.DataFrame(rows))
    records.write_json(root / "classes.json", CLASSES)
    return root


# Two turns per image: (action, generator, box (y0, x0, y1, x1), decision) or None for no edit planned. The
# expected filter results (split, generator, edits, action) are read off this table by the browse tests.
TURN_PLANS = {
    "000000000000": ("train", [("add", "sd2", (2, 2, 10, 12), "accepted"),
                               ("change", "sdxl", (6, 8, 18, 20), "accepted")]),
    "000000000001": ("train", [None, None]),
    "000000000002": ("val", [("remove", "sdxl", (10, 4, 22, 14), "accepted"),
                             ("add", "sd2", (0, 0, 6, 6), "rejected")]),
    "000000000003": ("test", [("add", "sd2", (12, 12, 28, 28), "accepted"), None]),
    "000000000004": ("test", [None, None]),
    "000000000005": ("test", [("change", "sdxl", (0, 16, 14, 30), "accepted"),
                              ("remove", "sd2", (20, 0, 30, 10), "accepted")]),
}


def build_turns_dataset(root: Path, states: Path | None = None, size: int = 32) -> Path:
    """A dataset as `assemble` writes it after two turns, with turn masks and metadata.parquet; with ``states``,
    also the pipeline's states (``states/source`` and ``states/turns/t<k>/state``) it was assembled from."""
    data = records.StateDir(root)
    manifest, metadata = [], []
    for n, (image_id, (split, plans)) in enumerate(TURN_PLANS.items()):
        image = np.random.default_rng(n).integers(40, 200, (size, size, 3), dtype=np.uint8)
        label, turnmask = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
        if states is not None:
            records.write_png(records.StateDir(states / "source").image_path(image_id), image)
        for t, plan in enumerate(plans, start=1):
            row = {"image_id": image_id, "turn": f"t{t}", "turn_index": t, "action": "none", "target": "",
                   "prompt": "", "generator": "", "seed": 0, "model": "", "revision": "", "mask_area": 0.0,
                   "change_in_mask": 0.0, "decision": "none", "reason": "no feasible plan", "split": split}
            if plan is not None:
                action, generator, (y0, x0, y1, x1), decision = plan
                mask = np.zeros((size, size), bool)
                mask[y0:y1, x0:x1] = True
                row.update(action=action, target=f"thing{n}", prompt=f"a {action} of thing{n} in turn {t}",
                           generator=generator, seed=1000 * n + t, model=f"models/twins/{generator}",
                           revision="abc123" if generator == "sdxl" else "", mask_area=float(mask.mean()),
                           change_in_mask=12.5 * t, decision=decision,
                           reason="passed heuristics" if decision == "accepted" else "change in mask too small")
                if decision == "accepted":
                    image = image.copy()
                    image[mask] = (255, 60 * t, 40 * n)
                    label = masks.update_label(label, mask, CLASSES.index(generator))
                    turnmask = masks.update_turnmask(turnmask, mask, t)
            metadata.append(row)
            if states is not None:
                state = records.StateDir(states / "turns" / f"t{t}" / "state")
                records.write_png(state.image_path(image_id), image)
                records.write_png(state.turnmask_path(image_id), turnmask)
        records.write_png(data.image_path(image_id), image)
        records.write_png(data.label_path(image_id), label)
        records.write_png(data.turnmask_path(image_id), turnmask)
        kept = [p for p in plans if p is not None and p[3] == "accepted"]
        manifest.append({"image_id": image_id, "source_id": f"s{n}", "origin": f"fixture:{n}", "url": "",
                         "license": "CC0", "width": size, "height": size, "split": split, "n_edits": len(kept),
                         "edited_fraction": float((label > 0).mean()),
                         "generators": ",".join(sorted({p[1] for p in kept})), "status": "ok", "reason": ""})
    records.write_table(root / records.MANIFEST, pd.DataFrame(manifest))
    records.write_table(root / "metadata.parquet", pd.DataFrame(metadata))
    records.write_json(root / "classes.json", CLASSES)
    return root
