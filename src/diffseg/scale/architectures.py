"""Full-size architectures of every model the paper profile runs, and their parameter counts.

Throughput and memory do not depend on trained weights: a full-size model with random weights costs what
the real one costs. No hub is reachable here, so each component's configuration is written out below from
the published ``config.json`` of its hub repository (cited per component), and instantiated with its real
class on the ``meta`` device, which allocates nothing, to count its parameters. ``published`` is the
count the model's own documentation states (model card, paper, or the size of its safetensors weights
divided by the bytes per parameter), with its source; ``tests/test_architectures.py`` checks the two
agree within 2%.

GLIDE is the exception: its ``glide-text2im`` package is not on PyPI and cannot be installed here, so
its two UNets are counted by :mod:`diffseg.scale.glide_count` from the package's published architecture
(``model_and_diffusion_defaults``), and marked as not instantiated.

Nothing here reads weights; nothing in the offline pipeline imports this module.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import torch

from diffseg.scale import glide_count


@dataclass(frozen=True)
class Component:
    """One model of a family: its class, configuration, and published size."""

    cls: str  # "module:Class" of the real implementation
    config: dict
    source: str  # the hub file the configuration is written from
    published: int | None  # parameters as `published_source` states them; None: no figure found to check against
    published_source: str
    attr: str = ""  # the pipeline attribute it fills ("" for models used outside a diffusers pipeline)
    pipe: str = ""  # which pipeline of a two-pipeline family ("prior" for Kandinsky's prior)
    config_cls: str = ""  # "module:Config" for transformers models built from a config object
    # Where the count and the published figure disagree by more than 2%: the relative gap, explained in `gap_note`.
    gap: float = 0.0
    gap_note: str = ""

    @property
    def class_name(self) -> str:
        if self.cls == "segment_anything:sam_model_registry":
            return f"Sam (sam_model_registry['{self.config['registry']}'])"
        return self.cls.rsplit(":", 1)[1]


# --- shared component configurations --------------------------------------------------------------------

# CLIP ViT-L/14 text tower (openai/clip-vit-large-patch14), as SD 1.x, SDXL (text_encoder), SD3 and FLUX use it.
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
# OpenCLIP ViT-bigG/14 text tower (laion/CLIP-ViT-bigG-14-laion2B-39B-b160k), SDXL's and SD3's text_encoder_2.
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
# T5 v1.1 XXL encoder (google/t5-v1_1-xxl), SD3's text_encoder_3 and FLUX's text_encoder_2.
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", is_gated_act=True,
              dense_act_fn="gelu_new", tie_word_embeddings=False)
# The SD/SDXL KL autoencoder (4 latent channels, 8x downsampling).
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
              layers_per_block=2, norm_num_groups=32, sample_size=512,
              down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
# SD3's and FLUX's 16-channel autoencoder: no quant convs, a shift factor.
FLOW_VAE = dict(SD_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, sample_size=1024)

SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280], attention_head_dim=[5, 10, 20],
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)

DIFFUSERS = "diffusers"
CLIP_TEXT = "transformers:CLIPTextModel"
CLIP_TEXT_PROJ = "transformers:CLIPTextModelWithProjection"
CLIP_CONFIG = "transformers:CLIPTextConfig"
T5_ENCODER, T5_CONFIG = "transformers:T5EncoderModel", "transformers:T5Config"

# Published counts that several components share.
PROFILE = "mlfoundations/open_clip docs/model_profile.csv"
CLIP_L_PUBLISHED = (123_650_000, f"{PROFILE}: ViT-L-14 text tower 123.65M (with its projection)")
BIGG_PUBLISHED = (694_660_000, f"{PROFILE}: ViT-bigG-14 text tower 694.66M")
T5_PUBLISHED = (4_762_310_656, "black-forest-labs/FLUX.1-dev/text_encoder_2/model.safetensors.index.json: "
                               "total_size 9,524,621,312 bytes in bf16 / 2")
SD_VAE_PUBLISHED = (83_700_000, "stabilityai/sd-vae-ft-mse/diffusion_pytorch_model.safetensors: about 335 MB in "
                                 "fp32 / 4")
FLOW_VAE_PUBLISHED = (83_800_000, "black-forest-labs/FLUX.1-dev/ae.safetensors: about 335 MB in fp32 / 4")


def _clip(config: dict, source: str, published: tuple[int, str], attr: str, projection: bool, pipe: str = ""):
    return Component(CLIP_TEXT_PROJ if projection else CLIP_TEXT, config, source, *published, attr=attr, pipe=pipe,
                     config_cls=CLIP_CONFIG)


def _t5(source: str, attr: str, config: dict = T5_XXL, published: tuple[int, str] = T5_PUBLISHED) -> Component:
    return Component(T5_ENCODER, config, source, *published, attr=attr, config_cls=T5_CONFIG)


def _sd3_transformer(layers: int, caption: int, max_pos: int, dual: list[int]) -> dict:
    return dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=layers,
                attention_head_dim=64, num_attention_heads=layers, joint_attention_dim=4096,
                caption_projection_dim=caption, pooled_projection_dim=2048, pos_embed_max_size=max_pos,
                qk_norm="rms_norm", dual_attention_layers=tuple(dual))


def _sd3(repo: str, transformer: dict, published: tuple[int, str]) -> dict[str, Component]:
    return {
        "transformer": Component(f"{DIFFUSERS}:SD3Transformer2DModel", transformer,
                                 f"{repo}/transformer/config.json", *published, attr="transformer"),
        "text_encoder": _clip(CLIP_L, f"{repo}/text_encoder/config.json",
                              CLIP_L_PUBLISHED,
                              "text_encoder", True),
        "text_encoder_2": _clip(CLIP_BIGG, f"{repo}/text_encoder_2/config.json", BIGG_PUBLISHED, "text_encoder_2",
                                True),
        "text_encoder_3": _t5(f"{repo}/text_encoder_3/config.json", "text_encoder_3"),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(FLOW_VAE, shift_factor=0.0609, scaling_factor=1.5305),
                         f"{repo}/vae/config.json", *FLOW_VAE_PUBLISHED, attr="vae"),
    }


SD2 = "sd2-community/stable-diffusion-2-inpainting"
SDXL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
FLUX = "black-forest-labs/FLUX.1-Fill-dev"
SD35M, SD35L = "stabilityai/stable-diffusion-3.5-medium", "stabilityai/stable-diffusion-3.5-large"
K22_PRIOR, K22_DECODER = "kandinsky-community/kandinsky-2-2-prior", "kandinsky-community/kandinsky-2-2-decoder-inpaint"
KOLORS = "Kwai-Kolors/Kolors-diffusers"
HUNYUAN = "Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers"
QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
K22_README = "ai-forever/Kandinsky-2 README, Kandinsky 2.2 architecture"
# The README's list is the one it gives for Kandinsky 2.1 too, in round figures; the UNet's block layout here is
# the one diffusers' conversion script (scripts/convert_kandinsky_to_diffusers.py, INPAINT_UNET_CONFIG) uses.
K22_GAP = "the README's round figure (shared with Kandinsky 2.1's README) is below the architecture's count"
SDXL_TABLE = "SDXL paper (Podell et al. 2023), Table 1: #UNet params"

ARCHITECTURES: dict[str, dict[str, Component]] = {
    "sd2": {
        # Same UNet as SD 2 base, with 9 input channels (latents + masked-image latents + mask).
        "unet": Component(f"{DIFFUSERS}:UNet2DConditionModel", dict(
            sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
            block_out_channels=[320, 640, 1280, 1280],
            attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
            down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3),
            f"{SD2}/unet/config.json", 865_000_000, f"{SDXL_TABLE}: SD 2.0/2.1 865M", attr="unet"),
        # OpenCLIP ViT-H/14's text tower without its last layer (SD 2 conditions on the penultimate one).
        "text_encoder": _clip(dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                   num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                                   projection_dim=512),
                              f"{SD2}/text_encoder/config.json",
                              (None, f"{PROFILE}: ViT-H-14's text tower is 354.03M with 24 layers and its "
                                     "projection; SD 2 keeps 23 layers and no projection, a size stated nowhere"),
                              "text_encoder", False),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(SD_VAE, sample_size=768), f"{SD2}/vae/config.json",
                         *SD_VAE_PUBLISHED, attr="vae"),
    },
    "sdxl": {
        "unet": Component(f"{DIFFUSERS}:UNet2DConditionModel", dict(SDXL_UNET, in_channels=9),
                          f"{SDXL}/unet/config.json", 2_600_000_000, f"{SDXL_TABLE}: 2.6B", attr="unet"),
        "text_encoder": _clip(CLIP_L, f"{SDXL}/text_encoder/config.json", CLIP_L_PUBLISHED, "text_encoder", False),
        "text_encoder_2": _clip(CLIP_BIGG, f"{SDXL}/text_encoder_2/config.json", BIGG_PUBLISHED, "text_encoder_2",
                                True),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(SD_VAE, sample_size=1024), f"{SDXL}/vae/config.json",
                         *SD_VAE_PUBLISHED, attr="vae"),
    },
    "flux_fill": {
        # Fill input: packed noisy latents (64) + packed masked-image latents (64) + packed 8x8 mask (256).
        "transformer": Component(f"{DIFFUSERS}:FluxTransformer2DModel", dict(
            patch_size=1, in_channels=384, out_channels=64, num_layers=19, num_single_layers=38,
            attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
            guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
            f"{FLUX}/transformer/config.json", 12_000_000_000,
            f"{FLUX} model card: a 12 billion parameter rectified flow transformer", attr="transformer"),
        "text_encoder": _clip(CLIP_L, f"{FLUX}/text_encoder/config.json", CLIP_L_PUBLISHED, "text_encoder", False),
        "text_encoder_2": _t5(f"{FLUX}/text_encoder_2/config.json", "text_encoder_2"),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(FLOW_VAE, shift_factor=0.1159, scaling_factor=0.3611),
                         f"{FLUX}/vae/config.json", *FLOW_VAE_PUBLISHED, attr="vae"),
    },
    "sd3": _sd3(SD35M, _sd3_transformer(24, 1536, 384, list(range(13))),
                (2_500_000_000, "Stability AI, SD 3.5 announcement and model card: Medium, 2.5 billion parameters")),
    "sd3_large": _sd3(SD35L, _sd3_transformer(38, 2432, 192, []),
                      (8_100_000_000, "Stability AI, SD 3.5 announcement and model card: Large, 8.1 billion "
                                      "parameters")),
    "kandinsky22": {
        "unet": Component(f"{DIFFUSERS}:UNet2DConditionModel", dict(
            sample_size=64, in_channels=9, out_channels=8, layers_per_block=3,
            block_out_channels=[384, 768, 1152, 1536],
            down_block_types=["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3,
            up_block_types=["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"],
            mid_block_type="UNetMidBlock2DSimpleCrossAttn", attention_head_dim=64, cross_attention_dim=768,
            encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", addition_embed_type="image",
            addition_embed_type_num_heads=64, resnet_time_scale_shift="scale_shift", class_embed_type=None),
            f"{K22_DECODER}/unet/config.json", 1_220_000_000, f"{K22_README}: latent diffusion U-Net 1.22B",
            attr="unet", gap=0.0271, gap_note=K22_GAP),
        "movq": Component(f"{DIFFUSERS}:VQModel", dict(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 256, 512],
            layers_per_block=2,
            down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
            up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3, norm_num_groups=32, norm_type="spatial",
            num_vq_embeddings=16384, vq_embed_dim=4, sample_size=32),
            f"{K22_DECODER}/movq/config.json", 67_000_000, f"{K22_README}: MoVQ encoder/decoder 67M", attr="movq"),
        "prior": Component(f"{DIFFUSERS}:PriorTransformer", dict(
            num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=1280, num_embeddings=77,
            additional_embeddings=4, dropout=0.0),
            f"{K22_PRIOR}/prior/config.json", 1_000_000_000, f"{K22_README}: diffusion image prior 1B", attr="prior",
            pipe="prior", gap=0.0262, gap_note=K22_GAP),
        "image_encoder": Component("transformers:CLIPVisionModelWithProjection", dict(
            hidden_size=1664, intermediate_size=8192, num_hidden_layers=48, num_attention_heads=16, patch_size=14,
            image_size=224, projection_dim=1280, hidden_act="gelu"),
            f"{K22_PRIOR}/image_encoder/config.json", 1_844_910_000,
            f"{PROFILE}: ViT-bigG-14 image tower 1844.91M ({K22_README}: 1.8B)", attr="image_encoder",
            pipe="prior", config_cls="transformers:CLIPVisionConfig"),
        "text_encoder": _clip(CLIP_BIGG, f"{K22_PRIOR}/text_encoder/config.json", BIGG_PUBLISHED, "text_encoder", True,
                              pipe="prior"),
    },
    "kolors_blend": {
        # SDXL's UNet; ChatGLM3's 4096-wide states are projected to 2048 (text_proj), its pooled state plus six
        # 256-dim micro-conditioning values make the 5632-dim added embedding.
        "unet": Component(f"{DIFFUSERS}:UNet2DConditionModel", dict(
            SDXL_UNET, encoder_hid_dim=4096, encoder_hid_dim_type="text_proj",
            projection_class_embeddings_input_dim=5632),
            f"{KOLORS}/unet/config.json", 2_600_000_000,
            f"{SDXL_TABLE}: 2.6B (Kolors' UNet is SDXL's, per the Kolors technical report)", attr="unet"),
        "text_encoder": Component("diffusers.pipelines.kolors.text_encoder:ChatGLMModel", dict(
            num_layers=28, padded_vocab_size=65024, hidden_size=4096, ffn_hidden_size=13696, kv_channels=128,
            num_attention_heads=32, seq_length=32768, multi_query_attention=True, multi_query_group_num=2,
            add_qkv_bias=True, add_bias_linear=False, rmsnorm=True, post_layer_norm=True, original_rope=True,
            apply_residual_connection_post_layernorm=False, layernorm_epsilon=1e-5),
            f"{KOLORS}/text_encoder/config.json", 6_243_584_032,
            "THUDM/chatglm3-6b/pytorch_model.bin.index.json: total_size 12,487,168,064 bytes in fp16 / 2",
            attr="text_encoder", config_cls="diffusers.pipelines.kolors.text_encoder:ChatGLMConfig"),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(SD_VAE, sample_size=1024), f"{KOLORS}/vae/config.json",
                         *SD_VAE_PUBLISHED, attr="vae"),
    },
    "hunyuan_blend": {
        "transformer": Component(f"{DIFFUSERS}:HunyuanDiT2DModel", dict(
            sample_size=128, patch_size=2, in_channels=4, num_layers=40, num_attention_heads=16, attention_head_dim=88,
            hidden_size=1408, mlp_ratio=4.3637, learn_sigma=True, cross_attention_dim=1024, cross_attention_dim_t5=2048,
            pooled_projection_dim=1024, text_len=77, text_len_t5=256, activation_fn="gelu-approximate",
            norm_type="layer_norm", use_style_cond_and_image_meta_size=True),
            f"{HUNYUAN}/transformer/config.json", 1_500_000_000,
            "HunyuanDiT paper (Li et al. 2024), sec. 4: DiT-g/2, 1.5B parameters", attr="transformer"),
        # A bilingual CLIP text tower in BERT form (chinese-roberta-wwm-ext-large's shape).
        "text_encoder": Component("transformers:BertModel", dict(
            vocab_size=47020, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu"),
            f"{HUNYUAN}/text_encoder/config.json", None,
            "no count published for HunyuanDiT's bilingual CLIP text tower",
            attr="text_encoder", config_cls="transformers:BertConfig"),
        # mT5-XL's encoder (google/mt5-xl).
        "text_encoder_2": _t5(f"{HUNYUAN}/text_encoder_2/config.json", "text_encoder_2", dict(
            vocab_size=250112, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_heads=32,
            relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", is_gated_act=True,
            dense_act_fn="gelu_new", tie_word_embeddings=False),
            (1_674_680_000, f"{PROFILE}: mt5-xl-ViT-H-14 text tower (the mT5-XL encoder and a small projection) "
                            "1674.68M")),
        "vae": Component(f"{DIFFUSERS}:AutoencoderKL", dict(SD_VAE, sample_size=512), f"{HUNYUAN}/vae/config.json",
                         *SD_VAE_PUBLISHED, attr="vae"),
    },
    "glide": {
        "base": Component("glide_text2im.text2im_model:InpaintText2ImUNet", glide_count.BASE_INPAINT,
                          "openai/glide-text2im glide_text2im/model_creation.py: model_and_diffusion_defaults()",
                          None, "no per-checkpoint count found; counted from the architecture (glide_count)"),
        "upsampler": Component("glide_text2im.text2im_model:SuperResInpaintText2ImUnet", glide_count.UPSAMPLE_INPAINT,
                               "openai/glide-text2im glide_text2im/model_creation.py: "
                               "model_and_diffusion_defaults_upsampler()",
                               None, "no per-checkpoint count found; counted from the architecture (glide_count)"),
    },
    "qwen2_5_vl_7b": {
        # The published file keeps the text settings at the top level; transformers now nests them in text_config.
        "model": Component("transformers:Qwen2_5_VLForConditionalGeneration", dict(
            text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                             num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                             rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                             rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
            vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_chans=3,
                               out_hidden_size=3584, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                               window_size=112, fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu"),
            tie_word_embeddings=False),
            f"{QWEN}/config.json", 8_290_000_000, f"{QWEN} model page: 8.29B params (its safetensors metadata)",
            config_cls="transformers:Qwen2_5_VLConfig"),
    },
    "grounding_dino_tiny": {
        "model": Component("transformers:GroundingDinoForObjectDetection", dict(
            backbone_config=dict(model_type="swin", embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                 window_size=7, image_size=224, out_indices=[2, 3, 4]),
            text_config=dict(model_type="bert"), d_model=256, num_queries=900, encoder_layers=6, decoder_layers=6,
            max_text_len=256, two_stage=True),
            "IDEA-Research/grounding-dino-tiny/config.json", 172_000_000,
            "IDEA-Research/grounding-dino-tiny model page: 172M params (its safetensors metadata)",
            config_cls="transformers:GroundingDinoConfig"),
    },
    "grounding_dino_base": {
        "model": Component("transformers:GroundingDinoForObjectDetection", dict(
            backbone_config=dict(model_type="swin", embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                                 window_size=12, image_size=384, out_indices=[2, 3, 4]),
            text_config=dict(model_type="bert"), d_model=256, num_queries=900, encoder_layers=6, decoder_layers=6,
            max_text_len=256, two_stage=True),
            "IDEA-Research/grounding-dino-base/config.json", 233_000_000,
            "IDEA-Research/grounding-dino-base model page: 233M params (its safetensors metadata)",
            config_cls="transformers:GroundingDinoConfig"),
    },
    "sam_vit_h": {
        "model": Component("segment_anything:sam_model_registry", {"registry": "vit_h"},
                           "facebookresearch/segment-anything segment_anything/build_sam.py: build_sam_vit_h",
                           636_000_000, "SAM paper (Kirillov et al. 2023), App. A: ViT-H image encoder 632M, prompt "
                                        "encoder and mask decoder about 4M"),
    },
}


def families() -> list[str]:
    return list(ARCHITECTURES)


def instantiable(family: str) -> bool:
    """False for GLIDE: its package cannot be installed here, so it is counted from its architecture."""
    return family != "glide"


def _import(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def build(family: str, name: str) -> torch.nn.Module:
    """Component ``name`` of ``family`` with its real class, on whatever device is current (``meta`` to count)."""
    comp = ARCHITECTURES[family][name]
    if not instantiable(family):
        raise ValueError(f"{family}: the glide-text2im package is not installed (not on PyPI); counted, not built")
    if comp.cls == "segment_anything:sam_model_registry":
        return _import(comp.cls)[comp.config["registry"]](checkpoint=None)
    cls = _import(comp.cls)
    if not comp.config_cls:
        return cls(**comp.config)  # diffusers models take their config as keyword arguments
    config = _import(comp.config_cls)(**comp.config)
    if comp.class_name == "ChatGLMModel":
        return cls(config, empty_init=False)  # empty_init skips allocation in a way meta tensors do not need
    return cls(config)


@functools.lru_cache(maxsize=None)
def count(family: str, name: str) -> int:
    """Parameters of one component, counted on the ``meta`` device (nothing is allocated)."""
    if not instantiable(family):
        return glide_count.count(ARCHITECTURES[family][name].config)
    with torch.device("meta"):
        model = build(family, name)
    return weights(model)


def weights(model: torch.nn.Module) -> int:
    """Parameters plus persistent buffers: what a checkpoint stores (SD3's positional table is a buffer in
    diffusers and a weight in the released file). Tied weights are one tensor, counted once."""
    tensors = {id(p): p.numel() for p in model.parameters()}
    for module in model.modules():
        for name, buf in module.named_buffers(recurse=False):
            if name not in module._non_persistent_buffers_set:
                tensors[id(buf)] = buf.numel()
    return sum(tensors.values())


def component_params(family: str) -> dict[str, int]:
    """{component: parameters} for ``family`` (a key of :data:`ARCHITECTURES`)."""
    if family not in ARCHITECTURES:
        raise ValueError(f"unknown architecture family '{family}' (known: {', '.join(ARCHITECTURES)})")
    return {name: count(family, name) for name in ARCHITECTURES[family]}


def param_bytes(params: int, dtype: str | torch.dtype = "bfloat16") -> int:
    """Bytes that ``params`` parameters take in ``dtype`` (weights only: no activations, no optimiser)."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return params * torch.empty((), dtype=dtype).element_size()


def component_bytes(family: str, dtype: str | torch.dtype = "bfloat16") -> dict[str, int]:
    """{component: weight bytes in ``dtype``} for ``family``."""
    return {name: param_bytes(n, dtype) for name, n in component_params(family).items()}


def markdown_table() -> str:
    """Every component: class, counted and published parameters, and the sources (docs/scale.md's table)."""
    lines = ["| family | component | class | counted | published | gap | config from | published by |",
             "|---|---|---|---|---|---|---|---|"]
    for family, comps in ARCHITECTURES.items():
        for name, comp in comps.items():
            n = count(family, name)
            cls = comp.class_name + ("" if instantiable(family) else " (not instantiated: counted by glide_count)")
            published = f"{comp.published:,}" if comp.published else "-"
            gap = f"{(n - comp.published) / comp.published:+.2%}" if comp.published else "-"
            lines.append(f"| {family} | {name} | {cls} | {n:,} | {published} | {gap} | {comp.source} "
                         f"| {comp.published_source} |")
    return "\n".join(lines) + "\n"
