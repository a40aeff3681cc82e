"""``twins``: tiny, randomly initialised checkpoints of the real generator pipelines.

Offline there is no hub, so each family's *real* pipeline class is instantiated from small configs,
saved with ``save_pretrained`` and later loaded by the very ``from_pretrained`` line a GPU user runs
on the real checkpoint. The twins prove the machinery (shapes, conditioning, masks, batching,
compositing); their images are noise-like and say nothing about the real models' output.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from diffseg import records
from diffseg.seeding import keyed_seed

LATENT_SCALE = 8  # the VAEs below downsample 8x, like the real ones
# The byte-level twin tokenizers spend one token per character, so they get a longer window than the
# real CLIP's 77 tokens; otherwise every templated prompt would be cut (and warned about).
MAX_TOKENS = 256


def _byte_vocab() -> list[str]:
    """GPT-2's byte-to-unicode table: a byte-level vocabulary that needs no download."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def clip_tokenizer():
    from transformers import CLIPTokenizer

    chars = _byte_vocab()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=MAX_TOKENS)


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    pieces += [("▁" + c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=MAX_TOKENS)


def clip_text(tok, projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=hidden,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def t5_text(tok):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                   decoder_start_token_id=0))


def vae(latent_channels: int = 4, flow: bool = False):
    from diffusers import AutoencoderKL

    extra = dict(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                 scaling_factor=1.5035) if flow else {}
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                         block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=256, **extra)


def build_sd2():
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    tok = clip_tokenizer()
    unet = UNet2DConditionModel(sample_size=32, in_channels=9, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionInpaintPipeline(vae=vae(), text_encoder=clip_text(tok), tokenizer=tok, unet=unet,
                                          scheduler=sched, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def build_sdxl():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, UNet2DConditionModel

    tok, tok2 = clip_tokenizer(), clip_tokenizer()
    # SDXL conditions on pooled text (32) plus six micro-conditioning values embedded in 8 dims each.
    unet = UNet2DConditionModel(sample_size=32, in_channels=9, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32,
                                cross_attention_dim=64)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear",
                                   timestep_spacing="leading")
    return StableDiffusionXLInpaintPipeline(vae=vae(), text_encoder=clip_text(tok), text_encoder_2=clip_text(tok2, True),
                                            tokenizer=tok, tokenizer_2=tok2, unet=unet, scheduler=sched,
                                            requires_aesthetics_score=False, add_watermarker=False)


def build_flux_fill():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel

    tok, tok2 = clip_tokenizer(), t5_tokenizer()
    latent = 4
    # Fill input = packed noisy latents + packed masked-image latents (4*latent each) + packed mask (4*8*8).
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=8 * latent + 4 * LATENT_SCALE ** 2,
                                         out_channels=4 * latent, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    return FluxFillPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(latent, flow=True),
                            text_encoder=clip_text(tok), tokenizer=tok, text_encoder_2=t5_text(tok2),
                            tokenizer_2=tok2, transformer=transformer)


def build_sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3InpaintPipeline

    tok, tok2, tok3 = clip_tokenizer(), clip_tokenizer(), t5_tokenizer()
    latent = 16
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=latent, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=32,
                                        caption_projection_dim=32, pooled_projection_dim=64, out_channels=latent)
    return StableDiffusion3InpaintPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                           vae=vae(latent, flow=True), text_encoder=clip_text(tok, True),
                                           tokenizer=tok, text_encoder_2=clip_text(tok2, True), tokenizer_2=tok2,
                                           text_encoder_3=t5_text(tok3), tokenizer_3=tok3, image_encoder=None,
                                           feature_extractor=None)


BUILDERS = {"sd2": build_sd2, "sdxl": build_sdxl, "flux_fill": build_flux_fill, "sd3": build_sd3}


def build(family: str, seed: int):
    """The twin of ``family``, initialised from a seed keyed by the family name."""
    if family not in BUILDERS:
        raise ValueError(f"twins.families: no twin builder for family '{family}' (known: {', '.join(BUILDERS)})")
    torch.manual_seed(keyed_seed(seed, "twins", family) % (1 << 32))
    return BUILDERS[family]()


def run(seed: int, families: list[str], out_dir: Path) -> pd.DataFrame:
    unknown = [f for f in families if f not in BUILDERS]
    if unknown:
        raise ValueError(f"twins.families: no twin builder for {unknown} (known: {', '.join(BUILDERS)})")
    out_dir = records.fresh_dir(out_dir)
    rows = []
    for family in families:
        pipe = build(family, seed)
        pipe.save_pretrained(out_dir / family)
        n_params = sum(p.numel() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                       for p in c.parameters())
        rows.append({"family": family, "pipeline": type(pipe).__name__, "folder": family, "parameters": n_params,
                     "status": records.OK, "reason": ""})
        print(f"twins: {family}: {type(pipe).__name__}, {n_params / 1e6:.2f} M parameters")
    manifest = pd.DataFrame(rows)
    records.write_table(out_dir / records.MANIFEST, manifest)
    return manifest
