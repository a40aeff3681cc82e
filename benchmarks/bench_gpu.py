"""GPU throughput and peak memory of every generator family at full size, with random weights.

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_gpu.py          # CUDA, full size, about 10 minutes
    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_gpu.py --tiny --steps 2 --no-write   # CPU check

Throughput and memory do not depend on trained weights, so each family's real diffusers pipeline is built
from the full-size configurations of :mod:`diffseg.scale.architectures`, its weights initialised randomly
on the GPU and cast to bf16; tokenizers and schedulers are the offline twins' (same classes; prompts are
padded to the real models' lengths, so the text encoders see the real sequence lengths). Per family, at
its native resolution and 30 steps with SDPA attention: images per second and peak
``torch.cuda.max_memory_allocated`` at batch 1, 2 and 4, eager and with the denoiser compiled by
``torch.compile``; and the edit stage's adapter (``Family.run``, built around the in-memory pipeline)
against the bare pipeline call at batch 1. The bare call is the one ``benchmarks/bench_adapter.py``
compares with (the text-to-image call for the blended-latent families).

``--tiny`` runs the same code on the CPU with the twins' sizes (the twins stage's builders), so the
script is tested without a GPU; its figures say nothing about a GPU and are never written to RESULTS.md.
A measurement that would start after ``--budget-s`` seconds is recorded as skipped, so one run stays
within its time limit; compiling costs about a minute per family and shape, so by default only the
SDXL anchor is compiled (``--compile-families all`` for every family, past ten minutes).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_adapter import bare_call
from bench_common import RESULTS, write_section
from diffseg.edit import families
from diffseg.params import Generator
from diffseg.scale import architectures as arch
from diffseg.twins import generators as twin_builders

SECTION = "## Full-size generators on a GPU (`benchmarks/bench_gpu.py`)"
# Native resolution and guidance per family: configs/paper.yaml. SDXL first: it is the anchor.
SETTINGS = {"sdxl": (1024, 7.5), "sd2": (512, 7.5), "kolors_blend": (1024, 5.0), "hunyuan_blend": (1024, 5.0),
            "sd3": (1024, 7.0), "kandinsky22": (768, 4.0), "flux_fill": (1024, 30.0)}
PRIOR_STEPS = 25  # Kandinsky's prior, as configs/paper.yaml
CLIP_TOKENS = 77  # the real CLIP text towers' positions (the twins' tokenizers allow more)
# SDXL 1.0 at 1024 px, 30 steps, on an H100 (stabilityai/stable-diffusion-xl-1.0-tensorrt model card).
ANCHOR = {"diffusers": 0.40, "tensorrt": 0.68}
TINY_SIZE = 64


def build(family: str, tiny: bool, device: str, dtype: torch.dtype) -> dict:
    """{"pipe": the family's pipeline, "prior": Kandinsky's prior pipeline or None} on ``device``.

    Tiny: the twins stage's pipelines. Full size: the same pipelines with every model replaced by its
    full-size architecture, built directly on ``device`` (real initialisers, correct buffers) then cast.
    """
    made = twin_builders.build(family, seed=0)
    pipes = {"pipe": made[family], "prior": made.get(f"{family}_prior")}
    if not tiny:
        for name, comp in arch.ARCHITECTURES[family].items():
            with torch.device(device):
                model = arch.build(family, name)
            pipes[comp.pipe or "pipe"].register_modules(**{comp.attr: model.to(dtype).eval()})
            if device == "cuda":
                torch.cuda.empty_cache()
        for pipe in filter(None, pipes.values()):
            for name in ("tokenizer", "tokenizer_2"):
                tok = getattr(pipe, name, None)
                if type(tok).__name__ == "CLIPTokenizer":
                    tok.model_max_length = CLIP_TOKENS
    for pipe in filter(None, pipes.values()):
        pipe.to(device)  # the full-size models are already there, in `dtype`
        pipe.set_progress_bar_config(disable=True)
    return pipes


def adapter_for(family: str, pipes: dict, tiny: bool, steps: int, device: str) -> families.Family:
    """The edit stage's adapter around the in-memory pipeline: no folder, no from_pretrained."""
    resolution, guidance = (TINY_SIZE, 4.0) if tiny else SETTINGS[family]
    options = {}
    if family == "kandinsky22":
        # UnCLIPScheduler needs two steps at least.
        options["prior_num_inference_steps"] = max(2, steps) if tiny else PRIOR_STEPS
    if tiny and family in ("flux_fill", "sd3"):
        options["max_sequence_length"] = twin_builders.MAX_TOKENS  # the twin T5 tokenizer's length
    gen = Generator(name=family, family=family, model=f"in-memory-{family}", steps=steps, guidance=guidance,
                    resolution=resolution, dtype="bfloat16" if device == "cuda" else "float32", options=options,
                    prior="in-memory-prior" if family == "kandinsky22" else None)
    adapter = families.create(gen, device=device)
    adapter.check_pipeline(pipes["pipe"])  # the family's own refusal of a checkpoint that cannot inpaint
    adapter.pipe = pipes["pipe"]
    if pipes["prior"] is not None:
        adapter.prior = pipes["prior"]
    return adapter


def batch(size: int, side: int) -> families.Batch:
    rng = np.random.default_rng(0)  # content does not change the cost; a fixed seed keeps runs comparable
    images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(size)]
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4:3 * side // 4, side // 4:3 * side // 4] = 255
    return families.Batch(images, [Image.fromarray(mask)] * size, ["a red cup on a wooden table"] * size,
                          ["blurry, low quality"] * size, list(range(size)))


def timed(call, device: str) -> tuple[float, float | None]:
    """Seconds of one call and, on CUDA, its peak allocated memory in GiB."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.inference_mode():
        call()
    if device == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**30
    return time.perf_counter() - started, None


def run(args, device: str) -> dict:
    started, dtype = time.perf_counter(), torch.bfloat16 if device == "cuda" else torch.float32
    rows, overhead = [], []

    def over_budget() -> bool:
        return time.perf_counter() - started > args.budget_s

    for family in args.families:
        if over_budget():
            rows += [dict(family=family, batch=b, compiled=c, skipped="time budget") for c in (False, True)
                     for b in args.batches]
            continue
        pipes = build(family, args.tiny, device, dtype)
        adapter = adapter_for(family, pipes, args.tiny, args.steps, device)
        side = adapter.gen.resolution
        for compiled in (False, True):
            reason = compile_skip(family, args, device) if compiled else ""
            if compiled and not reason:
                _denoiser(pipes["pipe"]).compile()  # in place: the pipeline keeps calling the same module
            for size in args.batches:
                row = dict(family=family, batch=size, compiled=compiled, resolution=side)
                if reason or over_budget():
                    rows.append({**row, "skipped": reason or "time budget"})
                    print(f"{family:14s} batch {size} compile {compiled}: skipped ({rows[-1]['skipped']})", flush=True)
                    continue
                b = batch(size, side)
                call = bare_call(adapter, b)
                if device == "cuda":
                    timed(call, device)  # warm-up: CUDA kernels, cuDNN autotuning, compilation
                seconds, peak = timed(call, device)
                rows.append({**row, "seconds": seconds, "images_per_s": size / seconds, "peak_gib": peak})
                print(f"{family:14s} batch {size} compile {compiled}: {size / seconds:.3f} images/s "
                      f"({seconds:.2f} s)" + (f", peak {peak:.1f} GiB" if peak else ""), flush=True)
                if size == 1 and not compiled and not over_budget():
                    adapter_s, _ = timed(lambda: adapter.run(b), device)
                    overhead.append(dict(family=family, adapter_s=adapter_s, bare_s=seconds,
                                         ratio=adapter_s / seconds))
                    print(f"{family:14s} adapter run {adapter_s:.2f} s, bare call {seconds:.2f} s, "
                          f"ratio {adapter_s / seconds:.3f}", flush=True)
        adapter.unload()
        del pipes, adapter
    return {"device": device_name(device), "tiny": args.tiny, "steps": args.steps, "rows": rows,
            "adapter": overhead, "glide": "not built: the glide-text2im package is not installable (not on PyPI)"}


def compile_skip(family: str, args, device: str) -> str:
    if device != "cuda":
        return "torch.compile skipped on CPU: inductor's C++ build takes minutes per shape here"
    if "all" not in args.compile_families and family not in args.compile_families:
        return "not in --compile-families"
    return ""


def _denoiser(pipe) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def device_name(device: str) -> str:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    return f"CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}"


def report(result: dict) -> str:
    lines = [SECTION, "", f"Device: {result['device']}. Random weights, full-size configurations "
             f"(`src/diffseg/scale/architectures.py`), bf16, SDPA, {result['steps']} steps, native resolution; "
             "one timed call after a warm-up. Regenerate with `PYTHONPATH=src HF_HUB_OFFLINE=1 python "
             "benchmarks/bench_gpu.py`.", "",
             "| family | resolution | batch | compiled | images/s | s per call | peak memory (GiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r.get("skipped"):
            lines.append(f"| {r['family']} | - | {r['batch']} | {'yes' if r['compiled'] else 'no'} | skipped: "
                         f"{r['skipped']} | - | - |")
        else:
            lines.append(f"| {r['family']} | {r['resolution']} | {r['batch']} | {'yes' if r['compiled'] else 'no'} "
                         f"| {r['images_per_s']:.3f} | {r['seconds']:.2f} | {r['peak_gib']:.1f} |")
    lines += ["", "Adapter overhead (`Family.run` against the bare call, batch 1, eager):", "",
              "| family | adapter (s) | bare (s) | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['adapter_s']:.2f} | {r['bare_s']:.2f} | {r['ratio']:.3f} |"
              for r in result["adapter"]]
    sdxl = [r for r in result["rows"] if r["family"] == "sdxl" and r["batch"] == 1 and "images_per_s" in r]
    if sdxl:
        got = ", ".join(f"{r['images_per_s']:.2f} images/s {'compiled' if r['compiled'] else 'eager'}" for r in sdxl)
        lines += ["", f"SDXL-class anchor: {got} here (the inpainting pipeline, 9-channel UNet) against "
                  f"{ANCHOR['diffusers']} images/s with plain diffusers and {ANCHOR['tensorrt']} with TensorRT for "
                  "SDXL 1.0 at 1024 px, 30 steps, on an H100 (stabilityai/stable-diffusion-xl-1.0-tensorrt model "
                  "card)."]
    lines += ["", f"GLIDE: {result['glide']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the twins' sizes on the CPU: tests the code, not a GPU")
    parser.add_argument("--families", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile-families", nargs="+", default=["sdxl"], help="families to compile, or 'all'")
    parser.add_argument("--budget-s", type=float, default=540.0, help="start no measurement after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the result rows here")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: the full-size run needs a GPU (--tiny runs the same code on the CPU)")
    torch.backends.cuda.matmul.allow_tf32 = True
    result = run(args, device)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not args.tiny and not args.no_write:
        write_section(RESULTS, report(result))
    return result


if __name__ == "__main__":
    main()
