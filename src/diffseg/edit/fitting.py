"""Running a generator under ``edit.memory``: ``manual`` loads it as configured; ``auto`` plans its setting
from the free device memory (:mod:`diffseg.edit.memory`) and falls back to a cheaper one on out-of-memory.

The fallback, at load: model offload, then sequential offload with tiling. At a batch: half the batch,
then model offload, then sequential offload with tiling, reloading the generator where the offload
changes; the batch's remaining items run again at the new setting, and later batches keep it. When even
the cheapest setting runs out of memory, the items left are failed items with the reason, as other
generator errors are; the stage goes on. Every item records the setting its image came from and the
fallbacks before it (the edit manifest's MEMORY_COLUMNS).

Keyed per-item seeds make an item's noise independent of its batch neighbours; whether the arithmetic
is too depends on the kernels (docs/generators.md, Memory policy).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from diffseg.edit import memory, param_counts
from diffseg.edit.base import Family
from diffseg.edit.jobs import Inputs, Outcome
from diffseg.params import Edit

MEMORY_COLUMNS = ["batch_size", "offload", "vae_tiling", "memory_fallbacks"]


def free_bytes(device: str) -> int | None:
    """Free memory of the current CUDA device; None elsewhere (no offload there, the configured batch runs)."""
    if device != "cuda":
        return None
    import torch

    return int(torch.cuda.mem_get_info()[0])


def initial(adapter: Family, edit: Edit) -> memory.Setting:
    """The planned setting of ``adapter`` on the memory free now (the previous generator is unloaded)."""
    free = free_bytes(adapter.device)
    if free is None:
        return memory.Setting(edit.batch_size, "none", edit.vae_tiling)
    spec = param_counts.spec(adapter.gen)
    chosen = memory.plan(spec.counts, adapter.dtype.itemsize, adapter.gen.resolution, edit.batch_size,
                         adapter.gen.guidance > 1, free, spec.shape, edit.memory_margin, adapter.offloads).setting
    return dataclasses.replace(chosen, vae_tiling=chosen.vae_tiling or edit.vae_tiling)


def load(adapter: Family, edit: Edit) -> None:
    """Load ``adapter`` as ``edit.memory`` says; with ``auto`` an out-of-memory load is never raised."""
    if edit.memory == "manual":
        adapter.load()
        return
    adapter.fallbacks = []
    _load_at(adapter, initial(adapter, edit))


def _load_at(adapter: Family, setting: memory.Setting | None) -> None:
    """Load at ``setting``, or the lightest offload that loads; ``adapter.load_error`` says when none does."""
    while setting is not None:
        adapter.configure(setting)
        try:
            adapter.load()
            return
        except Exception as err:  # noqa: BLE001 - only out of memory is caught; the rest propagates
            adapter.unload()
            if not memory.is_oom(err):
                raise
            adapter.fallbacks.append(f"{setting.describe()}: out of memory at load")
            setting = memory.lighter(setting, adapter.offloads)
    adapter.load_error = "out of memory at load even with sequential offload"


def attempt(adapter: Family, inputs: Inputs, call: Callable[[Family, Inputs], list]) -> Outcome:
    """``call`` on ``inputs`` in chunks of the adapter's batch size, stepping down on out-of-memory errors."""
    n = len(inputs.seeds)
    images, reasons, records = [], [], []
    while len(images) < n:
        setting = adapter.memory
        if adapter.load_error:
            return _rest_failed(adapter, images, reasons, records, n, adapter.load_error)
        chunk = _chunk(inputs, len(images), setting.batch_size)
        try:
            out = call(adapter, chunk)
        except Exception as err:  # noqa: BLE001 - one bad batch must not stop the stage
            if not memory.is_oom(err):
                return _rest_failed(adapter, images, reasons, records, n,
                                    f"generator error: {type(err).__name__}: {err}"[:500])
            adapter.fallbacks.append(f"{setting.describe()}: out of memory")
            _step_down(adapter, setting)
            continue
        record = _record(adapter, setting)
        images += out
        reasons += [""] * len(out)
        records += [record] * len(out)
    return Outcome(images, reasons=reasons, memory=records)


def _step_down(adapter: Family, setting: memory.Setting) -> None:
    nxt = memory.cheaper(setting, adapter.offloads)
    if nxt is None:
        adapter.load_error = f"out of memory even at the cheapest setting ({setting.describe()})"
    elif (nxt.offload, nxt.vae_tiling) != (setting.offload, setting.vae_tiling):
        adapter.unload()  # the pipeline is placed anew: another offload and tiling
        _load_at(adapter, nxt)
    else:
        adapter.configure(nxt)


def _chunk(inputs: Inputs, start: int, size: int) -> Inputs:
    part = slice(start, start + size)
    return Inputs(inputs.befores[part], inputs.masks[part], inputs.prompts[part], inputs.negative_prompts[part],
                  inputs.seeds[part], inputs.native)


def _record(adapter: Family, setting: memory.Setting) -> dict:
    return {"batch_size": setting.batch_size, "offload": setting.offload, "vae_tiling": setting.vae_tiling,
            "memory_fallbacks": "; ".join(adapter.fallbacks)}


def _rest_failed(adapter: Family, images: list, reasons: list, records: list, n: int, reason: str) -> Outcome:
    """The items done so far, and the rest failed with ``reason``."""
    left = n - len(images)
    record = _record(adapter, adapter.memory)
    return Outcome(images + [None] * left, reasons=reasons + [reason] * left, memory=records + [record] * left)
