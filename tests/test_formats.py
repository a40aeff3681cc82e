"""On-disk formats, keyed seeds, the composite contract and the last-editor-wins rule."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffseg import masks, records
from diffseg.seeding import keyed_rng, keyed_seed, keyed_unit


def test_png_roundtrip_and_single_encoder(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    label = np.arange(600, dtype=np.uint8).reshape(20, 30) % 9
    records.write_png(tmp_path / "a.png", rgb)
    records.write_png(tmp_path / "l.png", label)
    assert np.array_equal(records.read_rgb(tmp_path / "a.png"), rgb)
    assert np.array_equal(records.read_gray(tmp_path / "l.png"), label)
    with Image.open(tmp_path / "a.png") as img:
        assert img.format == "PNG" and img.mode == "RGB" and not img.text
    assert records.encode_png(rgb) == (tmp_path / "a.png").read_bytes()  # deterministic bytes
    with pytest.raises(ValueError, match="uint8"):
        records.encode_png(rgb.astype(np.float32))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    records.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with records.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert records.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_table_roundtrip_is_byte_stable(tmp_path):
    df = pd.DataFrame({"image_id": ["b", "a"], "status": ["ok", "failed"], "reason": ["", "nan"]})
    records.write_table(tmp_path / "m1.parquet", df)
    records.write_table(tmp_path / "m2.parquet", df)
    assert (tmp_path / "m1.parquet").read_bytes() == (tmp_path / "m2.parquet").read_bytes()
    pd.testing.assert_frame_equal(records.read_table(tmp_path / "m1.parquet"), df)


def test_state_absent_label_means_authentic(tmp_path):
    state = records.StateDir(tmp_path)
    assert not state.label(image_id="x", shape=(4, 5)).any()
    assert state.label("x", (4, 5)).shape == (4, 5)


def test_keyed_seeds_are_stable_and_order_free():
    assert keyed_seed(0, "propose", "000000000001", 1) == keyed_seed(0, "propose", "000000000001", 1)
    assert keyed_seed(0, "propose", "a", 1) != keyed_seed(0, "propose", "a", 2)
    assert keyed_seed(0, "x") != keyed_seed(1, "x")
    # A fixed value guards against an accidental switch to a salted or order-dependent hash.
    assert keyed_seed(0, "a") == int.from_bytes(__import__("hashlib").sha256(b"0\x1fa").digest()[:8], "big") >> 1
    ids = [f"img{i}" for i in range(50)]
    forward = {i: keyed_rng(3, "t", i).integers(1 << 30) for i in ids}
    backward = {i: keyed_rng(3, "t", i).integers(1 << 30) for i in reversed(ids)}
    assert forward == backward
    assert 0 <= keyed_unit(0, "s") < 1


def test_composite_keeps_outside_bits_and_label_follows_mask():
    rng = np.random.default_rng(1)
    before = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), bool)
    mask[5:20, 10:30] = True
    out = masks.composite(before, generated, mask)
    assert np.array_equal(out[~mask], before[~mask])
    assert np.array_equal(out[mask], generated[mask])
    label = masks.update_label(np.zeros((32, 40), np.uint8), mask, 3)
    assert set(np.unique(label[mask])) == {3} and not label[~mask].any()
    with pytest.raises(ValueError):
        masks.composite(before, generated[:10], mask)


def test_last_editor_wins_and_turn_bits():
    label = np.zeros((10, 10), np.uint8)
    turns = np.zeros((10, 10), np.uint8)
    first = np.zeros((10, 10), bool)
    first[0:6, 0:6] = True
    second = np.zeros((10, 10), bool)
    second[4:10, 4:10] = True
    label = masks.update_label(label, first, 1)
    turns = masks.update_turnmask(turns, first, 1)
    label = masks.update_label(label, second, 2)
    turns = masks.update_turnmask(turns, second, 2)
    assert label[5, 5] == 2 and label[0, 0] == 1 and label[9, 9] == 2 and label[0, 9] == 0
    assert turns[5, 5] == 0b11 and turns[0, 0] == 0b01 and turns[9, 9] == 0b10 and turns[0, 9] == 0
    with pytest.raises(ValueError):
        masks.update_turnmask(turns, first, 9)


def test_rle_roundtrip_and_dilation():
    mask = np.zeros((17, 23), bool)
    mask[3:9, 4:15] = True
    rle = masks.rle_encode(mask)
    assert isinstance(rle["counts"], str)
    assert np.array_equal(masks.rle_decode(rle), mask)
    grown = masks.dilate(mask, 2)
    assert grown.sum() > mask.sum() and grown[mask].all()
    assert masks.bbox(mask) == [4.0, 3.0, 11.0, 6.0]
