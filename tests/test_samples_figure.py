"""The dataset's sample figure: each image beside its label in flat class colours, exactly where the label says."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_fixture import CLASSES, build_dataset
from diffseg import records
from diffseg.dataset import figure


def _chosen(root, ids):
    data = records.StateDir(root)
    rows = []
    for image_id in ids:
        label = records.read_gray(data.label_path(image_id))
        rows.append({"image_id": image_id, "n_edits": int(label.any()), "edited_fraction": float((label > 0).mean()),
                     "generators": CLASSES[label.max()] if label.any() else ""})
    return data, pd.DataFrame(rows)


def test_layout_and_label_colours(tmp_path):
    root = build_dataset(tmp_path / "dataset", n=6, size=64)
    # Images 0 and 2 hold sd2 squares, 1 is never edited: sdxl appears in none of them.
    data, images = _chosen(root, ["000000000000", "000000000001", "000000000002"])
    places = figure.sample_grid(data, images, CLASSES, 3, tmp_path / "samples.png")
    canvas = records.read_rgb(tmp_path / "samples.png")
    pair_w, pair_h = 2 * figure.TILE + figure.GAP, figure.TITLE_H + figure.TILE
    legend_h = figure.GAP + figure.LEGEND_ROW_H  # two classes shown: one legend row
    height, width = figure.GAP + 2 * (pair_h + figure.GAP) + legend_h, figure.GAP + 2 * (pair_w + figure.GAP)
    assert canvas.shape == (height, width, 3)
    # Most edits first, then the larger edited share, then the id; the never-edited image comes last.
    order = images.sort_values(["n_edits", "edited_fraction", "image_id"], ascending=[False, False, True])
    assert [p.image_id for p in places] == list(order["image_id"])
    assert [p.image_xy for p in places] == [(8, 28), (8 + pair_w + 8, 28), (8, 28 + pair_h + 8)]
    colours = figure.colours_uint8(len(CLASSES))
    for place in places:
        assert place.size == (256, 256)  # 64 px upscaled by 4
        label = records.read_gray(data.label_path(place.image_id))
        image = data.image(place.image_id)
        x, y = place.label_xy
        assert place.label_xy == (place.image_xy[0] + 256 + 8, place.image_xy[1])
        # Every label pixel is a 4 x 4 block of its class colour.
        assert np.array_equal(canvas[y:y + 256, x:x + 256], np.repeat(np.repeat(colours[label], 4, 0), 4, 1))
        x, y = place.image_xy
        tile = canvas[y:y + 256, x:x + 256]
        big_label = np.repeat(np.repeat(label, 4, 0), 4, 1)
        big_image = np.repeat(np.repeat(image, 4, 0), 4, 1)
        outline = np.all(tile == colours[big_label], axis=2) & (big_label > 0) & np.any(tile != big_image, axis=2)
        # Outside the outlines the image is untouched; the outline is OUTLINE px wide along each square's border.
        assert np.array_equal(tile[~outline], big_image[~outline])
        if label.any():
            ys, xs = np.nonzero(big_label)
            assert outline[ys.min(), xs.min()] and outline[ys.min() + 1, xs.min() + 1]
            assert not outline[ys.min() + 2, xs.min() + 2] and not outline[big_label == 0].any()
        else:
            assert not outline.any()
    # The legend shows authentic and sd2 only: the second swatch is sd2's colour, and no third entry exists.
    top = figure.GAP + 2 * (pair_h + figure.GAP)
    for i, k in enumerate([0, 1]):
        x = figure.GAP + i * figure.LEGEND_ENTRY_W
        assert np.all(canvas[top:top + figure.SWATCH, x:x + figure.SWATCH] == colours[k])
    x = figure.GAP + 2 * figure.LEGEND_ENTRY_W
    assert np.all(canvas[top:top + figure.SWATCH, x:x + figure.SWATCH] == 255)


def test_same_bytes_twice(tmp_path):
    root = build_dataset(tmp_path / "dataset", n=4, size=64)
    data, images = _chosen(root, ["000000000000", "000000000002", "000000000003"])
    figure.sample_grid(data, images, CLASSES, 2, tmp_path / "a.png")
    figure.sample_grid(data, images.iloc[::-1], CLASSES, 2, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
