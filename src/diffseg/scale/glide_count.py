"""GLIDE's parameter count, worked out from its published architecture instead of instantiated.

The ``glide-text2im`` package is not on PyPI, so its classes cannot be built here. Its architecture is
public: ``glide_text2im/model_creation.py`` (``model_and_diffusion_defaults`` and the ``_upsampler``
variant), ``unet.py`` (the ADM UNet: ResBlock, AttentionBlock with text keys and values) and ``xf.py``
(the text transformer). :func:`count` adds up the weights and biases of every layer those files create, in
the same order; each line names the layer it counts.
"""
from __future__ import annotations

N_VOCAB = 50257  # len(encoder.json) of the package's GPT-2 BPE tokenizer

# model_and_diffusion_defaults() with inpaint=True; the inpainting UNet takes x, the masked image and the mask.
BASE_INPAINT = dict(image_size=64, model_channels=192, num_res_blocks=3, channel_mult=(1, 2, 3, 4),
                    attention_resolutions=(32, 16, 8), num_head_channels=64, text_ctx=128, xf_width=512,
                    xf_layers=16, xf_final_ln=True, xf_padding=True, in_channels=3 * 2 + 1, out_channels=6)
# model_and_diffusion_defaults_upsampler() with inpaint=True: plus the upsampled low-resolution image.
UPSAMPLE_INPAINT = dict(BASE_INPAINT, image_size=256, num_res_blocks=2, channel_mult=(1, 1, 2, 2, 4, 4),
                        in_channels=3 * 3 + 1)


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def _linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def _norm(c: int) -> int:
    return 2 * c  # GroupNorm32 / LayerNorm: weight and bias


def _resblock(cin: int, cout: int, emb: int) -> int:
    n = _norm(cin) + _conv(cin, cout)  # in_layers
    n += _linear(emb, 2 * cout)  # emb_layers (scale-shift norm: scale and shift)
    n += _norm(cout) + _conv(cout, cout)  # out_layers
    return n + (0 if cin == cout else _conv(cin, cout, 1))  # 1x1 skip connection


def _attention(c: int, text: int) -> int:
    # norm, qkv and proj_out as 1x1 conv1d, encoder_kv projects the text states to keys and values.
    return _norm(c) + (c * 3 * c + 3 * c) + (text * 2 * c + 2 * c) + (c * c + c)


def _text_transformer(cfg: dict, model_channels: int) -> int:
    width, ctx = cfg["xf_width"], cfg["text_ctx"]
    layer = _linear(width, 3 * width) + _linear(width, width) + 2 * _norm(width)  # attention, ln_1, ln_2
    layer += _linear(width, 4 * width) + _linear(4 * width, width)  # MLP
    n = cfg["xf_layers"] * layer
    n += _norm(width) if cfg["xf_final_ln"] else 0
    n += N_VOCAB * width + ctx * width  # token and positional embeddings
    n += _linear(width, 4 * model_channels)  # transformer_proj, added to the timestep embedding
    return n + (ctx * width if cfg["xf_padding"] else 0)  # padding_embedding


def count(cfg: dict) -> int:
    """Parameters of GLIDE's ``InpaintText2ImUNet`` / ``SuperResInpaintText2ImUnet`` with settings ``cfg``."""
    mc, emb, text = cfg["model_channels"], 4 * cfg["model_channels"], cfg["xf_width"]
    attention_ds = {cfg["image_size"] // r for r in cfg["attention_resolutions"]}
    n = _linear(mc, emb) + _linear(emb, emb)  # time_embed
    ch = mc * cfg["channel_mult"][0]
    n += _conv(cfg["in_channels"], ch)
    chans, ds = [ch], 1
    levels = list(enumerate(cfg["channel_mult"]))
    for level, mult in levels:
        for _ in range(cfg["num_res_blocks"]):
            n += _resblock(ch, mult * mc, emb)
            ch = mult * mc
            n += _attention(ch, text) if ds in attention_ds else 0
            chans.append(ch)
        if level != len(levels) - 1:
            n += _resblock(ch, ch, emb)  # resblock_updown: a ResBlock downsamples
            chans.append(ch)
            ds *= 2
    n += 2 * _resblock(ch, ch, emb) + _attention(ch, text)  # middle block
    for level, mult in levels[::-1]:
        for i in range(cfg["num_res_blocks"] + 1):
            n += _resblock(ch + chans.pop(), mult * mc, emb)
            ch = mult * mc
            n += _attention(ch, text) if ds in attention_ds else 0
            if level and i == cfg["num_res_blocks"]:
                n += _resblock(ch, ch, emb)  # a ResBlock upsamples
                ds //= 2
    n += _norm(ch) + _conv(mc * cfg["channel_mult"][0], cfg["out_channels"])  # out
    return n + _text_transformer(cfg, mc)
