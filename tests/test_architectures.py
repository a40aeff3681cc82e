"""Full-size architectures: each component built on the meta device with its real class, its parameters
counted and compared with the published figure (docs/scale.md, "Architectures and parameter counts")."""
from __future__ import annotations

import pytest
import torch

from diffseg.scale import architectures as arch
from diffseg.scale import glide_count

COMPONENTS = [(f, n) for f, comps in arch.ARCHITECTURES.items() for n in comps]

# Components with no published figure to compare with: their counts are pinned instead (a config edit shows).
# The GLIDE figures equal those of the package's own classes, built once from its published source.
PINNED = {("sd2", "text_encoder"): 340_387_840, ("hunyuan_blend", "text_encoder"): 352_035_840,
          ("glide", "base"): 385_037_638, ("glide", "upsampler"): 398_368_198}


def test_every_generator_family_and_model_is_described():
    assert set(arch.ARCHITECTURES) == {
        "sd2", "sdxl", "flux_fill", "sd3", "sd3_large", "kandinsky22", "kolors_blend", "hunyuan_blend", "glide",
        "qwen2_5_vl_7b", "grounding_dino_tiny", "grounding_dino_base", "sam_vit_h"}
    assert set(arch.component_params("kandinsky22")) == {"unet", "movq", "prior", "image_encoder", "text_encoder"}


@pytest.mark.parametrize("family,name", COMPONENTS, ids=[f"{f}.{n}" for f, n in COMPONENTS])
def test_count_matches_the_published_figure(family, name):
    comp = arch.ARCHITECTURES[family][name]
    counted = arch.count(family, name)
    if comp.published is None:
        assert counted == PINNED[family, name]
        return
    gap = (counted - comp.published) / comp.published
    if comp.gap:  # a documented disagreement with a round published figure: the gap itself is pinned
        assert gap == pytest.approx(comp.gap, abs=5e-4) and abs(gap) < 0.03, gap
    else:
        assert abs(gap) <= 0.02, f"{family}.{name}: counted {counted:,}, published {comp.published:,} ({gap:+.2%})"


def test_exact_counts_of_the_generators_denoisers():
    assert arch.component_params("sdxl")["unet"] == 2_567_478_084
    assert arch.component_params("flux_fill")["transformer"] == 11_902_391_360
    assert arch.component_params("sd3")["transformer"] == 2_469_663_936  # with its 384 x 384 positional table
    assert arch.component_params("kolors_blend")["text_encoder"] == 6_243_584_032


def test_meta_build_allocates_nothing_and_uses_the_real_class():
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = arch.build("flux_fill", "transformer")
    assert type(model) is FluxTransformer2DModel
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.config.in_channels == 384 and model.config.num_single_layers == 38


def test_glide_is_counted_not_built():
    assert not arch.instantiable("glide")
    with pytest.raises(ValueError, match="glide-text2im"):
        arch.build("glide", "base")
    assert glide_count.count(glide_count.BASE_INPAINT) == 385_037_638


def test_byte_sizes():
    assert arch.param_bytes(10, "bfloat16") == 20 and arch.param_bytes(10, torch.float32) == 40
    assert arch.component_bytes("flux_fill", "bfloat16")["transformer"] == 2 * 11_902_391_360


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown architecture family 'sd5'"):
        arch.component_params("sd5")


def test_table_lists_every_component():
    table = arch.markdown_table()
    print(table)
    rows = table.splitlines()[2:]
    assert len(rows) == len(COMPONENTS)
    assert "| sdxl | unet | UNet2DConditionModel | 2,567,478,084 | 2,600,000,000 | -1.25% |" in table


# The memory policy's published table (diffseg.edit.param_counts) against the counted architectures: one source
# of truth would be better, but the policy must not import torch-heavy model classes at stage time.
POLICY_FAMILIES = {"sd2-community/stable-diffusion-2-inpainting": "sd2",
                   "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "sdxl",
                   "black-forest-labs/FLUX.1-Fill-dev": "flux_fill", "stabilityai/stable-diffusion-3.5-medium": "sd3",
                   "stabilityai/stable-diffusion-3.5-large": "sd3_large", "Kwai-Kolors/Kolors-diffusers": "kolors_blend",
                   "Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers": "hunyuan_blend",
                   "kandinsky-community/kandinsky-2-2-decoder-inpaint": "kandinsky22", "base-inpaint": "glide"}
DENOISERS = ("unet", "transformer", "base")


def test_memory_policy_counts_agree_with_the_counted_architectures():
    from diffseg.edit import param_counts

    assert set(POLICY_FAMILIES) == set(param_counts.SPECS)
    for checkpoint, family in POLICY_FAMILIES.items():
        policy, counted = param_counts.SPECS[checkpoint].counts, arch.component_params(family)
        (denoiser,) = [counted[c] for c in DENOISERS if c in counted]
        assert abs(policy["denoiser"] / denoiser - 1) <= 0.03, (checkpoint, policy["denoiser"], denoiser)
        assert abs(sum(policy.values()) / sum(counted.values()) - 1) <= 0.03, checkpoint
