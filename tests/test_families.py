"""Every generator family on its twin, through the edit stage's own code path, plus the refusals.

The chain test runs three turns on a real photograph: resize to the family's native size, run, map
back (``stage.generate``), then ``masks.composite`` and ``masks.update_label`` as the stage does.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import time
import weakref

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import ROOT, link_twins, write_params
from diffseg import masks, records
from diffseg import params as params_mod
from diffseg.edit import blended, families, glide
from diffseg.twins import generators as twin_builders
from diffseg.edit import stage as edit_stage
from diffseg.params import Generator
from diffseg.propose import stage as propose_stage
from diffseg.source.ingest import ingest
from source_fixture import build_raw
from test_twins import twin_generator

PHOTO_SIZE = (200, 150)  # (width, height): neither side a multiple of 64, so both resizes really happen


def _photo() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize(PHOTO_SIZE, Image.Resampling.LANCZOS))


def _turn_masks() -> list[np.ndarray]:
    """Three overlapping regions of different shapes, one per turn."""
    width, height = PHOTO_SIZE
    y, x = np.mgrid[:height, :width]
    face = (x - 95) ** 2 / 30 ** 2 + (y - 45) ** 2 / 35 ** 2 <= 1
    box = (x >= 10) & (x < 80) & (y >= 70) & (y < 140)
    band = (y >= 60) & (y < 90) & (x >= 60)
    return [face, box, band]


def _turn(adapter: families.Family, image: np.ndarray, label: np.ndarray, mask: np.ndarray, turn: int):
    """One edit the way the edit stage makes it; turn t's generator owns class t."""
    size, backs = edit_stage.generate(adapter, [image], [mask], ["a red cup, photorealistic"], ["blurry"],
                                      [1000 + turn])
    assert size == adapter.native_size(*PHOTO_SIZE) and backs[0] is not None
    return masks.composite(image, backs[0], mask), masks.update_label(label, mask, turn)


@pytest.mark.parametrize("family", sorted(twin_builders.BUILDERS))
def test_three_turn_chain_keeps_the_contracts(twins_dir, family):
    # 192 px: the photo's native size is 192 x 128, so both resizes really happen, cheaply.
    adapter = families.create(twin_generator(twins_dir, family, resolution=192))
    adapter.load()
    image, label = _photo(), np.zeros(PHOTO_SIZE[::-1], np.uint8)
    outputs = []
    for turn, mask in enumerate(_turn_masks(), start=1):
        after, new_label = _turn(adapter, image, label, mask, turn)
        assert after.shape == image.shape and after.dtype == np.uint8
        assert np.array_equal(after[~mask], image[~mask])  # composite: bit-identical outside the mask
        assert np.abs(after[mask].astype(int) - image[mask].astype(int)).mean() > 0
        assert (new_label[mask] == turn).all() and np.array_equal(new_label[~mask], label[~mask])
        image, label = after, new_label
        outputs.append(after)
    again, _ = _turn(adapter, _photo(), np.zeros(PHOTO_SIZE[::-1], np.uint8), _turn_masks()[0], 1)
    assert np.array_equal(again, outputs[0])  # same input and seed, same pixels

    held = [weakref.ref(adapter.pipe)] + ([weakref.ref(adapter.prior)] if family == "kandinsky22" else [])
    adapter.unload()
    assert not adapter.loaded and all(ref() is None for ref in held)  # nothing else keeps the model alive


def test_one_call_maps_each_image_back_to_its_own_size(twins_dir):
    adapter = families.create(twin_generator(twins_dir, "sd2", resolution=192))
    adapter.load()
    photos = [_photo(), np.asarray(Image.fromarray(data.astronaut()).resize((200, 152)))]  # one native size
    edit_masks = [np.ones(p.shape[:2], bool) for p in photos]
    size, backs = edit_stage.generate(adapter, photos, edit_masks, ["a cup"] * 2, [""] * 2, [1, 2])
    assert size == (192, 128) and [b.shape for b in backs] == [p.shape for p in photos]


def test_kandinsky_batch_items_equal_single_item_calls(twins_dir):
    # diffusers' batched Kandinsky 2.2 inpainting keeps the *first* image's background for every item;
    # the adapter runs items one by one, so an item's output does not depend on its batch neighbours.
    adapter = families.create(twin_generator(twins_dir, "kandinsky22"))
    adapter.load()
    photos = [Image.fromarray(p).resize((128, 128)) for p in (data.astronaut(), data.chelsea())]
    mask = np.zeros((128, 128), np.uint8)
    mask[40:80, 40:80] = 255
    both = adapter.run(families.Batch(photos, [Image.fromarray(mask)] * 2, ["a cup"] * 2, [""] * 2, [5, 6]))
    second = adapter.run(families.Batch(photos[1:], [Image.fromarray(mask)], ["a cup"], [""], [6]))
    assert np.array_equal(both[1], second[0])


@pytest.mark.parametrize("family, resolution, size", [("sd2", 256, (256, 192)), ("kolors_blend", 192, (192, 128)),
                                                      ("glide", 256, (256, 256))])
def test_native_size(family, resolution, size):
    gen = Generator(name="g", family=family, model="base-inpaint", resolution=resolution)
    assert families.create(gen).native_size(*PHOTO_SIZE) == size


def test_vae_tiling_switches_tiling_and_slicing_on(twins_dir):
    adapter = families.create(twin_generator(twins_dir, "kolors_blend"), vae_tiling=True)
    adapter.load()
    assert adapter.pipe.vae.use_tiling and adapter.pipe.vae.use_slicing


# ------------------------------------------------------------------ blended latents, any scheduler kind
def _blended_latents(pipe, **call):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    mask = np.zeros((128, 128), np.uint8)
    mask[37:90, 20:70] = 255
    init = blended.encode(pipe, [image], 128, 128)
    keep = ~blended.latent_mask([Image.fromarray(mask)], tuple(init.shape[-2:]))
    out = blended.inpaint(pipe, [image], [Image.fromarray(mask)], families.seeded([3]), 128, 128,
                          output_type="latent", prompt=["a cup"], num_inference_steps=3, **call)
    return init, out, keep.expand_as(init)


@pytest.mark.parametrize("pipeline, folder", [("HunyuanDiTPipeline", "hunyuan_blend"),  # DDPM: add_noise
                                              ("KolorsPipeline", "kolors_blend"),  # Euler: sigma-scaled latents
                                              ("StableDiffusion3Pipeline", "sd3")])  # flow matching: scale_noise
def test_blended_latents_end_on_the_init_latents_outside_the_mask(twins_dir, pipeline, folder):
    import diffusers

    # The SD3 twin is an inpainting pipeline's folder; its components load as the text-to-image pipeline.
    pipe = getattr(diffusers, pipeline).from_pretrained(twins_dir / folder)
    pipe.set_progress_bar_config(disable=True)
    assert blended.unsupported(pipe) is None
    call = {"use_resolution_binning": False} if folder == "hunyuan_blend" else {}
    if folder == "sd3":
        call["max_sequence_length"] = 32
    init, out, keep = _blended_latents(pipe, **call)
    assert torch.equal(out[keep], init[keep])
    assert not torch.equal(out[~keep], init[~keep])


# ------------------------------------------------------------------ refusals before any work
@pytest.mark.parametrize("settings, message", [
    ({"family": "kandinsky22"}, "key 'prior' is missing"),
    ({"family": "sd2", "prior": "models/twins/kandinsky22_prior"}, "takes no prior"),
    ({"family": "kolors_blend", "strength": 0.8}, "key 'strength'"),
    ({"family": "kandinsky22", "prior": "p", "strength": 0.8}, "key 'strength'"),
    ({"family": "sd2", "options": {"output_type": "pil"}}, "the adapter sets itself"),
    ({"family": "glide", "model": "base-inpaint", "resolution": 512}, "key 'resolution' must be 256"),
    ({"family": "glide", "model": "base-inpaint", "resolution": 256, "options": {"upsample_tmp": 1}},
     "unknown \\['upsample_tmp'\\]"),
])
def test_bad_settings_are_refused_at_creation(settings, message):
    gen = Generator(**{"name": "g", "model": "models/twins/x", "resolution": 256, **settings})
    with pytest.raises(families.GeneratorError, match=message):
        families.create(gen)


@pytest.mark.skipif(importlib.util.find_spec("glide_text2im") is not None, reason="glide-text2im is installed")
def test_glide_without_its_package_stops_the_stage_before_work(workdir, twins_dir):
    build_raw(workdir / "raw")
    ingest(workdir / "raw", workdir / "data" / "source", min_side=64, max_side=320)
    link_twins(twins_dir, workdir)
    gens = [{"name": "sd2", "family": "sd2", "model": "models/twins/sd2", "steps": 2, "resolution": 256},
            {"name": "glide", "family": "glide", "model": "base-inpaint", "steps": 2, "resolution": 256}]
    p = params_mod.load(write_params(workdir, {"edit": {"generators": gens},
                                               "propose": {"turn_weights": [0.0, 1.0, 0.0, 0.0]}}))
    plan = propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    assert "glide" in set(plan["generator"])
    with pytest.raises(families.GeneratorError, match=re.escape(f"install it with `{glide.INSTALL}`")):
        edit_stage.run(p, "t1", records.turn_dir("t1", "edit"))
    assert glide.INSTALL == "pip install git+https://github.com/openai/glide-text2im"
    assert not records.turn_dir("t1", "edit").exists()


def _copy_with_denoiser_channels(twins_dir, tmp_path, folder: str, channels: int):
    """A copy of a twin whose UNet takes another number of input channels (the other checkpoint kind)."""
    from diffusers import UNet2DConditionModel

    wrong = tmp_path / folder
    shutil.copytree(twins_dir / folder, wrong)
    unet = UNet2DConditionModel.from_pretrained(wrong / "unet")
    UNet2DConditionModel.from_config(dict(unet.config, in_channels=channels)).save_pretrained(wrong / "unet")
    return wrong


@pytest.mark.parametrize("family, channels, message", [
    ("kandinsky22", 4, "is not an inpainting decoder"),  # the text-to-image decoder
    ("kolors_blend", 9, "is not a text-to-image checkpoint"),  # a Kolors-Inpainting-style UNet
])
def test_wrong_checkpoint_kind_is_refused_at_load(twins_dir, tmp_path, family, channels, message):
    wrong = _copy_with_denoiser_channels(twins_dir, tmp_path, family, channels)
    adapter = families.create(twin_generator(twins_dir, family, model=str(wrong)))
    with pytest.raises(families.GeneratorError, match=message):
        adapter.load()
    assert not adapter.loaded


def test_kandinsky_prior_must_match_the_decoder(twins_dir, tmp_path):
    from transformers import CLIPVisionModelWithProjection

    prior = tmp_path / "prior"
    shutil.copytree(twins_dir / "kandinsky22_prior", prior)
    encoder = CLIPVisionModelWithProjection.from_pretrained(prior / "image_encoder")
    encoder.config.projection_dim = 16
    CLIPVisionModelWithProjection(encoder.config).save_pretrained(prior / "image_encoder")
    adapter = families.create(twin_generator(twins_dir, "kandinsky22", prior=str(prior)))
    with pytest.raises(families.GeneratorError, match="not a Kandinsky 2.2 pair"):
        adapter.load()
    assert not adapter.loaded


# ------------------------------------------------------------------ hub ids while offline
def _paper_generators() -> list[Generator]:
    return params_mod.load(ROOT / "configs" / "paper.yaml").edit.generators


@pytest.mark.parametrize("entry", _paper_generators(), ids=lambda g: g.name)
def test_paper_generator_offline_fails_fast_naming_the_model(monkeypatch, entry):
    import diffusers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = families.create(entry)
    if entry.family == "glide" and importlib.util.find_spec("glide_text2im") is None:
        expected = glide.INSTALL
    else:
        expected = f"huggingface-cli download {entry.model}"
    getattr(diffusers, getattr(adapter, "pipeline", "DiffusionPipeline"))  # imports are not the load's time
    started = time.perf_counter()
    with pytest.raises(families.GeneratorError) as err:
        adapter.load()
    assert time.perf_counter() - started < 1.0
    assert expected in str(err.value) and entry.name in str(err.value)


def test_kandinsky_hub_prior_offline_fails_naming_the_prior(monkeypatch, twins_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = families.create(twin_generator(twins_dir, "kandinsky22", prior="kandinsky-community/kandinsky-2-2-prior"))
    with pytest.raises(families.GeneratorError,
                       match="huggingface-cli download kandinsky-community/kandinsky-2-2-prior"):
        adapter.load()
    assert not adapter.loaded
