"""Generator sizes and whole-state resampling (``edit.output_resolution: generator``), and the JPEG-grid
blockiness measure of the dataset's shortcut cues."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diffseg import masks, resampling
from diffseg.dataset.cues import blockiness
from diffseg.params import Generator


@pytest.mark.parametrize("family, resolution, size", [("sd2", 512, (512, 384)), ("sdxl", 1024, (1024, 768)),
                                                      ("kandinsky22", 768, (768, 576)), ("glide", 256, (256, 256))])
def test_generator_size_of_a_coco_sized_image(family, resolution, size):
    gen = Generator(name="g", family=family, model="m", resolution=resolution)
    assert resampling.generator_size(gen, 640, 480) == size
    assert resampling.scale_factors((640, 480), size) == (round(size[0] / 640, 6), round(size[1] / 480, 6))


def test_resampled_maps_keep_their_values_and_an_image_at_its_own_size_is_unchanged():
    label = np.zeros((6, 8), np.uint8)
    label[2:4, 2:6] = 3
    up = resampling.resample_map(label, (16, 12))
    assert set(np.unique(up)) == {0, 3} and int((up == 3).sum()) == 4 * int((label == 3).sum())
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(resampling.resample_image(image, (8, 6)), image)


def test_instances_follow_their_image_to_its_new_size():
    small = np.zeros((8, 16), bool)
    small[2:6, 4:10] = True  # 6 x 4 at (4, 2)
    dot = np.zeros((8, 16), bool)
    dot[6, 14] = True  # one pixel: gone at half the size (nearest samples odd rows and columns)
    coco = {"images": [{"id": 1, "width": 16, "height": 8}, {"id": 2, "width": 16, "height": 8}],
            "annotations": [{"id": 10, "image_id": 1, "segmentation": masks.rle_encode(small), "area": 24.0,
                             "bbox": masks.bbox(small)},
                            {"id": 11, "image_id": 1, "segmentation": masks.rle_encode(dot), "area": 1.0,
                             "bbox": masks.bbox(dot)},
                            {"id": 20, "image_id": 2, "segmentation": masks.rle_encode(small), "area": 24.0,
                             "bbox": masks.bbox(small)}]}
    up = resampling.scale_annotations(coco, {1: (32, 16)})
    assert up["images"] == [{"id": 1, "width": 32, "height": 16}, {"id": 2, "width": 16, "height": 8}]
    first, dot_up, other = up["annotations"]
    assert (first["bbox"], first["area"], first["segmentation"]["size"]) == ([8.0, 4.0, 12.0, 8.0], 96.0, [16, 32])
    assert (dot_up["bbox"], dot_up["area"]) == ([28.0, 12.0, 2.0, 2.0], 4.0)
    assert other == coco["annotations"][2]  # another image's instances are left as they were
    down = resampling.scale_annotations(coco, {1: (8, 4)})
    assert [a["id"] for a in down["annotations"]] == [10, 20]
    assert (down["annotations"][0]["bbox"], down["annotations"][0]["area"]) == ([2.0, 1.0, 3.0, 2.0], 6.0)


def test_blockiness_of_a_block_image_by_hand():
    """Four flat 8x8 blocks (100, 120 / 140, 160): every within-block step is 0; the 16 horizontal boundary
    pairs step 20 and the 16 vertical ones 40, mean 30."""
    image = np.zeros((16, 16, 3), np.uint8)
    image[:8, :8], image[:8, 8:], image[8:, :8], image[8:, 8:] = 100, 120, 140, 160
    assert blockiness(image) == 30.0
    top = np.zeros((16, 16), bool)
    top[:8] = True  # only the horizontal boundary between 100 and 120
    assert blockiness(image, top) == 20.0
    one_block = np.zeros((16, 16), bool)
    one_block[:8, :8] = True
    assert blockiness(image, one_block) is None  # no pair straddles a boundary


def _photo() -> np.ndarray:
    yy, xx = np.mgrid[:128, :128]
    smooth = np.stack([xx * 1.5 + 20, yy * 1.2 + 40, (xx + yy) * 0.6 + 30], -1)
    return np.clip(np.round(smooth + np.random.default_rng(0).normal(0, 2, (128, 128, 3))), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def test_blockiness_finds_the_jpeg_grid_and_loses_it_off_the_grid():
    photo = _photo()
    assert blockiness(photo) == pytest.approx(-0.0174, abs=1e-4)  # never compressed: no grid
    assert blockiness(_jpeg(photo, 90)) == pytest.approx(0.498, abs=0.02)
    assert blockiness(_jpeg(photo, 50)) == pytest.approx(0.652, abs=0.02)
    assert blockiness(_jpeg(photo, 20)) == pytest.approx(3.974, abs=0.05)
    # a 4-pixel shift puts the measuring grid between the JPEG's boundaries: the steps are no longer there
    assert blockiness(_jpeg(photo, 20)[4:, 4:]) == pytest.approx(-0.444, abs=0.05)
