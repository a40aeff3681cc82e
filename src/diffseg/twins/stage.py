"""``twins``: every tiny, randomly initialised checkpoint the offline profile loads, in ``models/twins``.

Offline there is no hub, so each real model's classes are instantiated from small configs, saved, and
later loaded by the very ``from_pretrained`` line a GPU user runs on the real checkpoint:

* the generator pipelines (:mod:`.generators`), one folder per family (two for Kandinsky 2.2);
* with ``twins.loras``, a tiny random LoRA for a family's twin (:mod:`.lora`), in ``<family>_lora``;
* the CLIP image encoder the ``univfd`` baseline probes (:mod:`.clip`);
* the ``vlm`` planner's and judge's Qwen2.5-VL, Grounding DINO and SAM (:mod:`.vlm`).

Production code never imports this package: the stages only load what it wrote.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from diffseg import records
from diffseg.twins import generators, lora
from diffseg.twins.clip import build_clip_twin
from diffseg.twins.vlm import build_vlm_twins


def run(seed: int, families: list[str], out_dir: Path, clip: bool = False, vlm: bool = False,
        loras: Sequence[str] = ()) -> pd.DataFrame:
    """Save the twin of every family (and, with ``clip``, the CLIP image encoder UnivFD probes; with ``vlm``, the
    Qwen2.5-VL, Grounding DINO and SAM of the vlm planner and judge; a LoRA twin for each family in ``loras``)
    in ``out_dir``."""
    unknown = [f for f in families if f not in generators.BUILDERS]
    if unknown:
        raise ValueError(f"twins.families: no twin builder for {unknown} (known: {', '.join(generators.BUILDERS)})")
    lora_twins = {family: lora.build(family, seed) for family in loras}  # a refused family stops before any write
    out_dir = records.fresh_dir(out_dir)
    rows = []
    for family in families:
        for folder, pipe in generators.build(family, seed).items():
            pipe.save_pretrained(out_dir / folder)
            n_params = sum(p.numel() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                           for p in c.parameters())
            rows.append({"family": family, "pipeline": type(pipe).__name__, "folder": folder, "parameters": n_params,
                         "status": records.OK, "reason": ""})
            print(f"twins: {folder}: {type(pipe).__name__}, {n_params / 1e6:.2f} M parameters")
    for family, twin in lora_twins.items():
        twin.save(out_dir / lora.folder(family))
        rows.append({"family": family, "pipeline": "LoRA", "folder": lora.folder(family),
                     "parameters": twin.parameters, "status": records.OK, "reason": ""})
        print(f"twins: {lora.folder(family)}: LoRA of the {family} twin's {twin.denoiser}, "
              f"{twin.parameters} parameters")
    if clip:
        build_clip_twin(out_dir / "clip", seed)
        rows.append({"family": "clip", "pipeline": "CLIPVisionModelWithProjection", "folder": "clip",
                     "parameters": 0, "status": records.OK, "reason": ""})
        print("twins: clip: CLIPVisionModelWithProjection (UnivFD's image encoder)")
    if vlm:
        rows.extend(build_vlm_twins(out_dir, seed))
    manifest = pd.DataFrame(rows)
    records.write_table(out_dir / records.MANIFEST, manifest)
    return manifest
