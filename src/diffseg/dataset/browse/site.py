"""``diffseg browse``: the site of an assembled dataset, written into one folder that opens from disk.

    diffseg browse                                   # data/dataset -> data/browse
    diffseg browse --turns data/turns                # the turn strip from the pipeline's per-turn states
    xdg-open data/browse/index.html                  # any browser; no server

``index.html`` is a grid of every image, filtered by split, generator, number of edits and action; each
image has a page (``images/<id>.html``) with the image, its label outlined and painted with a legend, the
turn strip and the provenance table of ``metadata.parquet``.

The dataset keeps only the final image, so without ``--turns`` the strip shows the final image once per
turn with that turn's mask (bit t-1 of the turn mask) outlined: pixels a later turn repainted show the later
content. With ``--turns`` it shows the source (``--source``) and the state after each turn, read from
``<turns>/<turn>/state``, each with its own turn's mask outlined. A dataset without ``metadata.parquet`` or
turn masks (``diffseg official`` converts a release that records neither) gets the grid, the label and the
manifest, and a note instead of turns.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from diffseg import records
from diffseg.dataset.browse import pages, pictures
from diffseg.errors import UserError

DEFAULT_OUT = Path("data/browse")
STATIC = Path(__file__).parent / "static"
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
# Filter measurements shown as scores when the metadata has them (the heuristics' and the VLM judge's).
SCORES = ("mask_area", "change_in_mask", "brightness_in_mask", "changed_outside_mask", "judge_realism",
          "judge_instruction")
IMAGE_FIELDS = ["image_id", "split", "source_id", "origin", "url", "license", "width", "height", "n_edits",
                "edited_fraction", "generators"]


def run(dataset_dir: Path = records.DATASET_DIR, out_dir: Path = DEFAULT_OUT, turns_dir: Path | None = None,
        source_dir: Path = records.SOURCE_DIR) -> dict[str, int]:
    """Write the site of ``dataset_dir`` into ``out_dir`` (replaced whole); return its counts."""
    data = records.StateDir(dataset_dir)
    for name in (records.MANIFEST, "classes.json"):
        if not (data.root / name).is_file():
            raise UserError(f"{data.root / name}: missing; is {data.root} a dataset written by `diffseg assemble` "
                            f"or `diffseg official`?")
    manifest = data.manifest()
    manifest = manifest[manifest["status"] == records.OK].sort_values("image_id").reset_index(drop=True)
    classes = records.read_json(data.root / "classes.json")
    meta_path = data.root / "metadata.parquet"
    meta = records.read_table(meta_path) if meta_path.is_file() else None
    if turns_dir is not None and meta is None:
        raise UserError(f"--turns needs {meta_path} to name each image's turns; this dataset has none")
    states = _states(turns_dir, source_dir, meta) if turns_dir is not None else None
    _check_out(out_dir, data.root)

    turns_of = {}
    if meta is not None:  # each image's rows in turn (and attempt) order, whatever the file's order
        order = ["image_id", "turn_index"] + (["attempt"] if "attempt" in meta.columns else [])
        turns_of = dict(tuple(meta.sort_values(order, kind="stable").groupby("image_id", sort=True)))
    colours = pictures.palette(len(classes))
    work = out_dir.with_name(f".{out_dir.name}.partial")
    records.fresh_dir(work)
    items, missing = [], 0
    for info in manifest.to_dict("records"):
        item, complete = _image(work, data, info, turns_of.get(info["image_id"]), classes, colours, states)
        items.append(item)
        missing += not complete
    for name in ("browse.css", "browse.js"):
        records.write_bytes(work / name, (STATIC / name).read_bytes())
    records.write_bytes(work / "index.html", pages.index(
        "diffseg dataset", _summary(items, meta), items, _options(items, classes), classes, colours).encode())
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    print(f"browse: {len(items)} images -> {out_dir / 'index.html'}"
          + (f" ({missing} without their turn states: see their pages)" if missing else ""))
    return {"images": len(items), "missing_states": missing}


def _check_out(out_dir: Path, dataset: Path) -> None:
    """Refuse to replace a folder that is not a site this command wrote (a typo must not delete data)."""
    out, data = out_dir.resolve(), dataset.resolve()
    if out == data or out in data.parents or data in out.parents:
        raise UserError(f"--out {out_dir} overlaps the dataset {dataset}; choose another folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "browse.js").is_file():
        raise UserError(f"--out {out_dir} is a folder that `diffseg browse` did not write; refusing to replace it")


def _states(turns_dir: Path, source_dir: Path, meta: pd.DataFrame) -> dict[int, records.StateDir]:
    """The state before any turn (index 0) and after each turn of the metadata, by turn index."""
    states = {0: records.StateDir(source_dir)}
    for index, name in sorted(set(zip(meta["turn_index"], meta["turn"]))):
        states[int(index)] = records.StateDir(turns_dir / name / "state")
    for state in states.values():
        if not (state.root / "images").is_dir():
            raise UserError(f"{state.root}: no images/ folder; --turns names the folder holding <turn>/state "
                            f"(data/turns) and --source the state before the first turn (data/source)")
    return states


def _image(work: Path, data: records.StateDir, info: dict, turns: pd.DataFrame | None, classes: list[str],
           colours: np.ndarray, states: dict[int, records.StateDir] | None) -> tuple[dict, bool]:
    """Write one image's pictures and page; return its grid record and whether its turn states were all found."""
    image_id = info["image_id"]
    if not data.image_path(image_id).is_file():
        raise UserError(f"{data.image_path(image_id)}: missing, though {records.MANIFEST} lists it")
    image = data.image(image_id)
    label = data.label(image_id, image.shape[:2])
    if label.max() >= len(classes):
        raise UserError(f"{data.label_path(image_id)}: label value {label.max()} outside classes.json")
    folder = Path("pictures") / image_id
    records.write_bytes(work / folder / "image.png", data.image_path(image_id).read_bytes())
    records.write_png(work / folder / "outline.png", pictures.label_outlines(image, label, colours))
    records.write_png(work / folder / "label.png", pictures.label_view(image, label, colours))
    records.write_png(work / "thumbs" / f"{image_id}.png",
                      pictures.thumbnail(pictures.label_outlines(image, label, colours)))
    shares = np.bincount(label.ravel(), minlength=len(classes)) / label.size
    legend = [(classes[k], colours[k], float(shares[k])) for k in range(1, len(classes)) if shares[k] > 0]
    rel = f"../{folder.as_posix()}"
    panels = [pages.Panel(f"{rel}/image.png", "image"), pages.Panel(f"{rel}/outline.png", "label outlined"),
              pages.Panel(f"{rel}/label.png", "label (authentic pixels dimmed)")]
    page = pages.ImagePage(info, panels, legend)
    complete = True
    if turns is not None:
        last = turns.groupby("turn_index", sort=True).tail(1)  # a turn's last attempt is the one that counts
        page.provenance = _provenance(turns)
        if states is None:
            page.strip, page.strip_note = _strip_from_dataset(work, folder, data, image, last, classes, colours)
        else:
            page.strip, page.strip_note, complete = _strip_from_states(work, folder, states, last, classes, colours)
    elif data.turnmask_path(image_id).is_file():
        page.strip_note = "This dataset holds no metadata.parquet: the turn masks cannot be matched to turns."
    else:
        page.strip_note = "This dataset records no turns (no metadata.parquet, no turn masks)."
    records.write_bytes(work / pages.page_name(image_id), pages.image_page(page, IMAGE_FIELDS).encode())
    actions = sorted(set(last.loc[last["decision"] == "accepted", "action"])) if turns is not None else []
    item = {"id": image_id, "split": info["split"], "n_edits": int(info["n_edits"]), "actions": actions,
            "generators": [g for g in str(info["generators"]).split(",") if g]}
    return item, complete


def _turn_caption(row: dict) -> str:
    what = f"{row['turn']}: "
    if row["decision"] == "accepted":
        return what + f"{row['action']} '{row['target']}' by {row['generator']}"
    if row["decision"] == "rejected":  # the reason, often long, is in the provenance table
        return what + f"{row['action']} by {row['generator']}, rejected"
    return what + "no edit"


def _turn_regions(turnmask: np.ndarray, row: dict, classes: list[str], colours: np.ndarray) -> list:
    mask = (turnmask >> (int(row["turn_index"]) - 1)) & 1 > 0
    colour = colours[classes.index(row["generator"])] if row["generator"] in classes else np.full(3, 255, np.uint8)
    return [(mask, colour)] if mask.any() else []


def _strip_from_dataset(work: Path, folder: Path, data: records.StateDir, image: np.ndarray, last: pd.DataFrame,
                        classes: list[str], colours: np.ndarray) -> tuple[list[pages.Panel], str]:
    turnmask = data.turnmask(folder.name, image.shape[:2])
    strip = []
    for row in last.to_dict("records"):
        name = f"{row['turn']}.png"
        regions = _turn_regions(turnmask, row, classes, colours)
        records.write_png(work / folder / name, pictures.outlined(image, regions))
        strip.append(pages.Panel(f"../{folder.as_posix()}/{name}", _turn_caption(row)))
    note = ("The dataset keeps only the final image: each panel outlines one turn's mask on it, so pixels a later "
            "turn repainted show the later content (build with --turns data/turns to see each state).")
    return strip, note


def _strip_from_states(work: Path, folder: Path, states: dict[int, records.StateDir], last: pd.DataFrame,
                       classes: list[str], colours: np.ndarray) -> tuple[list[pages.Panel], str, bool]:
    image_id, strip, lost = folder.name, [], []
    rows = [{"turn": "source", "turn_index": 0}] + last.to_dict("records")
    for row in rows:
        state = states[int(row["turn_index"])]
        if not state.image_path(image_id).is_file():
            lost.append(str(state.image_path(image_id)))
            continue
        image = state.image(image_id)
        regions = _turn_regions(state.turnmask(image_id, image.shape[:2]), row, classes, colours) \
            if row["turn_index"] else []
        name = f"{row['turn']}.png"
        records.write_png(work / folder / name, pictures.outlined(image, regions))
        strip.append(pages.Panel(f"../{folder.as_posix()}/{name}",
                                 _turn_caption(row) if row["turn_index"] else "source (before any turn)"))
    note = "The source, then the state after each turn with that turn's mask outlined."
    if lost:
        note += f" Missing from the turn states, so not shown: {', '.join(lost)}."
    return strip, note, not lost


def _provenance(turns: pd.DataFrame) -> list[list[str]]:
    """Header, then one row per turn (and attempt): what was asked, by which checkpoint, and the verdict."""
    attempts = "attempt" in turns.columns
    scores = [c for c in SCORES if c in turns.columns]
    rows = [["turn"] + (["attempt"] if attempts else []) + ["action", "target", "prompt", "generator", "checkpoint",
                                                           "seed", "scores", "decision", "reason"]]
    for row in turns.to_dict("records"):
        checkpoint = row["model"] + (f" @ {row['revision']}" if row.get("revision") else "") if row["model"] else ""
        rows.append([row["turn"]] + ([str(row["attempt"])] if attempts else []) + [
            row["action"], row["target"], row["prompt"], row["generator"], checkpoint,
            str(row["seed"]) if row["generator"] else "",
            ", ".join(f"{c}={row[c]:.4g}" for c in scores), row["decision"], row["reason"]])
    return rows


def _options(items: list[dict], classes: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Each filter's values present in the dataset with their numbers of images, in a fixed order."""
    counts = {name: Counter() for name, _ in pages.FILTERS}
    for item in items:
        for name in ("split", "n_edits"):
            counts[name][str(item[name])] += 1
        for name in ("generators", "actions"):
            counts[name].update(item[name])
    order = {"split": lambda v: (SPLIT_ORDER.get(v, len(SPLIT_ORDER)), v), "n_edits": int,
             "generators": lambda v: (classes.index(v) if v in classes else len(classes), v), "actions": str}
    return {name: [(v, counts[name][v]) for v in sorted(counts[name], key=order[name])] for name, _ in pages.FILTERS}


def _summary(items: list[dict], meta: pd.DataFrame | None) -> str:
    splits = Counter(item["split"] for item in items)
    per_split = ", ".join(f"{s} {splits[s]}" for s in sorted(splits, key=lambda s: (SPLIT_ORDER.get(s, 3), s)))
    edited = sum(item["n_edits"] > 0 for item in items)
    text = f"{len(items)} images ({per_split}), {edited} edited, {len(items) - edited} never edited."
    return text + ("" if meta is not None else " No metadata.parquet: no actions, turns or provenance.")
