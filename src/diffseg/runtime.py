"""Where and how models run: device and dtype choice, memory release, hub-or-folder checks, load hints, a
generator's native size and its loading arguments.

Shared by every stage that loads a model (generators, the base-image synthesis, the VLM planner and judge,
Grounded-SAM, the detectors and baselines), so that one ``auto`` means the same device everywhere. torch is imported
inside the functions: stages that never load a model (the annotations planner, the heuristic filter)
import this module without paying for torch.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import inspect
from pathlib import Path


def pick_device(requested: str = "auto") -> str:
    """``requested`` as given, or for ``auto`` the best available: CUDA, then Apple's MPS, then the CPU."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str):
    """``requested`` as a torch dtype, or for ``auto`` bf16 (fp16 without bf16) on CUDA, fp16 on MPS, fp32 on CPU."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device == "mps" else torch.float32


def autocast(device: str):
    """bf16 mixed precision on CUDA; full precision elsewhere (CPU autocast is slower than fp32 here)."""
    if device == "cuda":
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def release_memory() -> None:
    """Return a dropped model's memory to the system, not only to the allocators' free lists."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
    try:
        # glibc keeps freed small blocks in its arenas; without a trim a worker's RSS stays at its peak.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (macOS, musl): nothing to trim


def is_local(model: str) -> bool:
    """Hub ids are 'org/name'; anything with more parts, or starting with '.' or '/', is a folder."""
    return model.startswith((".", "/")) or model.count("/") != 1 or Path(model).exists()


def short_error(err: Exception) -> str:
    """The first line of an error's message (at most 300 characters), or its type when it has none."""
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


def load_hint(key: str, model: str, err: Exception) -> str:
    """A model that failed to load (params key ``key``), as one line that says what to do."""
    message = f"{key}: cannot load '{model}': {str(err).strip().splitlines()[0][:300] if str(err).strip() else err!r}"
    if not is_local(model):
        message += (f". Offline, a hub model must already be in the Hugging Face cache: run "
                    f"`huggingface-cli download {model}` on a connected machine")
    return message


def without_safety_checker(cls) -> dict:
    """Loading arguments that switch a pipeline's NSFW checker off: it blacks out whole images."""
    params = inspect.signature(cls.__init__).parameters
    off = {"safety_checker": None, "requires_safety_checker": False}
    return {key: value for key, value in off.items() if key in params}
