"""Generator families: one small adapter class per diffusers inpainting pipeline.

A family knows its pipeline class, how to check that a checkpoint really is an inpainting one, and
the keyword arguments of its call. Everything else (loading, device, dtype, scheduler swap, batching,
seeding) is shared in :class:`Family`. Adding a generator family is one subclass decorated with
``@register``.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffseg.errors import UserError
from diffseg.params import Generator

FAMILIES: dict[str, type["Family"]] = {}


class GeneratorError(UserError, RuntimeError):
    """A generator that cannot be used (bad family, missing model, wrong checkpoint kind)."""


@dataclass
class Batch:
    """Inputs of one pipeline call, all at the family's native size."""

    images: list[Image.Image]
    masks: list[Image.Image]  # mode L, 255 = regenerate
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]

    @property
    def size(self) -> tuple[int, int]:
        return self.images[0].size


def register(cls: type["Family"]) -> type["Family"]:
    FAMILIES[cls.name] = cls
    return cls


def create(gen: Generator, device: str = "cpu", cpu_offload: bool = False) -> "Family":
    if gen.family not in FAMILIES:
        raise GeneratorError(f"generator '{gen.name}': unknown family '{gen.family}' "
                             f"(known: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[gen.family](gen, device, cpu_offload)


def is_local(model: str) -> bool:
    """Hub ids are 'org/name'; anything with more parts, or starting with '.' or '/', is a folder."""
    return model.startswith((".", "/")) or model.count("/") != 1 or Path(model).exists()


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device == "mps" else torch.float32


class Family:
    """Shared loading and calling; subclasses set ``name``, ``pipeline`` and adjust the call."""

    name: str = ""
    pipeline: str = ""  # diffusers pipeline class name
    takes_negative_prompt = True
    takes_strength = True

    def __init__(self, gen: Generator, device: str = "cpu", cpu_offload: bool = False):
        self.gen = gen
        self.device = pick_device(device)
        self.dtype = pick_dtype(gen.dtype, self.device)
        self.cpu_offload = cpu_offload and self.device == "cuda"
        self.pipe = None

    def check_source(self) -> None:
        """Fail before any work when a local model folder is missing."""
        if is_local(self.gen.model) and not Path(self.gen.model, "model_index.json").is_file():
            raise GeneratorError(f"generator '{self.gen.name}': no diffusers pipeline folder at "
                                 f"'{self.gen.model}' (model_index.json missing; the offline twins "
                                 f"are built by `dvc repro twins`)")

    def load(self) -> None:
        import diffusers
        import transformers

        # Per-component loading bars would drown the stage's own progress output.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.check_source()
        cls = getattr(diffusers, self.pipeline)
        try:
            pipe = cls.from_pretrained(self.gen.model, revision=self.gen.revision, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise GeneratorError(self._load_hint(err)) from None
        self.check_pipeline(pipe)
        if self.gen.scheduler:
            pipe.scheduler = getattr(diffusers, self.gen.scheduler).from_config(pipe.scheduler.config)
        if self.cpu_offload:
            pipe.enable_model_cpu_offload()
        elif self.device != "cpu":  # from_pretrained already loads onto the CPU
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe

    def _load_hint(self, err: Exception) -> str:
        where = f"'{self.gen.model}'" + (f" at revision {self.gen.revision}" if self.gen.revision else "")
        message = f"generator '{self.gen.name}': cannot load {self.pipeline} from {where}: {_short(err)}"
        if not is_local(self.gen.model):
            message += (f". '{self.gen.model}' is not a local folder either, so it was taken as a hub id. "
                        f"Offline, a hub model must already be in the Hugging Face cache: run "
                        f"`huggingface-cli download {self.gen.model}` on a connected machine (gated models "
                        f"need `huggingface-cli login` and an accepted licence first)")
        return message

    def check_pipeline(self, pipe) -> None:
        """Refuse checkpoints that are not inpainting ones (a subclass knows how to tell)."""

    def unload(self) -> None:
        self.pipe = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def call_kwargs(self, batch: Batch) -> dict:
        width, height = batch.size
        kwargs = dict(prompt=batch.prompts, image=batch.images, mask_image=batch.masks, height=height,
                      width=width, num_inference_steps=self.gen.steps, guidance_scale=self.gen.guidance,
                      output_type="np")
        if self.takes_negative_prompt:
            kwargs["negative_prompt"] = batch.negative_prompts
        if self.takes_strength:
            kwargs["strength"] = self.gen.strength
        kwargs.update(self.gen.options)
        return kwargs

    def run(self, batch: Batch) -> np.ndarray:
        """Generated images as float32 (B, H, W, 3) in [0, 1]; may contain NaN (checked by the caller)."""
        if self.pipe is None:
            raise GeneratorError(f"generator '{self.gen.name}' is not loaded")
        # CPU generators: the same seed gives the same noise on every device.
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in batch.seeds]
        with torch.inference_mode():
            out = self.pipe(generator=generators, **self.call_kwargs(batch)).images
        return np.asarray(out, dtype=np.float32)


def _short(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


class _UNetInpaint(Family):
    def check_pipeline(self, pipe) -> None:
        channels = pipe.unet.config.in_channels
        if channels != 9:
            raise GeneratorError(f"generator '{self.gen.name}': '{self.gen.model}' is not an inpainting "
                                 f"checkpoint (its UNet takes {channels} input channels, inpainting needs 9)")


@register
class SD2(_UNetInpaint):
    """Stable Diffusion 2 inpainting (stabilityai/stable-diffusion-2-inpainting)."""

    name = "sd2"
    pipeline = "StableDiffusionInpaintPipeline"


@register
class SDXL(_UNetInpaint):
    """SDXL inpainting (diffusers/stable-diffusion-xl-1.0-inpainting-0.1)."""

    name = "sdxl"
    pipeline = "StableDiffusionXLInpaintPipeline"


@register
class FluxFill(Family):
    """FLUX.1 Fill (black-forest-labs/FLUX.1-Fill-dev): guidance-distilled, no negative prompt."""

    name = "flux_fill"
    pipeline = "FluxFillPipeline"
    takes_negative_prompt = False

    def check_pipeline(self, pipe) -> None:
        # Fill checkpoints take image latents, masked-image latents and the packed mask.
        latent = pipe.vae.config.latent_channels
        expected = 8 * latent + 4 * pipe.vae_scale_factor ** 2
        if pipe.transformer.config.in_channels != expected:
            raise GeneratorError(f"generator '{self.gen.name}': '{self.gen.model}' is not a FLUX Fill "
                                 f"checkpoint (transformer in_channels "
                                 f"{pipe.transformer.config.in_channels}, Fill needs {expected})")


@register
class SD3(Family):
    """Stable Diffusion 3.5 inpainting through StableDiffusion3InpaintPipeline (stabilityai/stable-diffusion-3.5-*)."""

    name = "sd3"
    pipeline = "StableDiffusion3InpaintPipeline"
