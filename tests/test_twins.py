"""Every twin loads through its family adapter's real ``from_pretrained`` line and runs reproducibly."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffseg.edit import families, twins
from diffseg.params import Generator


@pytest.mark.parametrize("family", sorted(twins.BUILDERS))
def test_twin_loads_and_is_deterministic(twins_dir, family):
    assert family in families.FAMILIES
    gen = Generator(name="g", family=family, model=str(twins_dir / family), steps=2, resolution=128,
                    options={"max_sequence_length": 32} if family in ("flux_fill", "sd3") else {})
    adapter = families.create(gen)
    adapter.load()
    assert type(adapter.pipe).__name__ == families.FAMILIES[family].pipeline
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 32:96] = 255
    batch = families.Batch([image], [Image.fromarray(mask)], ["a red cup"], ["blurry"], [7])
    first, again = adapter.run(batch), adapter.run(batch)
    other = adapter.run(families.Batch([image], [Image.fromarray(mask)], ["a red cup"], ["blurry"], [8]))
    assert first.shape == (1, 128, 128, 3) and np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_twins_stage_output_is_reproducible(tmp_path):
    twins.run(0, ["flux_fill"], tmp_path / "a")
    twins.run(0, ["flux_fill"], tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
