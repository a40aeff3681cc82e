"""GLIDE (Nichol et al., 2022) through OpenAI's ``glide-text2im`` package: 64 px inpainting, then the
inpainting upsampler to 256 px, with classifier-free guidance, as in the package's
``notebooks/inpaint.ipynb``.

The package is not on PyPI: ``pip install git+https://github.com/openai/glide-text2im``. Without it
the family stops before the edit stage starts work. Nothing here can be exercised offline (no package,
no weights); ``docs/generators.md`` says so.

``model`` is the package's checkpoint name ``base-inpaint`` (both checkpoints are downloaded by the
package into ``~/.cache/glide-text2im`` on first use), or a folder holding ``base_inpaint.pt`` and
``upsample_inpaint.pt`` as the package downloads them, for machines without network.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from diffseg.edit.base import Batch, Family

INSTALL = "pip install git+https://github.com/openai/glide-text2im"
CACHE = Path.home() / ".cache" / "glide-text2im"
# Package checkpoint name -> file name, as in glide_text2im.download.MODEL_PATHS.
FILES = {"base-inpaint": "base_inpaint.pt", "upsample-inpaint": "upsample_inpaint.pt"}
SIZE, LOW = 256, 64  # the upsampler's output and the base model's side, fixed by the checkpoints
# (the edit stage's square size rule for this family is diffseg.resampling.SQUARE_FAMILIES)
# Options and their defaults, from the package's inpainting notebook.
OPTIONS = {"upsample_temp": 0.997, "upsample_respacing": "fast27"}


class Glide(Family):
    """GLIDE inpainting (base-inpaint + upsample-inpaint); square 256 px, no negative prompt."""

    name = "glide"
    takes_negative_prompt = False  # the unconditional branch is the empty prompt, as in the notebook
    takes_strength = False

    def __init__(self, *args, **kwargs):
        self.models = None
        super().__init__(*args, **kwargs)

    def validate(self) -> None:
        super().validate()
        if self.gen.resolution != SIZE:
            raise self.fail(f"key 'resolution' must be {SIZE}: GLIDE's upsampler outputs {SIZE} x {SIZE}")
        unknown = sorted(set(self.gen.options) - set(OPTIONS))
        if unknown:
            raise self.fail(f"key 'options': unknown {unknown} (GLIDE takes {sorted(OPTIONS)})")
        if self.gen.dtype == "bfloat16":
            raise self.fail("key 'dtype': GLIDE runs in float16 (its own conversion) or float32")
        if self.gen.revision or self.gen.variant:
            raise self.fail("keys 'revision' and 'variant' do not apply: GLIDE checkpoints are plain files")

    def check_source(self) -> None:
        if importlib.util.find_spec("glide_text2im") is None:
            raise self.fail(f"the glide-text2im package is not installed; it is not on PyPI, install it "
                            f"with `{INSTALL}`")
        model = self.gen.model
        if Path(model).is_dir():
            missing = [f for f in FILES.values() if not Path(model, f).is_file()]
            if missing:
                raise self.fail(f"key 'model': folder '{model}' lacks {missing} (GLIDE's inpainting checkpoints)")
        elif model in ("base", "upsample"):
            raise self.fail(f"'{model}' is GLIDE's text-to-image checkpoint, not an inpainting one: use "
                            f"'base-inpaint'")
        elif model != "base-inpaint":
            raise self.fail(f"key 'model': '{model}' is neither 'base-inpaint' nor a folder with "
                            f"{list(FILES.values())}")

    @property
    def loaded(self) -> bool:
        return self.models is not None

    def load(self) -> None:
        self.check_source()
        from glide_text2im.model_creation import (create_model_and_diffusion, model_and_diffusion_defaults,
                                                  model_and_diffusion_defaults_upsampler)

        options = {**OPTIONS, **self.gen.options}
        # The package's own half precision (convert_to_fp16) on CUDA, as in its notebook.
        self.fp16 = self.device == "cuda" and self.gen.dtype != "float32"
        base = self._create(create_model_and_diffusion, model_and_diffusion_defaults(), str(self.gen.steps),
                            "base-inpaint")
        up = self._create(create_model_and_diffusion, model_and_diffusion_defaults_upsampler(),
                          options["upsample_respacing"], "upsample-inpaint")
        self.upsample_temp = float(options["upsample_temp"])
        self.models = {"base": base, "up": up}

    def _create(self, create, defaults: dict, respacing: str, checkpoint: str):
        defaults.update(inpaint=True, use_fp16=self.fp16, timestep_respacing=respacing)
        model, diffusion = create(**defaults)
        model.eval()
        if self.fp16:
            model.convert_to_fp16()
        model.to(self.device)
        try:
            model.load_state_dict(torch.load(self._checkpoint(checkpoint), map_location="cpu", weights_only=True))
        except RuntimeError as err:
            raise self.fail(f"'{checkpoint}' does not fit GLIDE's inpainting model: {str(err)[:200]}") from None
        return model, diffusion, defaults["text_ctx"]

    def _checkpoint(self, name: str) -> Path:
        if Path(self.gen.model).is_dir():
            return Path(self.gen.model, FILES[name])
        if (CACHE / FILES[name]).is_file():  # the package's fetch would contact the server even when cached
            return CACHE / FILES[name]
        from glide_text2im.download import MODEL_PATHS, fetch_file_cached

        return Path(fetch_file_cached(MODEL_PATHS[name], progress=False, cache_dir=str(CACHE)))

    def unload(self) -> None:
        self.models = None
        super().unload()

    def _generate(self, batch: Batch) -> np.ndarray:
        return np.stack([self._inpaint(image, mask, prompt, seed) for image, mask, prompt, seed
                         in zip(batch.images, batch.masks, batch.prompts, batch.seeds)])

    def _inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> np.ndarray:
        image_hi, image_lo = _pixels(image, self.device), _pixels(image.resize((LOW, LOW), Image.BICUBIC), self.device)
        regenerate = torch.from_numpy(np.asarray(mask.convert("L")) > 127)[None, None].float().to(self.device)
        # GLIDE's mask is 64 px and marks what to keep; a cell is regenerated if any of its pixels is masked.
        keep_lo = 1 - F.max_pool2d(regenerate, SIZE // LOW)
        keep_hi = F.interpolate(keep_lo, (SIZE, SIZE), mode="nearest")
        devices = [torch.cuda.current_device()] if self.device == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))  # the package samples from the global generator
            low = self._base(prompt, image_lo, keep_lo)
            high = self._upsample(prompt, low, image_hi, keep_hi)
        return ((high[0].permute(1, 2, 0).float().cpu().numpy() + 1) / 2).clip(0, 1)

    def _base(self, prompt: str, image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        model, diffusion, text_ctx = self.models["base"]
        tokens, mask = model.tokenizer.padded_tokens_and_mask(model.tokenizer.encode(prompt), text_ctx)
        empty, empty_mask = model.tokenizer.padded_tokens_and_mask([], text_ctx)
        kwargs = dict(tokens=torch.tensor([tokens, empty], device=self.device),
                      mask=torch.tensor([mask, empty_mask], dtype=torch.bool, device=self.device),
                      inpaint_image=(image * keep).repeat(2, 1, 1, 1), inpaint_mask=keep.repeat(2, 1, 1, 1))
        guidance = self.gen.guidance

        def guided(x_t, ts, **kw):  # classifier-free guidance over the (prompt, empty) pair
            half = x_t[:1]
            out = model(torch.cat([half, half]), ts, **kw)
            eps, rest = out[:, :3], out[:, 3:]
            cond, uncond = eps[:1], eps[1:]
            eps = uncond + guidance * (cond - uncond)
            return torch.cat([torch.cat([eps, eps]), rest], dim=1)

        model.del_cache()
        sample = diffusion.p_sample_loop(guided, (2, 3, LOW, LOW), device=self.device, clip_denoised=True,
                                         progress=False, model_kwargs=kwargs,
                                         denoised_fn=_keep_known(kwargs["inpaint_image"], kwargs["inpaint_mask"]))[:1]
        model.del_cache()
        return sample

    def _upsample(self, prompt: str, low: torch.Tensor, image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        model, diffusion, text_ctx = self.models["up"]
        tokens, mask = model.tokenizer.padded_tokens_and_mask(model.tokenizer.encode(prompt), text_ctx)
        kwargs = dict(low_res=((low + 1) * 127.5).round() / 127.5 - 1,  # quantised like a saved 8-bit image
                      tokens=torch.tensor([tokens], device=self.device),
                      mask=torch.tensor([mask], dtype=torch.bool, device=self.device),
                      inpaint_image=image * keep, inpaint_mask=keep)
        shape = (1, 3, SIZE, SIZE)
        model.del_cache()
        noise = torch.randn(shape, device=self.device) * self.upsample_temp
        sample = diffusion.p_sample_loop(model, shape, noise=noise, device=self.device, clip_denoised=True,
                                         progress=False, model_kwargs=kwargs,
                                         denoised_fn=_keep_known(kwargs["inpaint_image"], kwargs["inpaint_mask"]))
        model.del_cache()
        return sample


def _pixels(image: Image.Image, device: str) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1], as the notebook's read_image."""
    return torch.from_numpy(np.asarray(image.convert("RGB")))[None].permute(0, 3, 1, 2).float().to(device) / 127.5 - 1


def _keep_known(image: torch.Tensor, keep: torch.Tensor):
    """The notebook's denoised_fn: the x_0 prediction is forced to the known pixels outside the mask."""
    return lambda x_start: x_start * (1 - keep) + image * keep
