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

ALPHA = 0.55  # overlay opacity: enough to see the class, little enough to see the edit


def class_colours(n_classes: int) -> np.ndarray:
    """RGB in [0, 1]; authentic is gray and transparent in the overlay, so no generator may be gray."""
    cmap = plt.get_cmap("tab20")
    # tab20 without its two grays (indices 14, 15): 18 distinct generator colours before repeating.
    palette = [cmap(i)[:3] for i in (0, 2, 4, 6, 8, 10, 12, 16, 18, 1, 3, 5, 7, 9, 11, 13, 17, 19)]
    return np.array([(0.5, 0.5, 0.5)] + [palette[i % len(palette)] for i in range(n_classes - 1)])


def overlay(image: np.ndarray, label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32) / 255.0
    edited = label > 0
    out[edited] = (1 - ALPHA) * out[edited] + ALPHA * colours[label[edited]]
    return out


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
