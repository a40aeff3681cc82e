"""Blended Latent Diffusion (Avrahami, Fried and Lischinski, SIGGRAPH 2023): inpainting with a
text-to-image pipeline that has no inpainting variant.

The init image is encoded with the pipeline's own VAE. The pipeline then denoises from noise as usual,
and after every scheduler step the latents *outside* the (latent-resolution) mask are replaced by the
init latents noised to the level of the next step; after the last step, by the clean init latents. The
model thus only invents the masked region, conditioned at every step on a background that is the
original image at the matching noise level. The edit stage composites in pixel space afterwards, so the
VAE round-trip of the background never reaches the dataset.

Generic by construction: it needs only ``pipe.vae``, ``pipe.image_processor``, ``pipe.scheduler``
(``add_noise`` or, for flow matching, ``scale_noise``), a ``latents`` call argument and a denoising loop
that hands ``latents`` to ``callback_on_step_end``. HunyuanDiTPipeline and KolorsPipeline qualify, so do
most diffusers text-to-image pipelines whose latents are not packed into tokens (not FLUX's).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def unsupported(pipe) -> str | None:
    """Why ``pipe`` cannot be wrapped (``None`` if it can): checked once at load, before any work."""
    call = inspect.signature(type(pipe).__call__).parameters
    if "callback_on_step_end" not in call or "latents" not in getattr(pipe, "_callback_tensor_inputs", []):
        return f"{type(pipe).__name__} does not hand its latents to callback_on_step_end"
    if "latents" not in call:
        return f"{type(pipe).__name__} takes no initial latents"
    if not any(hasattr(pipe.scheduler, m) for m in ("add_noise", "scale_noise")):
        return f"its scheduler {type(pipe.scheduler).__name__} cannot noise a clean latent"
    channels, latent = _denoiser(pipe).config.in_channels, pipe.vae.config.latent_channels
    if channels != latent:
        # e.g. a 9-channel inpainting UNet loaded into a text-to-image pipeline: its latents would be wrong.
        return (f"is not a text-to-image checkpoint (its denoiser takes {channels} input channels, the VAE "
                f"makes {latent}); blended-latent inpainting wraps a text-to-image model")
    return None


def encode(pipe, images: list[Image.Image], height: int, width: int) -> torch.Tensor:
    """Scaled VAE latents of ``images``, as the pipeline's denoiser sees clean latents."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(images, height=height, width=width)
    # fp16 VAEs flagged `force_upcast` overflow; the pipelines decode them in float32, so encode likewise.
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    dtype = torch.float32 if upcast else vae.dtype
    # The posterior's mode, not a sample: the background must be the same for every seed.
    latents = vae.encode(pixels.to(pipe._execution_device, dtype)).latent_dist.mode()
    if upcast:
        vae.to(torch.float16)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    # In the denoiser's dtype: the pipelines take given latents as they are, without a cast.
    return ((latents - shift) * vae.config.scaling_factor).to(_denoiser(pipe).dtype)


def _denoiser(pipe) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def latent_mask(masks: list[Image.Image], size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) bool: a latent cell is regenerated when any of its pixels is in the mask.

    Max-pooling rather than nearest sampling: every masked pixel then lies in regenerated latents, so
    the pixel composite never shows VAE-reconstructed background inside the mask.
    """
    pixels = torch.from_numpy(np.stack([np.asarray(m.convert("L")) > 127 for m in masks]))[:, None].float()
    return F.adaptive_max_pool2d(pixels, size) > 0


class KeepKnown:
    """``callback_on_step_end`` that puts the noised init latents back outside the mask."""

    def __init__(self, init: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor):
        self.init, self.noise, self.mask = init, noise, mask

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        latents = tensors["latents"]
        if latents.shape != self.init.shape:
            raise ValueError(f"{type(pipe).__name__} hands packed latents {tuple(latents.shape)} to its "
                             f"callback; blended inpainting needs (B, C, h, w) = {tuple(self.init.shape)}")
        timesteps = pipe.scheduler.timesteps
        if step + 1 < len(timesteps):  # the latents are now at the noise level of the next step
            known = _noised(pipe.scheduler, self.init, self.noise, timesteps[step + 1:step + 2])
        else:
            known = self.init
        mask = self.mask.to(latents.device)
        return {"latents": torch.where(mask, latents, known.to(latents.device, latents.dtype))}


def _noised(scheduler, clean: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(clean, noise, timestep.to(clean.device))
    return scheduler.scale_noise(clean, timestep.to(clean.device), noise)  # flow matching


def inpaint(pipe, images: list[Image.Image], masks: list[Image.Image], generator: list[torch.Generator],
            height: int, width: int, output_type: str = "np", **call_kwargs):
    """Regenerate the masked regions of ``images`` with text-to-image ``pipe``; other arguments go to its call.

    ``generator`` holds one generator per image, so each item's noise depends on its own seed only.
    """
    from diffusers.utils.torch_utils import randn_tensor

    init = encode(pipe, images, height, width)
    mask = latent_mask(masks, tuple(init.shape[-2:])).to(init.device)
    # The same noise starts the denoising and re-noises the background, as in diffusers' own inpainting
    # pipelines at strength 1; the pipeline scales it by the scheduler's init_noise_sigma itself.
    noise = randn_tensor(tuple(init.shape), generator=generator, device=init.device, dtype=init.dtype)
    return pipe(height=height, width=width, generator=generator, latents=noise, output_type=output_type,
                callback_on_step_end=KeepKnown(init, noise, mask), callback_on_step_end_tensor_inputs=["latents"],
                **call_kwargs).images
