"""Every twin loads through its family adapter's real ``from_pretrained`` line and runs reproducibly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffseg.edit import families
from diffseg.twins import generators as twin_builders
from diffseg.twins import stage as twins
from diffseg.params import Generator


def twin_generator(twins_dir: Path, family: str, **settings) -> Generator:
    """A generator entry for the twin of ``family``, as params.yaml would hold it."""
    extra: dict = {"model": str(twins_dir / family), "steps": 2, "resolution": 128}
    if family in ("flux_fill", "sd3"):  # a short T5 window keeps these twins fast
        extra["options"] = {"max_sequence_length": 32}
    if family == "kandinsky22":  # the prior is a checkpoint of its own, written next to the decoder
        extra.update(prior=str(twins_dir / "kandinsky22_prior"), options={"prior_num_inference_steps": 2})
    return Generator(name=family, family=family, **{**extra, **settings})


@pytest.mark.parametrize("family", sorted(twin_builders.BUILDERS))
def test_twin_loads_and_is_deterministic(twins_dir, family):
    assert family in families.FAMILIES
    adapter = families.create(twin_generator(twins_dir, family))
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
    # Kolors: its tokenizer is a sentencepiece model trained by the stage itself.
    twins.run(0, ["flux_fill", "kolors_blend"], tmp_path / "a")
    twins.run(0, ["flux_fill", "kolors_blend"], tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_two_checkpoint_twin_writes_both_folders(tmp_path):
    manifest = twins.run(0, ["kandinsky22"], tmp_path / "twins")
    assert list(manifest["folder"]) == ["kandinsky22", "kandinsky22_prior"]
    assert list(manifest["pipeline"]) == ["KandinskyV22InpaintPipeline", "KandinskyV22PriorPipeline"]
