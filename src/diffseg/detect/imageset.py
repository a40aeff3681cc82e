"""The image-level view of an assembled dataset that the image-level baselines learn and are scored on."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from diffseg import records


class ImageSet(Dataset):
    """Items of one split of an assembled dataset: (uint8 RGB image, edited 0/1, image_id), read lazily."""

    def __init__(self, root: Path, split: str, keep: Callable[[pd.DataFrame], pd.Series] | None = None):
        self.data = records.StateDir(root)
        manifest = self.data.manifest()
        manifest = manifest[manifest["split"] == split]
        if keep is not None:  # a manifest filter, e.g. diffseg.detect.data.seen_only
            manifest = manifest[keep(manifest)]
        self.items = manifest.sort_values("image_id").reset_index(drop=True)
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return (self.items["n_edits"] > 0).to_numpy().astype(np.int64)

    def __getitem__(self, index: int):
        image_id = self.items.at[index, "image_id"]
        return self.data.image(image_id), int(self.items.at[index, "n_edits"] > 0), image_id
