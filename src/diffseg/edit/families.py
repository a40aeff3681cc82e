"""Generator families: one small adapter class per editing model, and the registry that lists them.

The eight DiffSeg30k generators (real checkpoints in ``configs/paper.yaml``, details in
``docs/generators.md``):

- ``sd2``, ``sdxl``, ``flux_fill``, ``sd3``: diffusers inpainting pipelines;
- ``kandinsky22``: an image-embedding prior plus an inpainting decoder, two checkpoints
  (:mod:`diffseg.edit.kandinsky`);
- ``hunyuan_blend``, ``kolors_blend``: text-to-image pipelines that inpaint by blended latents
  (:mod:`diffseg.edit.blended`), because diffusers has no inpainting pipeline for them;
- ``glide``: OpenAI's ``glide-text2im`` package (:mod:`diffseg.edit.glide`).

A generator entry may name a LoRA (``lora``): the families whose diffusers pipeline loads LoRA weights
(``sd2``, ``sdxl``, ``flux_fill``, ``sd3``, ``kolors_blend``) load it on top of the checkpoint
(:meth:`~diffseg.edit.base.DiffusersFamily.load_lora`); the others refuse it before any work.

Adding a generator family is one :class:`~diffseg.edit.base.Family` subclass and its line in
:data:`FAMILIES` (plus a ``params.yaml`` entry that uses it).
"""
from __future__ import annotations

import numpy as np

from diffseg.edit import blended
from diffseg.edit.base import Batch, DiffusersFamily, Family, GeneratorError, seeded
from diffseg.edit.glide import Glide
from diffseg.edit.kandinsky import Kandinsky22
from diffseg.params import Generator


class _UNetInpaint(DiffusersFamily):
    def check_pipeline(self, pipe) -> None:
        channels = pipe.unet.config.in_channels
        if channels != 9:
            raise self.fail(f"'{self.gen.model}' is not an inpainting checkpoint (its UNet takes {channels} "
                            f"input channels, inpainting needs 9)")


class SD2(_UNetInpaint):
    """Stable Diffusion 2 inpainting: sd2-community/stable-diffusion-2-inpainting, the copy of the checkpoint
    Stability AI removed from the hub."""

    name = "sd2"
    pipeline = "StableDiffusionInpaintPipeline"


class SDXL(_UNetInpaint):
    """SDXL inpainting (diffusers/stable-diffusion-xl-1.0-inpainting-0.1)."""

    name = "sdxl"
    pipeline = "StableDiffusionXLInpaintPipeline"


class FluxFill(DiffusersFamily):
    """FLUX.1 Fill (black-forest-labs/FLUX.1-Fill-dev): guidance-distilled, no negative prompt."""

    name = "flux_fill"
    pipeline = "FluxFillPipeline"
    takes_negative_prompt = False

    def check_pipeline(self, pipe) -> None:
        # Fill checkpoints take image latents, masked-image latents and the packed mask.
        latent = pipe.vae.config.latent_channels
        expected = 8 * latent + 4 * pipe.vae_scale_factor ** 2
        if pipe.transformer.config.in_channels != expected:
            raise self.fail(f"'{self.gen.model}' is not a FLUX Fill checkpoint (transformer in_channels "
                            f"{pipe.transformer.config.in_channels}, Fill needs {expected})")


class SD3(DiffusersFamily):
    """Stable Diffusion 3.5 inpainting through StableDiffusion3InpaintPipeline (stabilityai/stable-diffusion-3.5-*).

    The pipeline inpaints with the base (text-to-image) transformer by re-noising the known region, so
    an SD3 text-to-image checkpoint is the right input here; there is no channel count to check.
    """

    name = "sd3"
    pipeline = "StableDiffusion3InpaintPipeline"


class BlendedFamily(DiffusersFamily):
    """A text-to-image pipeline that inpaints by blended latents (:mod:`diffseg.edit.blended`).

    The method always starts from pure noise inside the mask, so there is no strength setting.
    """

    takes_strength = False

    def check_pipeline(self, pipe) -> None:
        problem = blended.unsupported(pipe)
        if problem:
            raise self.fail(f"'{self.gen.model}': {problem}")

    def _generate(self, batch: Batch) -> np.ndarray:
        return blended.inpaint(self.pipe, batch.images, batch.masks, seeded(batch.seeds), **self.call_kwargs(batch))


class HunyuanBlend(BlendedFamily):
    """HunyuanDiT v1.1 (Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers) through HunyuanDiTPipeline.

    diffusers has no inpainting pipeline for HunyuanDiT, so the released text-to-image model inpaints
    by blended latents. Sizes are multiples of 16 (VAE 8 x patch 2); the family's multiples of 64
    satisfy that.
    """

    name = "hunyuan_blend"
    pipeline = "HunyuanDiTPipeline"

    def call_kwargs(self, batch: Batch) -> dict:
        # Resolution binning would snap the size to a trained aspect ratio, away from the mask's latent
        # grid; the edit stage already picks the size, so binning stays off whatever the options say.
        return {**super().call_kwargs(batch), "use_resolution_binning": False}


class KolorsBlend(BlendedFamily):
    """Kolors (Kwai-Kolors/Kolors-diffusers) through KolorsPipeline, inpainting by blended latents.

    Why not Kwai-Kolors/Kolors-Inpainting: that checkpoint is an SDXL-style UNet with 9 input channels
    driven by ChatGLM, and it runs only with the Kolors repository's own pipeline code; diffusers has
    no Kolors inpainting pipeline, and its SDXL inpainting pipeline expects CLIP text encoders. The
    most faithful option diffusers can run is the released text-to-image Kolors model itself, with
    blended latents keeping the background. The checkpoint ships fp16 weights only: set
    ``variant: fp16``. A 9-channel UNet given here is refused at load.
    """

    name = "kolors_blend"
    pipeline = "KolorsPipeline"


# The registry: family name (params' ``edit.generators[].family``) -> adapter class.
FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (
    SD2, SDXL, FluxFill, SD3, Kandinsky22, HunyuanBlend, KolorsBlend, Glide)}


def create(gen: Generator, device: str = "cpu", cpu_offload: bool = False, vae_tiling: bool = False) -> Family:
    """The adapter of ``gen``, its settings already checked (no file or network access yet)."""
    if gen.family not in FAMILIES:
        raise GeneratorError(f"generator '{gen.name}': unknown family '{gen.family}' "
                             f"(known: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[gen.family](gen, device, cpu_offload, vae_tiling)
