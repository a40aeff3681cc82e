"""Label maps drawn over images, one colour per class: the dataset's sample grid and ``predict``'s overlays."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
