"""The CLIP image-encoder twin that the ``univfd`` baseline probes offline (``models/twins/clip``)."""
from __future__ import annotations

from pathlib import Path

import torch

from diffseg.seeding import keyed_seed

TWIN_SIZE = 32  # input side of the tiny CLIP twin (224 for ViT-L/14)


def build_clip_twin(out_dir: Path, seed: int) -> Path:
    """A tiny random ``CLIPVisionModelWithProjection`` + ``CLIPImageProcessor`` saved into ``out_dir``.

    Both load back with the same ``from_pretrained(out_dir)`` line as the real checkpoint; the processor
    resizes the shorter side to 32 px and centre-crops 32 x 32, with OpenAI's CLIP normalisation.
    """
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(keyed_seed(seed, "twins", "clip") % (1 << 32))
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=TWIN_SIZE, patch_size=8, projection_dim=16)
    processor = CLIPImageProcessor(size={"shortest_edge": TWIN_SIZE},
                                   crop_size={"height": TWIN_SIZE, "width": TWIN_SIZE})
    out_dir = Path(out_dir)
    CLIPVisionModelWithProjection(config).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
