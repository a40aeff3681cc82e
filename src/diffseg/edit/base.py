"""What every generator family shares: the :class:`Family` interface, the diffusers base class, batches.

A family knows how to load its model (and a LoRA on top of it, where its pipeline can), how to tell that
a checkpoint really can inpaint, and the keyword arguments of its call. The device, dtype and memory
policy and the output contract are shared in :class:`Family`; what every diffusers pipeline has in
common is in :class:`DiffusersFamily`. The families themselves and their registry are in
:mod:`diffseg.edit.families`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffseg.errors import UserError
from diffseg.params import Generator
from diffseg.resampling import generator_size
from diffseg.runtime import is_local, pick_device, pick_dtype, release_memory, short_error, without_safety_checker

LORA_ADAPTER = "lora"  # the adapter name of a generator's LoRA: a generator carries at most one

# Call arguments the adapters set themselves; in `options` they would silently fight the adapter.
RESERVED_OPTIONS = frozenset({
    "prompt", "negative_prompt", "image", "mask_image", "height", "width", "num_inference_steps",
    "guidance_scale", "strength", "generator", "output_type", "return_dict", "latents",
    "callback_on_step_end", "callback_on_step_end_tensor_inputs", "num_images_per_prompt"})


class GeneratorError(UserError, RuntimeError):
    """A generator that cannot be used (bad family or settings, missing model, wrong checkpoint kind)."""


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


def seeded(seeds: list[int]) -> list[torch.Generator]:
    """CPU generators: the same seed gives the same noise on every device."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


class Family(abc.ABC):
    """One editing model behind a common interface: validate, check_source, load, run, unload."""

    name: str = ""
    takes_negative_prompt = True
    takes_strength = True  # False: the model always regenerates the whole mask, strength must stay 1
    takes_prior = False  # True: `prior` names a second checkpoint the family needs
    takes_lora = False  # True: a `lora` entry is loaded on top of the checkpoint

    def __init__(self, gen: Generator, device: str = "cpu", cpu_offload: bool = False, vae_tiling: bool = False):
        self.gen = gen
        self.device = pick_device(device)
        self.dtype = pick_dtype(gen.dtype, self.device)
        self.cpu_offload = cpu_offload and self.device == "cuda"
        self.offload = "model" if self.cpu_offload else "none"  # one of memory.OFFLOADS
        self.vae_tiling = vae_tiling
        # edit.memory: auto (diffseg.edit.fitting): the current setting, the fallbacks so far, and why the
        # generator could not be loaded at all ('' when it could)
        self.memory = None
        self.fallbacks: list[str] = []
        self.load_error = ""
        self.pipe = None
        self.validate()

    @property
    def offloads(self) -> tuple[str, ...]:
        """The offloads this adapter can apply (memory.OFFLOADS order); none but 'none' by default."""
        return ("none",)

    def configure(self, setting) -> None:
        """Run at ``setting`` (a memory.Setting); offload and tiling take effect at the next load."""
        self.memory, self.offload, self.vae_tiling = setting, setting.offload, setting.vae_tiling

    def fail(self, message: str) -> GeneratorError:
        return GeneratorError(f"generator '{self.gen.name}' ({self.name}): {message}")

    def validate(self) -> None:
        """Settings this family cannot honour, refused before any file is read."""
        if not self.takes_strength and self.gen.strength != 1.0:
            raise self.fail(f"key 'strength' is {self.gen.strength}, but this family always regenerates "
                            f"the whole mask: leave it at 1.0")
        if self.takes_prior and not self.gen.prior:
            raise self.fail("key 'prior' is missing: this family needs a prior checkpoint (hub id or folder)")
        if not self.takes_prior and (self.gen.prior or self.gen.prior_revision):
            raise self.fail("key 'prior' is set, but this family takes no prior checkpoint")
        if self.gen.lora is not None and not self.takes_lora:
            raise self.fail("key 'lora' is set, but this family's pipeline cannot load LoRA weights")
        clash = sorted(RESERVED_OPTIONS & set(self.gen.options))
        if clash:
            raise self.fail(f"key 'options' sets {clash}, which the adapter sets itself (use the "
                            f"generator's own keys: steps, guidance, strength, resolution)")

    def check_source(self) -> None:
        """Fail before any work when the model cannot be found (cheap: no weights are read)."""

    @abc.abstractmethod
    def load(self) -> None:
        """Read the weights and build the pipeline (``self.pipe``)."""

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    def unload(self) -> None:
        """Drop every model this adapter holds; the next generator starts from the memory before it."""
        self.pipe = None
        release_memory()

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        """The size this family generates at for a ``width`` x ``height`` image (the rule lives in the base layer:
        assemble sizes never-edited images by it too)."""
        return generator_size(self.gen, width, height)

    def run(self, batch: Batch) -> np.ndarray:
        """Generated images as float32 (B, H, W, 3) in [0, 1] at the batch's size; may contain NaN."""
        if not self.loaded:
            raise self.fail("not loaded")
        with torch.inference_mode():
            out = np.asarray(self._generate(batch), dtype=np.float32)
        width, height = batch.size
        expected = (len(batch.images), height, width, 3)
        if out.shape != expected:  # the edit stage composites pixel by pixel: a size drift would break it
            raise self.fail(f"returned {out.shape}, expected {expected}")
        return out

    @abc.abstractmethod
    def _generate(self, batch: Batch) -> np.ndarray:
        """The family's pipeline call on one batch, images as (B, H, W, 3) in [0, 1]."""


class DiffusersFamily(Family):
    """A diffusers pipeline loaded by ``from_pretrained(model)``; subclasses set ``pipeline`` and checks."""

    pipeline: str = ""  # diffusers pipeline class name

    @property
    def offloads(self) -> tuple[str, ...]:
        # diffusers' offloads move modules between the CPU and an accelerator: CUDA only.
        return ("none", "model", "sequential") if self.device == "cuda" else ("none",)

    @property
    def takes_lora(self) -> bool:
        import diffusers

        # diffusers gives a pipeline class LoRA loading through one of its LoRA loader mixins.
        return hasattr(getattr(diffusers, self.pipeline), "load_lora_weights")

    def check_source(self) -> None:
        self.check_folder(self.gen.model, "model")
        if self.gen.lora is not None:
            self.check_lora_file()

    def check_lora_file(self) -> None:
        lora = self.gen.lora
        if not is_local(lora.path):
            return
        weights = Path(lora.path)
        if weights.is_dir() and lora.weight_name:
            weights = weights / lora.weight_name
        if not weights.exists():
            raise self.fail(f"key 'lora.path': no LoRA weights at '{weights}' (the offline LoRA twins are "
                            f"built by `dvc repro twins` with twins.loras)")

    def check_folder(self, model: str, key: str) -> None:
        if is_local(model) and not Path(model, "model_index.json").is_file():
            raise self.fail(f"key '{key}': no diffusers pipeline folder at '{model}' (model_index.json "
                            f"missing; the offline twins are built by `dvc repro twins`)")

    def load(self) -> None:
        self.check_source()
        pipe = self.from_pretrained(self.pipeline, self.gen.model, self.gen.revision, self.gen.variant)
        self.check_pipeline(pipe)
        if self.gen.scheduler:
            import diffusers

            pipe.scheduler = getattr(diffusers, self.gen.scheduler).from_config(pipe.scheduler.config)
        if self.gen.lora is not None:
            self.load_lora(pipe)
        self.pipe = self.place(pipe)

    def load_lora(self, pipe) -> None:
        """The generator's LoRA, loaded into ``pipe`` by diffusers' own line and weighted by its scale."""
        lora = self.gen.lora
        try:
            pipe.load_lora_weights(lora.path, weight_name=lora.weight_name, revision=lora.revision,
                                   adapter_name=LORA_ADAPTER)
        except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: weights that do not fit the model
            message = _load_hint("LoRA weights", lora.path, lora.revision, err)
            if "size mismatch" in str(err):  # torch names the mismatched tensors on later lines only
                message += " size mismatch: the LoRA was made for another base model"
            raise self.fail(message) from None
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[lora.scale])

    def from_pretrained(self, pipeline: str, model: str, revision: str | None, variant: str | None = None):
        import diffusers
        import transformers

        # Per-component loading bars would drown the stage's own progress output.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        cls = getattr(diffusers, pipeline)
        try:
            return cls.from_pretrained(model, revision=revision, variant=variant, dtype=self.dtype,
                                       **without_safety_checker(cls))
        except (OSError, ValueError) as err:
            raise self.fail(_load_hint(pipeline, model, revision, err)) from None

    def place(self, pipe):
        """Apply the device and memory policy to a loaded pipeline."""
        if self.vae_tiling:
            _tile_autoencoders(pipe)
        if self.offload == "sequential":  # one layer at a time on the GPU: the least memory, the slowest
            pipe.enable_sequential_cpu_offload()
        elif self.offload == "model":
            pipe.enable_model_cpu_offload()
        elif self.device != "cpu":  # from_pretrained already loads onto the CPU
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def check_pipeline(self, pipe) -> None:
        """Refuse checkpoints that cannot inpaint (a subclass knows how to tell)."""

    def call_kwargs(self, batch: Batch) -> dict:
        """Keyword arguments of the pipeline call besides image, mask and generator."""
        width, height = batch.size
        kwargs = dict(prompt=batch.prompts, height=height, width=width, num_inference_steps=self.gen.steps,
                      guidance_scale=self.gen.guidance, output_type="np")
        if self.takes_negative_prompt:
            kwargs["negative_prompt"] = batch.negative_prompts
        if self.takes_strength:
            kwargs["strength"] = self.gen.strength
        kwargs.update(self.gen.options)
        return kwargs

    def _generate(self, batch: Batch) -> np.ndarray:
        return self.pipe(image=batch.images, mask_image=batch.masks, generator=seeded(batch.seeds),
                         **self.call_kwargs(batch)).images


def _tile_autoencoders(pipe) -> None:
    """VAE tiling and slicing: large images and batches decode in pieces, at bounded memory."""
    for component in pipe.components.values():
        # Only the autoencoders that implement them (Kandinsky's VQ movq has neither).
        if hasattr(component, "use_tiling"):
            component.enable_tiling()
        if hasattr(component, "use_slicing"):
            component.enable_slicing()


def _load_hint(pipeline: str, model: str, revision: str | None, err: Exception) -> str:
    where = f"'{model}'" + (f" at revision {revision}" if revision else "")
    message = f"cannot load {pipeline} from {where}: {short_error(err)}"
    if not is_local(model):
        message += (f". '{model}' is not a local folder either, so it was taken as a hub id. Offline, a hub "
                    f"model must already be in the Hugging Face cache: run `huggingface-cli download {model}` "
                    f"on a connected machine (gated models need `huggingface-cli login` and an accepted "
                    f"licence first)")
    return message
