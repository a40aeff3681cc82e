"""The sample grid: images with their label maps overlaid, one colour per class, and a legend."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from diffseg import records  # noqa: E402
from diffseg.overlays import class_colours, overlay  # noqa: E402

def sample_grid(dataset: records.StateDir, images: pd.DataFrame, classes: list[str], n: int, path: Path) -> None:
    """The ``n`` images with the most edits (ties by id), so the figure shows multi-turn examples."""
    chosen = images.sort_values(["n_edits", "edited_fraction", "image_id"], ascending=[False, False, True]).head(n)
    colours = class_colours(len(classes))
    cols = min(4, len(chosen))
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), chosen.itertuples()):
        image = dataset.image(row.image_id)
        label = records.read_gray(dataset.label_path(row.image_id))
        ax.imshow(overlay(image, label, colours))
        ax.set_title(f"{int(row.image_id)}: {row.n_edits} edit(s)", fontsize=8)
    fig.legend(handles=[Patch(color=colours[k], label=name) for k, name in enumerate(classes)],
               loc="lower center", ncol=min(len(classes), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with records.atomic_path(path) as tmp:
        # Fixed metadata keeps the PNG bytes identical between runs.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
