"""H100-hours per stage at paper scale, computed from the paper profile and named settings.

Nothing here was measured on a GPU (none was at hand): every second per item is a published figure or a rule
calibrated on one, named in :class:`Settings` with its source. The workload comes from the profile itself
(``turn_weights``, the retry rounds of ``turns``, the generators with their resolutions and steps) and a
rejection rate: an attempt is accepted with probability ``1 - p``; a rejected one is retried in the turn's
next round while rounds are left; a later turn is planned whatever happened to the earlier one (the budget
:func:`diffseg.propose.annotations.planned_turns` is drawn once per image).

    PYTHONPATH=src python -m diffseg.scale.hours [--params configs/paper.yaml]

prints the markdown tables of docs/scale.md. No stage imports this module.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from diffseg.params import Generator, Params, load
from diffseg.scale.architectures import component_params

TARGET_EDITED = 30_000  # edited images wanted: images with at least one accepted edit (the paper's 30k)
SDXL_TOKENS = (1024 // 8) ** 2  # latent cells of SDXL at 1024 px, the calibration anchor's size


@dataclass(frozen=True)
class Settings:
    """How the paper profile is run, and the per-item costs that follow; defaults: as configured, eager."""

    rejection: float = 0.5  # share of attempts not accepted (the paper: the judge discards about half)
    retry_rounds: int | None = None  # rounds after each turn; None: as configured in `turns`
    turn_weights: tuple[float, ...] | None = None  # None: propose.turn_weights as configured
    steps_factor: float = 1.0  # sampling steps relative to each generator's `steps` (GLIDE's upsampler too)
    # SDXL 1.0, 1024 px, 30 steps, one H100: 0.40 images/s with plain diffusers, 0.68 with TensorRT
    # (stabilityai/stable-diffusion-xl-1.0-tensorrt model card). Calibrates the UNet rule.
    sdxl_img_s: float = 0.40
    # What compiling / a TensorRT-class engine gains over eager diffusers, for every family: the SDXL anchor's
    # 0.68 / 0.40 = 1.7 when on (an assumption for the families the card does not measure).
    compile_speedup: float = 1.0
    peak_flops: float = 989e12  # H100 SXM dense bf16 peak (NVIDIA H100 datasheet)
    # Share of the peak a DiT's denoiser reaches, eager bf16 (an assumption; FLUX.1-dev's published forward,
    # 59.5 TFLOP in 0.49 s on an L40, is ~66% of that card's 181 TFLOP/s peak).
    dit_utilisation: float = 0.40
    # VAE encode and decode outside the DiT rule, compositing, PNG writes, batch loading around each call
    # (an assumption; bench_gpu.py measures the adapter against the bare pipeline).
    edit_overhead: float = 0.3
    # Qwen2.5-VL-7B, seconds per request on one H100: transformers' padded batches ~1.5 s per plan (1,680
    # tokens in, ~200 out) and ~1 s per verdict (2,600 in, 128 out); a served engine (vLLM) 3-5x faster:
    # ~0.3 and ~0.25 s (docs/scale.md, "Served VLM": vLLM's published 14-24x on text, less on prefill).
    plan_s: float = 1.5
    judge_s: float = 1.0
    vlm_served: bool = False  # the server loads the VLM once per GPU and run, not once per stage
    grounding_s: float = 0.2  # Grounding DINO base + SAM ViT-H per image and phrase (an estimate)
    # Model loading per model and GPU: a fixed part (building the pipeline) plus the bf16 weights read from a
    # local NVMe copy of the hub cache (assumptions; the earlier estimate was 30-90 s per generator).
    load_fixed_s: float = 10.0
    load_gb_s: float = 1.0
    # DVC: 2.3 ms per file to hash and cache (measured, benchmarks/bench_dvc_scale.py, small files), plus the
    # bytes at ~300 MB/s (md5 and the copy into the cache; an assumption) of ~0.5 MB per image (an estimate
    # for COCO-size PNGs) and three files per image copy (image, label, turn mask).
    dvc_file_s: float = 0.0023
    dvc_mb_s: float = 300.0
    image_mb: float = 0.5
    files_per_copy: int = 3
    # Detector training, images/s on one H100 in bf16 at 512 px, by arch (estimates: ResNet-50 and MiT-b2
    # decoders ~100-200, VGG-16's FCN-8s ~40-60, UperNet ConvNeXt-S in between).
    train_img_s: dict = field(default_factory=lambda: {"fcn8s": 50.0, "DeepLabV3Plus": 150.0, "Segformer": 150.0,
                                                       "transformers": 100.0})
    infer_factor: float = 3.0  # evaluation is a forward pass: ~3x the training throughput (an assumption)
    baseline_img_s: float = 1000.0  # CNNSpot (ResNet-50, 224 px) training and UnivFD's CLIP features (estimate)


SERVED = dict(plan_s=0.3, judge_s=0.25, vlm_served=True)
COMPILED = dict(compile_speedup=0.68 / 0.40)

# (key, name, settings): the combinations the tables compare, each adding to the one before unless it says.
SETTINGS: list[tuple[str, str, Settings]] = [
    ("A", "paper profile as configured (transformers VLM, eager, batch 4, two retry rounds)", Settings()),
    ("B", "A + served VLM (vLLM)", Settings(**SERVED)),
    ("C", "B + compiled / TensorRT-class generators (0.68 anchor)", Settings(**SERVED, **COMPILED)),
    ("D", "C + one retry round instead of two", Settings(**SERVED, **COMPILED, retry_rounds=1)),
    ("E", "C + no retry rounds", Settings(**SERVED, **COMPILED, retry_rounds=0)),
    ("F", "C + one planned edit per image (turn_weights [0, 1, 0, 0])",
     Settings(**SERVED, **COMPILED, turn_weights=(0.0, 1.0, 0.0, 0.0))),
    ("G", "C + 20 sampling steps instead of 30 (GLIDE 67 + 18)", Settings(**SERVED, **COMPILED, steps_factor=2 / 3)),
    ("H", "E + G: no retry rounds, 20 steps", Settings(**SERVED, **COMPILED, retry_rounds=0, steps_factor=2 / 3)),
    ("I", "F + G: one planned edit per image, 20 steps",
     Settings(**SERVED, **COMPILED, turn_weights=(0.0, 1.0, 0.0, 0.0), steps_factor=2 / 3)),
]


# --- the workload -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    turn_weights: tuple[float, ...]  # P(an image is planned k edits), k = 0, 1, ...
    rounds: int  # retry rounds after each turn
    rejection: float

    @property
    def accepted(self) -> float:
        """P(a planned turn ends with an accepted edit) = 1 - p^(r+1)."""
        return 1 - self.rejection ** (self.rounds + 1)

    @property
    def attempts_per_turn(self) -> float:
        """Expected attempts of one planned turn: 1 + p + ... + p^r = (1 - p^(r+1)) / (1 - p)."""
        return sum(self.rejection ** i for i in range(self.rounds + 1))

    @property
    def planned_per_image(self) -> float:
        return sum(k * w for k, w in enumerate(self.turn_weights))

    @property
    def edited_share(self) -> float:
        """P(an image keeps at least one edit) = sum_k w_k (1 - (1 - a)^k): turns are planned independently."""
        return sum(w * (1 - (1 - self.accepted) ** k) for k, w in enumerate(self.turn_weights))

    def sources(self, edited: int = TARGET_EDITED) -> float:
        """Source images needed for ``edited`` edited images, in expectation."""
        return edited / self.edited_share

    def attempts(self, edited: int = TARGET_EDITED) -> float:
        """Edit attempts in all: each one a plan, a grounding, a generator call and a verdict."""
        return self.sources(edited) * self.planned_per_image * self.attempts_per_turn


def configured_rounds(params: Params) -> int:
    """Retry rounds per turn in ``turns``; the turns of the paper profile all have the same number."""
    rounds = {params.max_attempts(t) - 1 for t in params.base_turns}
    if len(rounds) != 1:
        raise ValueError(f"turns: the turns have different numbers of retry rounds ({sorted(rounds)})")
    return rounds.pop()


def workload(params: Params, s: Settings) -> Workload:
    weights = s.turn_weights or tuple(params.propose.turn_weights)
    total = sum(weights)
    rounds = configured_rounds(params) if s.retry_rounds is None else s.retry_rounds
    return Workload(tuple(w / total for w in weights), rounds, s.rejection)


# --- seconds per generator call ---------------------------------------------------------------------------

# The denoiser of each family and its kind. UNets: FLOPs are not 2 x params x cells (convolutions at several
# resolutions), so their cost is params x latent cells, calibrated on the SDXL anchor; DiTs: 2 x params x tokens
# FLOPs per image and pass at `dit_utilisation` of the peak.
DENOISER = {"sd2": ("unet", "unet"), "sdxl": ("unet", "unet"), "kolors_blend": ("unet", "unet"),
            "kandinsky22": ("unet", "unet"), "glide": ("base", "unet"),
            "flux_fill": ("transformer", "dit"), "sd3": ("transformer", "dit"), "hunyuan_blend": ("transformer", "dit")}
# Text tokens in the joint attention of the MMDiTs (the pipelines' defaults): FLUX.1 512 T5 tokens; SD3 77 CLIP
# + 256 T5. HunyuanDiT cross-attends to its text, so only its image tokens count.
JOINT_TEXT = {"flux_fill": 512, "sd3": 77 + 256}
GUIDANCE_DISTILLED = {"flux_fill"}  # FLUX.1 Fill's guidance is an input embedding: one pass per step
GLIDE_BASE_SIDE, GLIDE_UPSAMPLE_STEPS = 64, 27  # GLIDE: 64 px base, 27-step upsampler to 256 px (its notebook)
PRIOR_TOKENS = 77 + 4  # Kandinsky 2.2's prior: 77 text tokens + 4 extra embeddings (its config)


def _passes(gen: Generator, family: str) -> int:
    """Denoiser passes per step and image: two under classifier-free guidance."""
    return 1 if family in GUIDANCE_DISTILLED or gen.guidance <= 1 else 2


def unet_s_per_unit(s: Settings) -> float:
    """Seconds per (parameter x latent cell x pass x step) of a UNet, from the SDXL anchor (30 steps, guidance)."""
    return 1 / s.sdxl_img_s / (component_params("sdxl")["unet"] * SDXL_TOKENS * 2 * 30)


def dit_s(params_n: int, tokens: int, passes: float, steps: float, s: Settings) -> float:
    return 2 * params_n * tokens * passes * steps / (s.peak_flops * s.dit_utilisation)


def denoise_s(gen: Generator, s: Settings) -> float:
    """Seconds of one image's denoising by ``gen`` on one H100, eager, before the overhead and the speed-up."""
    family = gen.family
    comp, kind = DENOISER[family]
    n = component_params(family)[comp]
    steps = gen.steps * s.steps_factor
    if family == "glide":  # pixel space: the base at 64 px with guidance, the upsampler at the output size without
        return unet_s_per_unit(s) * (n * GLIDE_BASE_SIDE ** 2 * _passes(gen, family) * steps
                                     + component_params(family)["upsampler"] * gen.resolution ** 2
                                     * GLIDE_UPSAMPLE_STEPS * s.steps_factor)
    if kind == "unet":
        seconds = unet_s_per_unit(s) * n * (gen.resolution // 8) ** 2 * _passes(gen, family) * steps
        if family == "kandinsky22":
            prior_steps = gen.options.get("prior_num_inference_steps", 25) * s.steps_factor
            prior_passes = 2 if gen.options.get("prior_guidance_scale", 4.0) > 1 else 1
            seconds += dit_s(component_params(family)["prior"], PRIOR_TOKENS, prior_passes, prior_steps, s)
        return seconds
    tokens = (gen.resolution // 16) ** 2 + JOINT_TEXT.get(family, 0)  # 8x VAE, 2 x 2 patches
    return dit_s(n, tokens, _passes(gen, family), steps, s)


def call_s(gen: Generator, s: Settings) -> float:
    """Seconds per generator call, all included."""
    return denoise_s(gen, s) * (1 + s.edit_overhead) / s.compile_speedup


# --- hours per stage --------------------------------------------------------------------------------------


def _load_s(models: list[str], s: Settings) -> float:
    """Seconds to load ``models`` (keys of the architectures) onto one GPU in bf16."""
    n = sum(sum(component_params(m).values()) for m in models)
    return len(models) * s.load_fixed_s + 2 * n / (s.load_gb_s * 1e9)


GROUNDING = {"IDEA-Research/grounding-dino-base": "grounding_dino_base",
             "IDEA-Research/grounding-dino-tiny": "grounding_dino_tiny"}
VLM = "qwen2_5_vl_7b"


def dataset_rows(params: Params, s: Settings) -> dict[str, tuple[float, bool]]:
    """{stage: (hours on one H100, whether it divides over GPUs)} for the dataset half."""
    w = workload(params, s)
    sources, attempts = w.sources(), w.attempts()
    gens = params.edit.generators
    synth = params.synthesize.get("synthetic")
    n_synth = round(synth.share * sources) if synth else 0
    synth_gens = [params.generator(g) for g in synth.generators] if synth else []
    rounds = len(params.base_turns) * (w.rounds + 1)
    grounding = [GROUNDING[params.propose.grounding.detector], f"sam_{params.propose.grounding.sam_type}"]
    per_round = grounding + [g.family for g in gens] + ([] if s.vlm_served else [VLM, VLM])
    load = rounds * _load_s(per_round, s) + _load_s([g.family for g in synth_gens], s)
    load += _load_s([VLM], s) if s.vlm_served else 0.0
    add = params.propose.action_weights.get("add", 0.0) / sum(params.propose.action_weights.values())
    copies = sources * (3 + rounds) + attempts  # source, synthetic, each round's state, the dataset; the edits
    dvc = copies * (s.files_per_copy * s.dvc_file_s + s.image_mb / s.dvc_mb_s)
    rows = {
        "synthesize (text-to-image)": (n_synth * sum(call_s(g, s) for g in synth_gens) / max(len(synth_gens), 1),
                                       True),
        "propose: VLM plans": (attempts * s.plan_s, True),
        "propose: Grounding DINO + SAM": (attempts * (1 - add) * s.grounding_s, True),
        "edit: generators": (attempts * sum(call_s(g, s) for g in gens) / len(gens), True),  # drawn uniformly
        "filter: VLM judge": (attempts * s.judge_s, True),
        "model loading (per GPU)": (load, False),
        "DVC hashing (CPU; GPUs wait)": (dvc, False),
    }
    return {k: (v / 3600, div) for k, (v, div) in rows.items()}


def benchmark_rows(params: Params, s: Settings) -> dict[str, tuple[float, bool]]:
    """{stage: (hours on one H100, divides over GPUs)}: training with detect.nproc = the GPUs, evaluation."""
    sources = workload(params, s).sources()
    splits = params.assemble.splits
    train, test = splits["train"] * sources, splits["test"] * sources
    dets = params.detect.detectors
    rate = {name: s.train_img_s[d.arch] for name, d in dets.items()}
    epochs = params.detect.epochs
    rob = params.robustness
    levels = 1 + len(rob.jpeg) + len(rob.resize) + len(rob.blur) + len(rob.noise)
    held = params.crossgen.held_out
    left = 1 - 1 / len(params.edit.generators)  # each crossgen run trains without one generator's images
    cnn = params.baselines.cnnspot
    rows = {
        "train (detectors)": (sum(epochs * train / r for r in rate.values()), True),
        "crossgen (retraining per held-out generator)":
            (len(held) * epochs * train * left / rate[params.crossgen.detector], True),
        "evaluate + robustness": (sum(test * levels / (r * s.infer_factor) for r in rate.values()), True),
        "baselines (CNNSpot, UnivFD)": ((cnn.epochs * train + sources) / s.baseline_img_s, True),
    }
    return {k: (v / 3600, div) for k, (v, div) in rows.items()}


def wall_hours(rows: dict[str, tuple[float, bool]], gpus: int) -> dict[str, float]:
    """Wall-clock hours per stage on ``gpus`` GPUs: the per-item stages divide, loading and DVC do not."""
    return {k: h / gpus if div else h for k, (h, div) in rows.items()}


# --- tables -----------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def workload_table(params: Params) -> str:
    loads = [(key, workload(params, s)) for key, _, s in SETTINGS]
    quantities = [
        ("accepted share per planned turn, 1 - p^(r+1)", lambda w: f"{w.accepted:.6g}"),
        ("attempts per planned turn, (1 - p^(r+1)) / (1 - p)", lambda w: f"{w.attempts_per_turn:.6g}"),
        ("planned edits per source image", lambda w: f"{w.planned_per_image:.3g}"),
        ("P(edited) = sum_k w_k (1 - (1 - a)^k)", lambda w: f"{w.edited_share:.6f}"),
        (f"source images for {TARGET_EDITED:,} edited", lambda w: f"{w.sources():,.1f}"),
        ("edit attempts (plans, generator calls, verdicts)", lambda w: f"{w.attempts():,.0f}"),
    ]
    return _table(["quantity"] + [k for k, _ in loads],
                  [[name] + [f(w) for _, w in loads] for name, f in quantities])


def generator_table(params: Params) -> str:
    eager, compiled = Settings(), Settings(**COMPILED)
    rows = []
    for g in params.edit.generators:
        comp, kind = DENOISER[g.family]
        rows.append([g.name, g.family, f"{component_params(g.family)[comp]:,}", kind, str(g.resolution),
                     str(g.steps), str(_passes(g, g.family)), f"{denoise_s(g, eager):.2f}", f"{call_s(g, eager):.2f}",
                     f"{call_s(g, compiled):.2f}"])
    mean = [sum(call_s(g, s) for g in params.edit.generators) / len(params.edit.generators) for s in (eager, compiled)]
    rows.append(["mean (drawn uniformly)", "", "", "", "", "", "", "", f"{mean[0]:.2f}", f"{mean[1]:.2f}"])
    return _table(["generator", "family", "denoiser params", "rule", "px", "steps", "passes", "denoise s",
                   "s/call eager", "s/call compiled"], rows)


def stage_hours(params: Params, s: Settings, gpus: int = 1) -> dict[str, float]:
    """{stage, or "dataset half" / "benchmark half" (their sums): wall hours on ``gpus`` H100s}. On one GPU these
    are H100-hours; on more, H100-hours are ``gpus`` x the wall hours (a GPU waiting for loading or DVC counts)."""
    out = {}
    for rows, total in ((dataset_rows(params, s), "dataset half"), (benchmark_rows(params, s), "benchmark half")):
        wall = wall_hours(rows, gpus)
        out.update(wall)
        out[total] = sum(wall.values())
    return out


def hours_table(params: Params, gpus: int) -> str:
    """Hours per stage and setting: on one GPU (= H100-hours), or wall hours on ``gpus`` with their H100-hours."""
    computed = [(key, stage_hours(params, s, gpus)) for key, _, s in SETTINGS]
    rows = [[st] + [f"{h[st]:.2f}" for _, h in computed] for st in computed[0][1]]
    if gpus != 1:
        rows.append([f"dataset half, H100-hours ({gpus} x wall)"]
                    + [f"{gpus * h['dataset half']:.1f}" for _, h in computed])
    return _table(["stage"] + [k for k, _ in computed], rows)


def verdict(params: Params, limit: float = 50.0, gpus: int = 8) -> str:
    lines = []
    for key, _, s in SETTINGS:
        one, many = stage_hours(params, s)["dataset half"], stage_hours(params, s, gpus)["dataset half"]
        lines.append(f"- {key}: {one:.1f} H100-hours on one GPU ({'reaches' if one <= limit else 'misses'} "
                     f"<= {limit:g}); {gpus * many:.1f} on {gpus} GPUs, {many:.1f} h wall "
                     f"({'reaches' if gpus * many <= limit else 'misses'})")
    return "\n".join(lines) + "\n"


def report(params: Params) -> str:
    legend = "\n".join(f"- **{k}**: {name}" for k, name, _ in SETTINGS)
    return (f"Settings:\n\n{legend}\n\n### Workload ({TARGET_EDITED:,} edited images, p = "
            f"{SETTINGS[0][2].rejection})\n\n{workload_table(params)}\n### Seconds per generator call (one H100)\n\n"
            f"{generator_table(params)}\n### Hours per stage on one H100 (= H100-hours)\n\n{hours_table(params, 1)}\n"
            f"### Wall hours per stage on 8 H100s\n\n{hours_table(params, 8)}\n### Against 50 H100-hours "
            f"(dataset half)\n\n{verdict(params)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="configs/paper.yaml")
    print(report(load(parser.parse_args(argv).params)), end="")


if __name__ == "__main__":
    main()
