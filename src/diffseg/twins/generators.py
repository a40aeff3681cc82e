"""Tiny, randomly initialised checkpoints of the real generator pipelines.

Offline there is no hub, so each family's *real* pipeline class is instantiated from small configs,
saved with ``save_pretrained`` and later loaded by the very ``from_pretrained`` line a GPU user runs
on the real checkpoint. The twins prove the machinery (shapes, conditioning, masks, batching,
compositing); their images are noise-like and say nothing about the real models' output.
"""
from __future__ import annotations

from pathlib import Path

import torch

from diffseg.seeding import keyed_seed

LATENT_SCALE = 8  # the VAEs below downsample 8x, like the real ones
# The byte-level twin tokenizers spend one token per character, so they get a longer window than the
# real CLIP's 77 tokens; otherwise every templated prompt would be cut (and warned about).
MAX_TOKENS = 256


def byte_vocab() -> list[str]:
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

    chars = byte_vocab()
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


def build_kandinsky22():
    """The inpainting decoder and its prior: two checkpoints, as the real model ships."""
    from diffusers import DDPMScheduler, KandinskyV22InpaintPipeline, UNet2DConditionModel, VQModel

    embed = 32  # the prior's image embedding is the decoder's only conditioning
    unet = UNet2DConditionModel(sample_size=32, in_channels=9, out_channels=8, addition_embed_type="image",
                                down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64),
                                layers_per_block=1, encoder_hid_dim=embed, encoder_hid_dim_type="image_proj",
                                cross_attention_dim=32, attention_head_dim=4, resnet_time_scale_shift="scale_shift",
                                class_embed_type=None)
    # movq's SpatialNorm hard-codes GroupNorm(32): every block needs a multiple of 32 channels.
    movq = VQModel(block_out_channels=[32] * 4,
                   down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
                   up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3, in_channels=3, out_channels=3,
                   latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
                   num_vq_embeddings=12, vq_embed_dim=4)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, prediction_type="epsilon", variance_type="learned_range")
    decoder = KandinskyV22InpaintPipeline(unet=unet, scheduler=sched, movq=movq)
    return {"kandinsky22": decoder, "kandinsky22_prior": _kandinsky_prior(embed)}


def _kandinsky_prior(embed: int):
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tok = clip_tokenizer()
    # The prior attends over every text position, so it needs as many as the twin tokenizer makes.
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=embed, num_layers=1,
                             num_embeddings=MAX_TOKENS)
    # clip_std starts at zero, which would make every image embedding zero and the prompt irrelevant.
    prior.clip_std.data.fill_(1.0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, image_size=32, patch_size=8,
                                                            projection_dim=embed, intermediate_size=37,
                                                            num_attention_heads=4, num_hidden_layers=2))
    processor = CLIPImageProcessor(size=32, crop_size=32, do_center_crop=True, do_normalize=True, do_resize=True,
                                   image_mean=[0.48145466, 0.4578275, 0.40821073],
                                   image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)
    sched = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                            clip_sample=True, clip_sample_range=10.0)
    return KandinskyV22PriorPipeline(prior=prior, image_encoder=vision, text_encoder=clip_text(tok, True, embed),
                                     tokenizer=tok, scheduler=sched, image_processor=processor)


def bert_tokenizer():
    """WordPiece over single characters and letter pairs: no download, and most templated prompts fit the
    77 tokens HunyuanDiT's pipeline gives its BERT encoder (longer ones are truncated, as with the real one)."""
    import itertools
    import string

    from transformers import BertTokenizer

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pairs = ["".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2)]
    pieces = chars + pairs
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + pieces + ["##" + p for p in pieces]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def build_hunyuan_blend():
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel

    tok, tok2 = bert_tokenizer(), t5_tokenizer()
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=37, max_position_embeddings=77))
    # text_len / text_len_t5 are the token counts the pipeline pads to (77 BERT, 256 T5); v1.1 keeps the
    # style and image-size conditioning that v1.2 dropped.
    transformer = HunyuanDiT2DModel(sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=4, in_channels=4, hidden_size=32, cross_attention_dim=32,
                                    cross_attention_dim_t5=32, pooled_projection_dim=16, text_len=77,
                                    text_len_t5=256, activation_fn="gelu-approximate",
                                    use_style_cond_and_image_meta_size=True)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.018, beta_schedule="scaled_linear", clip_sample=False,
                          steps_offset=1)
    return HunyuanDiTPipeline(vae=vae(), text_encoder=bert, tokenizer=tok, transformer=transformer, scheduler=sched,
                              text_encoder_2=t5_text(tok2), tokenizer_2=tok2, safety_checker=None,
                              feature_extractor=None, requires_safety_checker=False)


def chatglm_tokenizer():
    """ChatGLM's sentencepiece tokenizer, trained here on the alphabet: a character vocabulary with byte
    fallback (like ChatGLM3's), built by the sentencepiece package instead of downloaded."""
    import io
    import string
    import tempfile

    import sentencepiece as spm
    from diffusers.pipelines.kolors import ChatGLMTokenizer

    model = io.BytesIO()
    text = [string.ascii_lowercase, string.ascii_uppercase, string.digits + " " + string.punctuation]
    # One thread, the identity normaliser and no output path recorded in the model: the same bytes every
    # run, and no 240 kB normalisation table.
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, model_type="char",
                                   vocab_size=400, hard_vocab_limit=False, byte_fallback=True, character_coverage=1.0,
                                   normalization_rule_name="identity", num_threads=1, minloglevel=2)
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name, "tokenizer.model")
    path.write_bytes(model.getvalue())
    tok = ChatGLMTokenizer(vocab_file=str(path))
    # save_pretrained copies the model file from there: the folder lives as long as the tokenizer.
    tok.model_folder = folder
    return tok


def chatglm_text(tok):
    from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig, ChatGLMModel

    cfg = ChatGLMConfig(num_layers=2, padded_vocab_size=len(tok), hidden_size=32, ffn_hidden_size=37, kv_channels=8,
                        num_attention_heads=4, seq_length=MAX_TOKENS, multi_query_attention=True,
                        multi_query_group_num=2, add_qkv_bias=True, original_rope=True)
    model = ChatGLMModel(cfg, empty_init=False)
    # ChatGLM's own init leaves RMSNorm weights uninitialised (real checkpoints overwrite them): seed them all.
    for name, param in model.named_parameters():
        if param.ndim > 1:
            torch.nn.init.normal_(param.data, std=0.02)
        else:
            param.data.fill_(1.0 if "layernorm" in name else 0.0)
    return model


def build_kolors_blend():
    from diffusers import EulerDiscreteScheduler, KolorsPipeline, UNet2DConditionModel

    tok = chatglm_tokenizer()
    # Kolors' UNet is SDXL's with ChatGLM's states projected in (text_proj) and its pooled state as text_embeds.
    unet = UNet2DConditionModel(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32,
                                cross_attention_dim=32, encoder_hid_dim=32, encoder_hid_dim_type="text_proj")
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.014, beta_schedule="scaled_linear", steps_offset=1,
                                   timestep_spacing="leading")
    return KolorsPipeline(vae=vae(), text_encoder=chatglm_text(tok), tokenizer=tok, unet=unet, scheduler=sched,
                          image_encoder=None, feature_extractor=None)


BUILDERS = {"sd2": build_sd2, "sdxl": build_sdxl, "flux_fill": build_flux_fill, "sd3": build_sd3,
            "kandinsky22": build_kandinsky22, "hunyuan_blend": build_hunyuan_blend, "kolors_blend": build_kolors_blend}


def build(family: str, seed: int) -> dict:
    """The twin of ``family`` as {folder name: pipeline}, initialised from a seed keyed by the family name.

    Most families are one pipeline in a folder named after the family; two-stage ones (Kandinsky's
    prior and decoder) are one folder per checkpoint, as the real models ship.
    """
    if family not in BUILDERS:
        raise ValueError(f"twins.families: no twin builder for family '{family}' (known: {', '.join(BUILDERS)})")
    torch.manual_seed(keyed_seed(seed, "twins", family) % (1 << 32))
    made = BUILDERS[family]()
    return made if isinstance(made, dict) else {family: made}
