"""Published parameter counts of the paper's generators, per component, and the activation shape of each.

One entry per checkpoint (hub id), one line per component with where the figure comes from. The memory
policy (:mod:`diffseg.edit.memory`) reads them; a generator whose checkpoint is not listed (a local folder,
a twin) takes its family's paper checkpoint. Figures marked "derived" are computed here from the
released config (layers x widths), not quoted; "brief" marks a figure not checked against a primary
source. tests/test_architectures.py checks every checkpoint's denoiser and total against the counts of the
real-size architectures (diffseg.scale.architectures), within 3%.

``Shape`` holds what the activation term needs besides the counts (see :mod:`diffseg.edit.memory` for the
model): the VAE's downsampling factor, the activation width per latent cell at the denoiser's peak, the
width per output pixel at the VAE decoder's peak, whether guidance doubles the denoiser batch, and
whether the adapter runs items one by one (then the batch size does not change the activations).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from diffseg.params import Generator

M, B = 10 ** 6, 10 ** 9
LIVE = 16  # feature maps alive at a denoiser's peak, in units of its widest top-level width (memory.py)


@dataclass(frozen=True)
class Shape:
    cell_width: int  # values per latent cell and batch element at the denoiser's peak (LIVE x width per cell)
    latent_factor: int = 8  # pixels per latent cell side (the SD-style VAEs and MoVQ downsample by 8)
    decode_width: int = 1024  # values per output pixel at the VAE decoder's peak (4 x 256 channels, memory.py)
    cfg: bool = True  # classifier-free guidance runs the denoiser on a doubled batch (guidance > 1)
    per_item: bool = False  # the adapter calls the model one item at a time (Kandinsky 2.2, GLIDE)
    vae_tiles: bool = True  # the autoencoder implements tiling and slicing (Kandinsky's MoVQ does not)


@dataclass(frozen=True)
class Spec:
    counts: dict[str, int]  # component -> parameters; 'denoiser' and (latent models) 'vae' are required keys
    shape: Shape = field(default_factory=lambda: Shape(LIVE * 320))


SD_VAE = 84 * M  # SD/SDXL KL autoencoder, 83.65M (diffusers AutoencoderKL, SD 1.x/2.x/XL configs; derived)
VAE16 = 84 * M  # the 16-channel KL autoencoder of SD3 and FLUX.1: only the latent convolutions differ (derived)
CLIP_L = 123 * M  # CLIP ViT-L/14 text tower, 123.06M (openai/clip-vit-large-patch14; SDXL paper, Tab. 1)
BIGG_TEXT = 695 * M  # OpenCLIP ViT-bigG/14 text tower, 694.7M (SDXL paper, Tab. 1: 817M for both encoders)
T5_XXL = 4762 * M  # T5 v1.1 XXL encoder only, 4.76B (google/t5-v1_1-xxl; FLUX.1 and SD3 text_encoder_3/2)

SPECS: dict[str, Spec] = {
    "sd2-community/stable-diffusion-2-inpainting": Spec({
        "denoiser": 865 * M,  # UNet, 865M (Stability AI SD 2.0 release notes: the same UNet size as SD 1.x)
        "text_encoder": 354 * M,  # OpenCLIP ViT-H/14 text tower, 354M (SD 2 model card; OpenCLIP results table)
        "vae": SD_VAE,
    }, Shape(LIVE * 320)),  # attention and GEGLU at the top level: 320 channels on every latent cell
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": Spec({
        "denoiser": 2567 * M,  # UNet, 2.567B (SDXL paper, Podell et al. 2023, Tab. 1)
        "text_encoder": CLIP_L,
        "text_encoder_2": BIGG_TEXT,
        "vae": SD_VAE,
    }, Shape(LIVE * 320)),  # 320 channels on every cell (level 2: 640 on a quarter of them)
    "black-forest-labs/FLUX.1-Fill-dev": Spec({
        "denoiser": 11_900 * M,  # transformer, 11.9B (model card: "12 billion parameter"; 11.9B: brief)
        "text_encoder": CLIP_L,
        "text_encoder_2": T5_XXL,
        "vae": VAE16,
    }, Shape(LIVE * 3072 // 4, cfg=False)),  # hidden 3072 per 2x2-cell token; guidance-distilled: no doubling
    "stabilityai/stable-diffusion-3.5-medium": Spec({
        "denoiser": 2500 * M,  # MMDiT-X, 2.5B (SD3.5 Medium model card)
        "text_encoder": CLIP_L,
        "text_encoder_2": BIGG_TEXT,
        "text_encoder_3": T5_XXL,
        "vae": VAE16,
    }, Shape(LIVE * 1536 // 4)),  # hidden 24 x 64 = 1536 per 2x2-cell token
    "stabilityai/stable-diffusion-3.5-large": Spec({
        "denoiser": 8100 * M,  # MMDiT, 8.1B (SD3.5 Large model card)
        "text_encoder": CLIP_L,
        "text_encoder_2": BIGG_TEXT,
        "text_encoder_3": T5_XXL,
        "vae": VAE16,
    }, Shape(LIVE * 2432 // 4)),  # hidden 38 x 64 = 2432 per 2x2-cell token
    "Kwai-Kolors/Kolors-diffusers": Spec({
        "denoiser": 2580 * M,  # UNet, SDXL-size, 2.58B (Kolors technical report: the SDXL UNet layout)
        "text_encoder": 6243 * M,  # ChatGLM3-6B, 6.24B (THUDM/chatglm3-6b model card: "6B")
        "vae": SD_VAE,  # the SDXL autoencoder
    }, Shape(LIVE * 320)),
    "Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers": Spec({
        "denoiser": 1500 * M,  # DiT, 1.5B (HunyuanDiT paper, Li et al. 2024)
        "text_encoder": 351 * M,  # bilingual CLIP text tower, a BERT of 24 x 1024, vocab 47,020 (derived, 0.35B)
        "text_encoder_2": 1670 * M,  # mT5-XL encoder: 24 x (d 2048, ff 5120), vocab 250,112 (derived, 1.67B)
        "vae": SD_VAE,  # the SDXL autoencoder (fp16-fix)
    }, Shape(LIVE * 1408 // 4)),  # hidden 1408 per 2x2-cell token
    "kandinsky-community/kandinsky-2-2-decoder-inpaint": Spec({
        "denoiser": 1220 * M,  # latent diffusion U-Net, 1.22B (ai-forever/Kandinsky-2 README, 2.2 architecture)
        "vae": 67 * M,  # MoVQ encoder/decoder, 67M (same README)
        "prior": 1000 * M,  # diffusion image prior, 1B (same README)
        "image_encoder": 1800 * M,  # CLIP ViT-bigG-14-laion2B-39B-b160k image tower, 1.8B (same README)
        "text_encoder": BIGG_TEXT,  # the prior's CLIPTextModelWithProjection, a bigG text tower (prior config)
    }, Shape(LIVE * 384, per_item=True, vae_tiles=False)),  # U-Net top level 384 channels
    "base-inpaint": Spec({
        "denoiser": 385 * M,  # GLIDE (filtered) base-inpaint, 64 px (brief; glide-text2im publishes no count)
        "upsampler": 398 * M,  # upsample-inpaint, 64 -> 256 px (brief; as above)
    }, Shape(LIVE * 192, latent_factor=1, decode_width=0, cfg=False, per_item=True, vae_tiles=False)),
    # GLIDE works in pixels; the peak is the upsampler (192 channels at 256 px, no guidance), not the 64 px base.
}

# The checkpoint each family stands for when a generator names another (a local folder or a twin).
PAPER_CHECKPOINT = {
    "sd2": "sd2-community/stable-diffusion-2-inpainting",
    "sdxl": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "flux_fill": "black-forest-labs/FLUX.1-Fill-dev",
    "sd3": "stabilityai/stable-diffusion-3.5-medium",
    "kolors_blend": "Kwai-Kolors/Kolors-diffusers",
    "hunyuan_blend": "Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers",
    "kandinsky22": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "glide": "base-inpaint",
}


def spec(gen: Generator) -> Spec:
    """The counts and shape of ``gen``'s checkpoint, or of its family's paper checkpoint."""
    return SPECS.get(gen.model) or SPECS[PAPER_CHECKPOINT[gen.family]]
