"""The generators' text-to-image pipelines: what the ``synthesize`` stage paints base images with.

Each generator's checkpoint is loaded by the same ``from_pretrained`` line a hub id would use; only the
call differs from an edit. Text-to-image checkpoints (SD3.5, HunyuanDiT, Kolors) load their own diffusers
text-to-image class from the same folder. Inpainting checkpoints (SD2, SDXL, FLUX.1 Fill, Kandinsky 2.2's
decoder) have no text-to-image class that takes their extra input channels, so their inpainting pipeline
paints a blank canvas under a mask that covers all of it, at strength 1: the latents start as pure noise
and the masked-image input is all zeros, which makes the call text-to-image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffseg.errors import UserError
from diffseg.params import Generator
from diffseg.runtime import load_hint, pick_device, pick_dtype, release_memory, without_safety_checker

# Kandinsky 2.2's prior sampling, named and defaulted as in diffusers' KandinskyV22InpaintCombinedPipeline.
PRIOR_OPTIONS = {"prior_num_inference_steps": 25, "prior_guidance_scale": 4.0}


@dataclass(frozen=True)
class TextToImage:
    pipeline: str  # diffusers class loaded from the generator's model folder or hub id
    canvas: bool  # True: an inpainting pipeline, given a blank canvas and a mask over all of it
    prior: str = ""  # a second pipeline loaded from the generator's prior (Kandinsky 2.2)
    fixed: dict = field(default_factory=dict)  # call arguments the family always needs


# The registry: generator family -> how it makes an image from a caption. GLIDE has none here: its package
# is not on PyPI (docs/generators.md).
PIPELINES: dict[str, TextToImage] = {
    "sd2": TextToImage("StableDiffusionInpaintPipeline", canvas=True),
    "sdxl": TextToImage("StableDiffusionXLInpaintPipeline", canvas=True),
    "flux_fill": TextToImage("FluxFillPipeline", canvas=True),
    "sd3": TextToImage("StableDiffusion3Pipeline", canvas=False),
    "kandinsky22": TextToImage("KandinskyV22InpaintPipeline", canvas=True, prior="KandinskyV22PriorPipeline"),
    # Resolution binning would snap the size to a trained aspect ratio; the stage already picks the size.
    "hunyuan_blend": TextToImage("HunyuanDiTPipeline", canvas=False, fixed={"use_resolution_binning": False}),
    "kolors_blend": TextToImage("KolorsPipeline", canvas=False),
}


class Painter:
    """One generator's text-to-image pipeline: load, paint one image per call, unload."""

    def __init__(self, gen: Generator, device: str, key: str):
        if gen.family not in PIPELINES:
            raise UserError(f"{key}: generator '{gen.name}' (family {gen.family}) has no text-to-image pipeline "
                            f"here (families that have one: {', '.join(sorted(PIPELINES))})")
        self.gen, self.key, self.spec = gen, key, PIPELINES[gen.family]
        self.device = pick_device(device)
        self.dtype = pick_dtype(gen.dtype, self.device)
        self.pipe = self.prior = None

    def _from_pretrained(self, pipeline: str, model: str, revision: str | None, variant: str | None = None):
        import diffusers

        diffusers.utils.logging.disable_progress_bar()
        cls = getattr(diffusers, pipeline)
        try:
            pipe = cls.from_pretrained(model, revision=revision, variant=variant, dtype=self.dtype,
                                       **without_safety_checker(cls))
        except (OSError, ValueError) as err:
            raise UserError(load_hint(f"{self.key}: generator '{self.gen.name}'", model, err)) from None
        if self.device != "cpu":  # from_pretrained already loads onto the CPU
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def load(self) -> None:
        gen = self.gen
        pipe = self._from_pretrained(self.spec.pipeline, gen.model, gen.revision, gen.variant)
        if gen.scheduler:
            import diffusers

            pipe.scheduler = getattr(diffusers, gen.scheduler).from_config(pipe.scheduler.config)
        if gen.lora is not None:  # the generator is its checkpoint with its LoRA, here as in an edit
            try:
                pipe.load_lora_weights(gen.lora.path, weight_name=gen.lora.weight_name, revision=gen.lora.revision,
                                       adapter_name="lora")
            except (OSError, ValueError, RuntimeError) as err:
                raise UserError(load_hint(f"{self.key}: generator '{gen.name}' LoRA", gen.lora.path, err)) from None
            pipe.set_adapters(["lora"], adapter_weights=[gen.lora.scale])
        self.pipe = pipe
        if self.spec.prior:
            self.prior = self._from_pretrained(self.spec.prior, gen.prior, gen.prior_revision)

    def unload(self) -> None:
        self.pipe = self.prior = None
        release_memory()

    def paint(self, prompt: str, seed: int, width: int, height: int) -> np.ndarray:
        """The generated image as float32 (H, W, 3) in [0, 1]; may contain NaN."""
        import torch
        from PIL import Image

        options = {**self.gen.options, **self.spec.fixed}
        prior_kwargs = {name: options.pop(name, default) for name, default in PRIOR_OPTIONS.items()}
        call = dict(height=height, width=width, num_inference_steps=self.gen.steps, guidance_scale=self.gen.guidance,
                    output_type="np", **options)
        if self.spec.canvas:
            call.update(image=Image.new("RGB", (width, height)), mask_image=Image.new("L", (width, height), 255))
        # CPU generators: the same seed gives the same noise on every device.
        noise = torch.Generator("cpu").manual_seed(seed)
        with torch.inference_mode():
            if self.prior is not None:
                embeds = self.prior(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), output_type="pt",
                                    num_inference_steps=prior_kwargs["prior_num_inference_steps"],
                                    guidance_scale=prior_kwargs["prior_guidance_scale"])
                out = self.pipe(image_embeds=embeds.image_embeds, negative_image_embeds=embeds.negative_image_embeds,
                                generator=noise, **call).images
            else:
                out = self.pipe(prompt=prompt, generator=noise, **call).images
        return np.asarray(out, dtype=np.float32)[0]
