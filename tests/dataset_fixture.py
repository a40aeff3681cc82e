"""A small assembled dataset in the exact on-disk format `assemble` writes, for detector tests.

Edited images carry a bright square (so a detector can learn something in a few steps) whose label
is a generator class; every third image is never edited.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffseg import records

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
