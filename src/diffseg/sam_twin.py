"""The architecture of SAM's offline twin size, ``vit_twin``, beside segment-anything's vit_h / vit_l / vit_b.

segment-anything loads a checkpoint through ``sam_model_registry[type](checkpoint=...)``, whose builders
fix the architecture of each size. The twins stage saves a state dict of this architecture and
``propose``'s Grounded-SAM loads it through that same registry call, so both need the builder; it
builds nothing on disk itself. torch is imported on use, so importing this module costs nothing.
"""
from __future__ import annotations

from functools import partial

SAM_TWIN = "vit_twin"


def sam_twin(checkpoint: str | None = None):
    """segment-anything's ``Sam`` at toy size: 256 px input, a 2-block 32-wide ViT, 64-wide prompts and decoder.

    Built like ``segment_anything.build_sam._build_sam`` builds vit_h / vit_l / vit_b, and loading
    ``checkpoint`` the same way (``torch.load`` of a state dict, ``load_state_dict``). The real builders
    fix the input at 1024 px and the prompt width at 256, which makes even a 2-block encoder take seconds
    per image on a CPU.
    """
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    size, patch, width = 256, 16, 64
    sam = Sam(image_encoder=ImageEncoderViT(depth=2, embed_dim=32, img_size=size, mlp_ratio=4,
                                            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                            patch_size=patch, qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1],
                                            window_size=4, out_chans=width),
              prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(size // patch, size // patch),
                                           input_image_size=(size, size), mask_in_chans=8),
              mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
                  depth=2, embedding_dim=width, mlp_dim=128, num_heads=4), transformer_dim=width, iou_head_depth=3,
                  iou_head_hidden_dim=64),
              pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    sam.eval()
    if checkpoint is not None:
        with open(checkpoint, "rb") as f:
            sam.load_state_dict(torch.load(f, weights_only=True))
    return sam


def register_sam_twin() -> None:
    """Make ``sam_model_registry['vit_twin']`` the twin's builder (idempotent), beside vit_h / vit_l / vit_b."""
    from segment_anything import sam_model_registry

    sam_model_registry.setdefault(SAM_TWIN, sam_twin)
