"""``assemble``: the final dataset from the last turn's state.

Output (``data/dataset``):

* ``images/<id>.png`` every image, edited or not, re-encoded by the one PNG encoder;
* ``labels/<id>.png`` uint8 class ids (0 authentic, k = k-th generator of ``classes.json``);
* ``turnmasks/<id>.png`` bit t-1 set where turn t edited;
* ``classes.json``, ``manifest.parquet`` (one row per image: split, source, edit counts),
  ``metadata.parquet`` (one row per image and turn, or per image, turn and attempt with retry rounds: the full
  provenance), ``stats.json``, ``README.md`` (the dataset card) and ``figures/samples.png``;
* ``cues.json`` with ``assemble.cues``: the resampling and JPEG-grid shortcut cues (:mod:`cues`).

and, for ``dvc plots``, the statistics of :mod:`plots` in ``metrics/dataset_plots`` (git-tracked, small).

With ``edit.output_resolution: generator`` an edited image keeps the size its last edit's generator
composited it at, and a never-edited image is resampled (image, label, turn mask; once) to the native size
of a generator drawn for it by key, as the planner draws an edit's generator, so neither the size nor a
whole-image resampling tells edited from never-edited images. The manifest then records each image's
source size, its per-axis factor from the source and, for a never-edited image, the generator it was
sized as.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from diffseg import records, resampling
from diffseg.dataset import card, cues, figure, plots
from diffseg.params import Params
from diffseg.seeding import keyed_rng, keyed_unit


def assign_splits(source_ids: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Split by source: every image derived from one source lands in one split.

    Sources are ranked by a keyed hash (so the result does not depend on input order) and cut by
    the fractions; with at least three sources every split gets one.
    """
    unique = sorted(set(source_ids), key=lambda s: (keyed_unit(seed, "split", s), s))
    names = ["train", "val", "test"]
    total = sum(fractions[n] for n in names)
    counts = [int(round(len(unique) * fractions[n] / total)) for n in names[1:]]
    if len(unique) >= 3:
        counts = [max(1, c) for c in counts]
    n_val, n_test = counts
    n_train = max(0, len(unique) - n_val - n_test)
    split_of = {}
    for rank, source in enumerate(unique):
        split_of[source] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return split_of


def run(params: Params, out_dir: Path, metrics_path: Path, plots_dir: Path) -> dict:
    final = records.StateDir(params.final_state)
    source = records.StateDir(records.SOURCE_DIR)
    out = records.StateDir(records.fresh_dir(out_dir))
    classes = params.classes
    manifest = final.manifest()
    history = final.history()
    split_of = assign_splits(list(manifest["source_id"]), params.assemble.splits, params.seed)
    # Grouped once: filtering the whole history per image would cost images x edits.
    accepted = history[history["decision"] == "accepted"].groupby("image_id")["generator"]
    n_edits, generators = accepted.size().to_dict(), accepted.agg(lambda g: ",".join(sorted(set(g)))).to_dict()

    # A run with synthetic base images also carries their generator, seed and prompt.
    fields = _SOURCE_FIELDS + [f for f in records.SYNTHETIC_FIELDS if f in manifest.columns]
    source_sizes = source.manifest().set_index("image_id")[["width", "height"]]
    native = params.edit.output_resolution == "generator"
    rows = []
    for info in tqdm(manifest.to_dict("records"), desc="assemble", unit="img"):
        image_id = info["image_id"]
        image = final.image(image_id)
        shape = image.shape[:2]
        label, turnmask = final.label(image_id, shape), final.turnmask(image_id, shape)
        if label.max() >= len(classes):
            raise ValueError(f"{image_id}: label value {label.max()} outside classes.json ({len(classes)} classes)")
        sized = {}
        if native:
            source_size = tuple(int(v) for v in source_sizes.loc[image_id])
            image, label, turnmask, sized = _generator_sized(params, image_id, source_size, image, label, turnmask,
                                                             n_edits.get(image_id, 0) == 0)
        records.write_png(out.image_path(image_id), image)
        records.write_png(out.label_path(image_id), label)
        records.write_png(out.turnmask_path(image_id), turnmask)
        counts = np.bincount(label.ravel(), minlength=len(classes))
        rows.append({**{k: info[k] for k in fields}, **sized, "split": split_of[info["source_id"]],
                     "n_edits": int(n_edits.get(image_id, 0)), "edited_fraction": float(counts[1:].sum() / label.size),
                     "generators": generators.get(image_id, ""),
                     "status": records.OK, "reason": ""})

    images = pd.DataFrame(rows).sort_values("image_id").reset_index(drop=True)
    metadata = history.merge(images[["image_id", "split", *_SOURCE_FIELDS[1:]]], on="image_id", how="inner")
    # Attempts in order, so a turn's accepted attempt (always its last) is the turn's last row.
    order = ["image_id", "turn_index", "attempt"] if "attempt" in metadata.columns else ["image_id", "turn_index"]
    metadata = metadata.sort_values(order).reset_index(drop=True)
    records.write_table(out.root / records.MANIFEST, images)
    records.write_table(out.root / "metadata.parquet", metadata)
    records.write_json(out.root / "classes.json", classes)

    stats = statistics(images, metadata, source.manifest(), classes, out)
    metric = {k: stats[k] for k in _METRIC_KEYS}
    if "attempt" in metadata.columns:  # retry rounds: what they reached (absent otherwise, so bytes stay)
        stats["attempts"] = attempt_statistics(images, metadata, {t: params.max_attempts(t) for t in params.base_turns})
        metric.update({k: stats["attempts"][k] for k in _ATTEMPT_METRIC_KEYS})
    records.write_json(out.root / "stats.json", stats)
    records.write_json(metrics_path, {"dataset": metric})
    plots.write(images, metadata, classes, records.fresh_dir(plots_dir))
    found = None
    if params.assemble.cues:
        found = cues.summarise(params, images, metadata, source_sizes, out)
        records.write_json(out.root / "cues.json", found)
    records.write_bytes(out.root / "README.md", card.render(params, stats, found).encode())
    figure.sample_grid(out, images, classes, params.assemble.n_figure, out.root / "figures" / "samples.png")
    print(f"assemble: {stats['n_images']} images ({stats['splits']}), turns {stats['turn_counts']}, "
          f"edits per generator {stats['edits_per_generator']}")
    return stats


def _generator_sized(params: Params, image_id: str, source_size: tuple[int, int], image: np.ndarray,
                     label: np.ndarray, turnmask: np.ndarray, never_edited: bool) -> tuple:
    """Image, label and turn mask at their dataset size (``edit.output_resolution: generator``), and the manifest
    fields recording it: a never-edited image moves to the native size of a generator drawn by key."""
    sized_as = ""
    if never_edited:
        gens = params.edit.generators
        gen = gens[int(keyed_rng(params.seed, "negative size", image_id).integers(len(gens)))]
        size = resampling.generator_size(gen, *source_size)
        image, label = resampling.resample_image(image, size), resampling.resample_map(label, size)
        turnmask, sized_as = resampling.resample_map(turnmask, size), gen.name
    width, height = image.shape[1], image.shape[0]
    scale_x, scale_y = resampling.scale_factors(source_size, (width, height))
    return image, label, turnmask, {"width": width, "height": height, "source_width": source_size[0],
                                    "source_height": source_size[1], "resample_x": scale_x, "resample_y": scale_y,
                                    "sized_as": sized_as}


_SOURCE_FIELDS = ["image_id", "source_id", "origin", "url", "license", "width", "height"]
_METRIC_KEYS = ["n_images", "n_edited_images", "n_edits", "acceptance_rate", "edited_pixel_fraction"]
_ATTEMPT_METRIC_KEYS = ["rejection_rate", "edited_share", "edited_share_of_target"]


def attempt_statistics(images: pd.DataFrame, metadata: pd.DataFrame, max_attempts: dict[str, int]) -> dict:
    """What the retry rounds reached: the target is every image planned to get an edit (``planned_turns`` >= 1,
    drawn from ``propose.turn_weights``) and every planned (image, turn) edit."""
    planned = metadata[metadata["turn_index"] <= metadata["planned_turns"]]
    edits = planned[planned["action"] != "none"]
    accepted = planned[planned["decision"] == "accepted"]
    n_planned_edits = len(planned.drop_duplicates(["image_id", "turn_index"]))
    target = int(planned["image_id"].nunique())
    edited = int((images["n_edits"] > 0).sum())
    by_attempt = accepted["attempt"].value_counts()
    return {
        "max_attempts": max_attempts,
        "n_attempts": int(len(planned)),  # planned or not (no feasible plan): every attempt made
        "n_edit_attempts": int(len(edits)),
        "rejection_rate": round(float((edits["decision"] == "rejected").sum() / max(len(edits), 1)), 4),
        "accepted_by_attempt": {str(a): int(by_attempt.get(a, 0)) for a in range(1, max(max_attempts.values()) + 1)},
        "n_planned_edits": n_planned_edits,
        "n_accepted_edits": int(len(accepted)),
        "accepted_share_of_planned_edits": round(len(accepted) / max(n_planned_edits, 1), 4),
        "n_target_images": target,
        "n_edited_images": edited,
        "target_share": round(target / max(len(images), 1), 4),
        "edited_share": round(edited / max(len(images), 1), 4),
        "edited_share_of_target": round(edited / max(target, 1), 4),
    }


def statistics(images: pd.DataFrame, metadata: pd.DataFrame, source_manifest: pd.DataFrame,
               classes: list[str], out: records.StateDir) -> dict:
    attempted = metadata[metadata["action"] != "none"]
    accepted = metadata[metadata["decision"] == "accepted"]
    pixels = np.zeros(len(classes), np.int64)
    for image_id in images["image_id"]:
        pixels += np.bincount(records.read_gray(out.label_path(image_id)).ravel(), minlength=len(classes))
    return {
        "n_source_images": int(len(source_manifest)),
        "source_skipped": {r: int(n) for r, n in source_manifest.loc[source_manifest["status"] != records.OK,
                                                                       "reason"].value_counts().items()},
        "n_images": int(len(images)),
        "n_edited_images": int((images["n_edits"] > 0).sum()),
        "n_edits": int(len(accepted)),
        "acceptance_rate": round(float(len(accepted) / max(len(attempted), 1)), 4),
        "splits": {s: int(n) for s, n in images["split"].value_counts().sort_index().items()},
        "turn_counts": {str(k): int(n) for k, n in images["n_edits"].value_counts().sort_index().items()},
        "actions": {a: int(n) for a, n in accepted["action"].value_counts().sort_index().items()},
        "edits_per_generator": {g: int((accepted["generator"] == g).sum()) for g in classes[1:]},
        "rejections": {r: int(n) for r, n in metadata.loc[metadata["decision"] == "rejected", "reason"]
                       .str.split("(", n=1).str[0].str.strip().value_counts().items()},
        "pixels_per_class": {c: int(n) for c, n in zip(classes, pixels)},
        "edited_pixel_fraction": round(float(pixels[1:].sum() / max(pixels.sum(), 1)), 4),
    }
