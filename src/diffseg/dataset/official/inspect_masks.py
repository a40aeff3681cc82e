"""``diffseg official --inspect``: which values the release's masks hold, before any mapping is chosen.

Reads the first ``sample`` masks in the release's order (group by group, keys sorted; Parquet: shard,
then row), so two runs read the same masks, and prints per value its pixel count and the number of
masks holding it. When the values look like a binary 0/255 mask or class ids 0..8, it prints an
``official.mask_values`` line to start from: a suggestion drawn from the sample, not the release's
documented encoding (there is none). It writes nothing.
"""
from __future__ import annotations

from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np

from diffseg.dataset.official.layouts import READ_ERRORS, open_release
from diffseg.dataset.official.masks import BadItem, mask_array
from diffseg.errors import UserError
from diffseg.params import Params

DEFAULT_SAMPLE = 200
CLASS_IDS = range(9)  # authentic and the paper's eight generators


def run(params: Params, sample: int = DEFAULT_SAMPLE) -> None:
    if sample < 1:
        raise UserError(f"--sample must be 1 or more, got {sample}")
    root = Path(params.official.path)
    pixels: Counter[int] = Counter()
    masks: Counter[int] = Counter()
    unreadable: list[str] = []
    chosen = 0
    with open_release(root, params.official.splits) as release:
        # One at a time: a Parquet item holds its image's bytes too.
        for pair in islice((pair for pair in release.pairs() if pair.mask is not None), sample):
            chosen += 1
            try:
                values, counts = np.unique(mask_array(pair.mask(), pair.mask_origin), return_counts=True)
            except BadItem as err:
                unreadable.append(str(err))
                continue
            except READ_ERRORS as err:
                unreadable.append(f"{pair.mask_origin}: {type(err).__name__}: {err}")
                continue
            pixels.update(dict(zip(values.tolist(), counts.tolist())))
            masks.update(values.tolist())
        layout = release.layout
    read = chosen - len(unreadable)
    if not chosen:
        raise UserError(f"{root}: no mask found ({layout})")
    if not read:
        raise UserError(f"{root}: none of the first {chosen} masks is readable; first: {unreadable[0]}")
    print(f"official --inspect: {read} masks, the first in key order under {root} ({layout})")
    if unreadable:
        print(f"{len(unreadable)} unreadable, not counted; first: {unreadable[0]}")
    print(f"{'value':>7} {'pixels':>12} {'masks':>7}")
    for value in sorted(pixels):
        print(f"{value:>7} {pixels[value]:>12} {masks[value]:>7}")
    print(suggestion(set(pixels), read))


def suggestion(values: set[int], read: int) -> str:
    """What the values found look like, and a mapping to start from where they fit a known encoding."""
    caveat = f"Suggested from these {read} masks only, not a documented encoding"
    if values == {0}:
        return "Every mask read is all 0 (no edited pixel): no suggestion; read more with --sample"
    if values <= {0, 255}:
        return f"{caveat}: binary (0/255)\nofficial.mask_values: {{0: authentic, 255: edited}}"
    if values <= set(CLASS_IDS):
        ids = ", ".join(f"{k}: gen{k}" for k in CLASS_IDS[1:])
        return (f"{caveat}: class ids 0..8; which generator each id stands for is not documented, so rename "
                f"gen1..gen8 once known\nofficial.mask_values: {{0: authentic, {ids}}}")
    return ("The values fit neither a binary 0/255 mask nor class ids 0..8: no suggestion; map every value in "
            "official.mask_values by hand")
