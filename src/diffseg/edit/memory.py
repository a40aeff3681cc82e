"""``edit.memory: auto``: the batch size, offload and VAE tiling that fit the device, from an estimate.

The estimate is a pure function of published parameter counts (:mod:`diffseg.edit.param_counts`), the
dtype, the resolution, the batch size and guidance:

- **Weights**: parameters x dtype bytes. Without offload every component is resident; with model offload
  (diffusers ``enable_model_cpu_offload``) one component at a time; with sequential offload
  (``enable_sequential_cpu_offload``) one layer at a time, bounded by :data:`SEQUENTIAL_RESIDENT` (or the
  component's size, if smaller). With offload the peak is the worst stage (denoising, decoding, encoding
  the prompt), each with its own component resident.
- **Denoiser activations**: ``cell_width`` values per latent cell and batch element, where a latent cell
  is one ``latent_factor`` x ``latent_factor`` pixel block and guidance doubles the batch. Inference keeps no
  activations across layers, so the peak is one block's working set at the widest top-level width: about
  :data:`~diffseg.edit.param_counts.LIVE` (16) feature maps of that width (input, residual, norms, q/k/v and
  output, a GEGLU or MLP hidden of 4-8 widths). Attention runs through PyTorch's SDPA (flash or
  memory-efficient kernels), so no tokens x tokens matrix is held.
- **VAE decode**: ``decode_width`` values per output pixel, at full resolution, for every image of the
  batch: the decoder's last upsampling holds about four 256-channel maps at full size (1,024 values per
  pixel). VAE tiling (with slicing) decodes one image at a time.
- Text encoders and the Kandinsky prior run on a few hundred tokens: their activations are left out.

The constants (LIVE, the widths, the decoder's 1,024) come from the architectures' layer widths, not
from measurements: no GPU was at hand. :func:`estimate_for` is the entry point for a GPU benchmark that
compares the estimate with ``torch.cuda.max_memory_allocated``. The plan keeps ``margin`` of the free
memory unused, for what the model leaves out (allocator fragmentation, cuBLAS/cuDNN workspaces, text
encoder activations).
"""
from __future__ import annotations

from dataclasses import dataclass

from diffseg.edit.param_counts import Shape, Spec

GiB = 1 << 30
OFFLOADS = ("none", "model", "sequential")  # fastest first
# Sequential offload keeps one module on the GPU at a time; the largest single module of these models is an
# embedding table (ChatGLM3's 65,024 x 4,096 is 0.5 GiB in bf16; T5-XXL's 32,128 x 4,096 is 0.25 GiB).
SEQUENTIAL_RESIDENT = 1 * GiB


@dataclass(frozen=True)
class Setting:
    """How a generator runs: items per pipeline call, offload (one of OFFLOADS), VAE tiling and slicing."""

    batch_size: int
    offload: str = "none"
    vae_tiling: bool = False

    def describe(self) -> str:
        return f"batch {self.batch_size}, offload {self.offload}, tiling {'on' if self.vae_tiling else 'off'}"


@dataclass(frozen=True)
class MemoryPlan:
    setting: Setting
    estimate: int  # peak bytes the setting is estimated to need
    budget: int  # free bytes less the margin
    fits: bool  # False: not even the cheapest setting fits the estimate; it runs anyway, the OOM fallback decides


def estimate(counts: dict[str, int], dtype_bytes: int, resolution: int, setting: Setting, guidance: bool,
             shape: Shape) -> int:
    """Estimated peak GPU bytes of one pipeline call at ``setting`` (see the module docstring)."""
    weights = {name: n * dtype_bytes for name, n in counts.items()}
    images = 1 if shape.per_item else setting.batch_size
    cells = (resolution // shape.latent_factor) ** 2
    denoise = shape.cell_width * dtype_bytes * cells * images * (2 if guidance and shape.cfg else 1)
    decoded = 1 if setting.vae_tiling and shape.vae_tiles else images
    decode = shape.decode_width * dtype_bytes * resolution ** 2 * decoded
    if setting.offload == "none":
        return sum(weights.values()) + max(denoise, decode)
    # With offload, the peak is the worst stage: its component's weights (or, sequentially, one of its layers)
    # plus its activations; the text encoders' stages are weights only.
    resident = (lambda name: weights.get(name, 0)) if setting.offload == "model" else (
        lambda name: min(SEQUENTIAL_RESIDENT, weights.get(name, 0)))
    return max([resident("denoiser") + denoise, resident("vae") + decode, *map(resident, weights)])


def candidates(batch_size: int, offloads: tuple[str, ...] = OFFLOADS):
    """Settings from the fastest to the cheapest: per offload, the largest batch first, untiled before tiled."""
    for offload in offloads:
        for size in range(batch_size, 0, -1):
            for tiling in (False, True):
                yield Setting(size, offload, tiling)


def plan(counts: dict[str, int], dtype_bytes: int, resolution: int, batch_size: int, guidance: bool,
         free_bytes: int, shape: Shape = Shape(16 * 320), margin: float = 0.1,
         offloads: tuple[str, ...] = OFFLOADS) -> MemoryPlan:
    """The fastest setting (at most ``batch_size`` items) whose estimate fits ``free_bytes`` less ``margin``."""
    budget = int(free_bytes * (1 - margin))
    last = None
    for setting in candidates(batch_size, offloads):
        need = estimate(counts, dtype_bytes, resolution, setting, guidance, shape)
        if need <= budget:
            return MemoryPlan(setting, need, budget, True)
        last = MemoryPlan(setting, need, budget, False)
    return last


def estimate_for(spec: Spec, resolution: int, guidance: float, setting: Setting, dtype_bytes: int = 2) -> int:
    """The estimate for one family's checkpoint at given settings: what a GPU benchmark compares its peak with."""
    return estimate(spec.counts, dtype_bytes, resolution, setting, guidance > 1, spec.shape)


def cheaper(setting: Setting, offloads: tuple[str, ...] = OFFLOADS) -> Setting | None:
    """The next setting after an out-of-memory error: half the batch, then model offload, then sequential
    offload with tiling; None when nothing cheaper is left."""
    if setting.batch_size > 1:
        return Setting(setting.batch_size // 2, setting.offload, setting.vae_tiling)
    return lighter(setting, offloads)


def lighter(setting: Setting, offloads: tuple[str, ...] = OFFLOADS) -> Setting | None:
    """The next offload (weights that do not fit at load): model, then sequential with tiling; None after."""
    later = [o for o in OFFLOADS[OFFLOADS.index(setting.offload) + 1:] if o in offloads]
    if not later:
        return None
    offload = later[0]
    return Setting(setting.batch_size, offload, setting.vae_tiling or offload == "sequential")


def is_oom(err: BaseException) -> bool:
    """CUDA's out-of-memory error, or a RuntimeError that says out of memory (MPS, cuDNN, CPU allocators)."""
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())
