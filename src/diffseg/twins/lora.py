"""Tiny random LoRAs for the generator twins (``twins.loras``), saved the way a trained LoRA ships.

A LoRA is no pipeline of its own: it is a file of low-rank weight deltas for the denoiser's attention
projections. This module adds one to a family's twin denoiser with peft (as diffusers' LoRA training
scripts do), fills it with random values, and writes it with the pipeline class's ``save_lora_weights``,
so the edit stage reads it with the very ``load_lora_weights`` line it runs on a real LoRA.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffseg.errors import UserError
from diffseg.seeding import keyed_seed
from diffseg.twins import generators

RANK = 4
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the attention projections LoRA training scripts adapt
# diffusers' default file name: a generator entry may leave weight_name out for a folder holding it.
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# A new LoRA's B matrices are zero (training starts from "no change"); random ones at this spread move
# the tiny denoisers' outputs visibly, as a trained LoRA moves a real model's.
STD = 0.1


def folder(family: str) -> str:
    """The folder of ``family``'s LoRA twin, next to the family's own twin."""
    return f"{family}_lora"


@dataclass
class LoraTwin:
    pipeline: type  # the pipeline class whose save_lora_weights writes it
    denoiser: str  # "unet" or "transformer": the component the LoRA adapts
    layers: dict[str, torch.Tensor]  # diffusers-format LoRA weights of the denoiser

    @property
    def parameters(self) -> int:
        return sum(tensor.numel() for tensor in self.layers.values())

    def save(self, out_dir: Path) -> None:
        self.pipeline.save_lora_weights(Path(out_dir), weight_name=WEIGHT_NAME,
                                        **{f"{self.denoiser}_lora_layers": self.layers})


def build(family: str, seed: int) -> LoraTwin:
    """A random LoRA for ``family``'s twin, in memory; a family whose pipeline cannot load one is refused.

    The twin is rebuilt from the same seed, so the LoRA's module names and shapes are those of the saved
    twin; the LoRA's values have a seed of their own.
    """
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = generators.build(family, seed)[family]
    if not hasattr(pipe, "save_lora_weights"):
        raise UserError(f"twins.loras: {type(pipe).__name__} (family '{family}') cannot load LoRA weights, so "
                        f"it gets no LoRA twin")
    denoiser = "unet" if hasattr(pipe, "unet") else "transformer"
    model = getattr(pipe, denoiser)
    model.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS))
    torch.manual_seed(keyed_seed(seed, "twins", family, "lora") % (1 << 32))
    for name, param in model.named_parameters():
        if ".lora_" in name:
            torch.nn.init.normal_(param.data, std=STD)
    return LoraTwin(type(pipe), denoiser, convert_state_dict_to_diffusers(get_peft_model_state_dict(model)))
