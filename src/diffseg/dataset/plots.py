"""The dataset's statistics as DVC plots: four small TSV files that ``dvc.yaml``'s top-level ``plots`` declare.

* ``edit_area.tsv``: accepted edits per mask-area bin (``AREA_BIN`` wide, up to the largest edit);
* ``edits_per_generator.tsv``: accepted edits per generator and action, zero counts included;
* ``turns_per_image.tsv``: images per number of accepted edits, 0 up to the most any image has;
* ``rejections.tsv``: edits that did not happen, per stage and reason (``propose``: no feasible plan;
  ``filter``: rejected or failed), numbers in a reason replaced by ``#`` so that one rule is one bar.

Every row is a function of ``manifest.parquet`` and ``metadata.parquet`` of the dataset, so the plots can be
checked against them (and ``dvc plots diff`` compares datasets across revisions).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from diffseg import records

AREA_BIN = 0.05  # histogram bin width, a fraction of the image
ACTIONS = ("add", "remove", "change")
# The planner's note on a turn beyond the image's drawn number of edits: a plan, not a rejection.
NOT_PLANNED = re.compile(r"image gets \d+ edit\(s\)")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
FILES = ("edit_area.tsv", "edits_per_generator.tsv", "turns_per_image.tsv", "rejections.tsv")


def tables(images: pd.DataFrame, metadata: pd.DataFrame, classes: list[str]) -> dict[str, list[dict]]:
    """The rows of each plot file, keyed by file name."""
    accepted = metadata[metadata["decision"] == "accepted"]
    # Bins [lo, hi): the bin of an area a is floor(a / AREA_BIN) (the epsilon keeps 0.15 / 0.05 from landing in
    # bin 2), with a full-image edit (a = 1) in the last bin.
    top = round(1 / AREA_BIN) - 1
    bins = np.minimum(np.floor(accepted["mask_area"].to_numpy() / AREA_BIN + 1e-9), top).astype(int)
    n_bins = int(bins.max()) + 1 if len(bins) else 1
    areas = [{"area": f"{_pct(i * AREA_BIN)}-{_pct((i + 1) * AREA_BIN)}%", "edits": int((bins == i).sum())}
             for i in range(n_bins)]
    per_generator = [{"generator": g, "action": a,
                      "edits": int(((accepted["generator"] == g) & (accepted["action"] == a)).sum())}
                     for g in classes[1:] for a in ACTIONS]
    counts = images["n_edits"].value_counts()
    turns = [{"edits": k, "images": int(counts.get(k, 0))} for k in range(int(images["n_edits"].max()) + 1)]
    return {"edit_area.tsv": areas, "edits_per_generator.tsv": per_generator, "turns_per_image.tsv": turns,
            "rejections.tsv": rejections(metadata)}


def rejections(metadata: pd.DataFrame) -> list[dict]:
    """Count per ``stage: reason``, most frequent first; one ``none`` row of 0 when nothing was rejected."""
    no_plan = (metadata["decision"] == "none") & ~metadata["reason"].str.fullmatch(NOT_PLANNED.pattern)
    rows = pd.concat([("propose: " + metadata.loc[no_plan, "reason"]),
                      ("filter: " + metadata.loc[metadata["decision"] == "rejected", "reason"])])
    reasons = rows.str.split("(", n=1).str[0].str.strip().map(lambda r: NUMBER.sub("#", r))
    counts = sorted(reasons.value_counts().items(), key=lambda item: (-item[1], item[0]))
    return [{"reason": r, "edits": int(n)} for r, n in counts] or [{"reason": "none", "edits": 0}]


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 6):g}"


def write(images: pd.DataFrame, metadata: pd.DataFrame, classes: list[str], folder: Path) -> None:
    for name, rows in tables(images, metadata, classes).items():
        header = list(rows[0])
        lines = ["\t".join(header)] + ["\t".join(str(row[k]) for k in header) for row in rows]
        records.write_bytes(Path(folder) / name, ("\n".join(lines) + "\n").encode())
