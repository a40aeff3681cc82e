"""``diffseg official``: a local copy of the official DiffSeg30k release as an assembled dataset.

The release (Hugging Face dataset ``Chaos2629/Diffseg30k``, Ci et al., arXiv:2511.19111) pairs each
image with a mask PNG and does not document the mask encoding (binary 0/255, or class ids 0..8?). So
the mapping is explicit, ``official.mask_values`` (pixel value -> class name, one of them
'authentic'), and a mask holding any other value stops the conversion, naming the file and the values:
no threshold is ever applied (a threshold at 127 would silently erase class ids 1..8).

The release's file layout could not be verified offline; these layouts under ``official.path`` are
recognised (documented in docs/benchmark.md):

* split folders (names mapped by ``official.splits``), each holding either ``<id>/image.<ext>`` +
  ``<id>/mask.png`` item folders or flat ``images/<id>.<ext>`` + ``masks/<id>.png``;
* the same two item layouts directly under ``official.path``, without splits: splits are then assigned
  per image by the keyed hash of ``assemble`` with ``assemble.splits``;
* Parquet files with ``image`` and ``mask`` columns (the Hub's own conversion, ``{bytes, path}`` cells),
  the split taken from the file name (``train-00000-of-00001.parquet``) or the parent folder.

The output is the assembled-dataset format that ``train``/``evaluate`` read (``images/``, ``labels/``,
``classes.json``, ``manifest.parquet``), written into ``detect.dataset``, plus ``conversion.json``
(layout, mapping, counts, skipped items with reasons). The release does not record turns or source
photos, so ``n_edits`` is a lower bound (the number of generator classes in the mask) and every image
is its own ``source_id``.
"""
from __future__ import annotations

import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from diffseg import records
from diffseg.errors import UserError
from diffseg.params import Params, ParamsError

RELEASE_URL = "https://huggingface.co/datasets/Chaos2629/Diffseg30k"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class MaskMismatch(UserError):
    """A mask holds values that ``official.mask_values`` does not map: the mapping is wrong, not the item."""


class BadItem(ValueError):
    """An item that cannot enter the dataset; the message is its recorded reason."""


@dataclass
class Pair:
    """One release item: where it came from and how to open its image and its mask."""
    image_id: str
    split: str | None  # project split, or None when the release has no split folders
    origin: str  # the image's path (or parquet file and row) inside the release, for provenance
    mask_origin: str  # the mask's, for error messages
    image: Callable[[], Image.Image] | None
    mask: Callable[[], Image.Image] | None


def class_table(mask_values: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """``classes.json`` (authentic first, then names in mask-value order) and a value -> class-index table."""
    if "authentic" not in mask_values.values():
        raise ParamsError("params.yaml: key 'official.mask_values': set the mask value -> class mapping of the "
                          "release, with one value mapped to 'authentic' (e.g. {0: authentic, 255: edited})")
    classes = ["authentic"]
    for value in sorted(mask_values):
        if mask_values[value] not in classes:
            classes.append(mask_values[value])
    table = np.zeros(max(mask_values) + 1, np.uint8)
    for value, name in mask_values.items():
        table[value] = classes.index(name)
    return classes, table


def mask_array(img: Image.Image, origin: str) -> np.ndarray:
    """The mask's raw values, whatever PNG mode stores them; colour masks are refused, never guessed."""
    if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.int64)  # a palette mask's values are its indices
    if img.mode == "1":
        return np.asarray(img.convert("L")).astype(np.int64)  # 1-bit masks read as 0 / 255
    if img.mode in ("RGB", "RGBA", "LA"):
        pixels = np.asarray(img)
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and (pixels[..., -1] != 255).any():
            raise BadItem(f"mask {origin} is partly transparent ({img.mode}); cannot tell its values")
        colour = pixels[..., :3] if img.mode != "LA" else pixels[..., :1]
        if (colour != colour[..., :1]).any():
            raise BadItem(f"mask {origin} is a colour image ({img.mode} with differing channels); expected one "
                          f"value per pixel")
        return colour[..., 0].astype(np.int64)
    raise BadItem(f"mask {origin}: unsupported image mode {img.mode}")


def check_values(values: np.ndarray, mask_values: dict[int, str], origin: str) -> None:
    """Refuse a mask whose values do not all appear in the mapping, naming the file and the values."""
    present, counts = np.unique(values, return_counts=True)
    unexpected = [(int(v), int(c)) for v, c in zip(present, counts) if int(v) not in mask_values]
    if unexpected:
        shown = ", ".join(f"{v} ({c} px)" for v, c in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        raise MaskMismatch(
            f"mask {origin} holds value(s) {shown} that official.mask_values {dict(sorted(mask_values.items()))} "
            f"does not map (values present: {[int(v) for v in present][:20]}). Values 0/255 mean a binary mask, "
            f"0..8 class ids: set official.mask_values to the release's encoding; no threshold is applied")


def _opener(source: Path | bytes) -> Callable[[], Image.Image]:
    def open_() -> Image.Image:
        img = Image.open(source if isinstance(source, Path) else io.BytesIO(source))
        img.load()
        return img
    return open_


def _by_stem(folder: Path) -> dict[str, Path]:
    """The image files of ``folder`` by name without suffix, listed once (a glob per item is quadratic)."""
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                files.setdefault(path.stem, path)
    return files


def _safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def _folder_pairs(folder: Path, root: Path, split: str | None, prefix: str) -> Iterator[Pair]:
    """Items of one folder: flat ``images/`` + ``masks/``, or ``<id>/image.*`` + ``<id>/mask.*``."""
    def pair(raw_id: str, image: Path, mask: Path | None) -> Pair:
        return Pair(_safe_id(prefix + raw_id), split, str(image.relative_to(root)),
                    str(mask.relative_to(root)) if mask else "(none)", _opener(image), _opener(mask) if mask else None)

    if (folder / "images").is_dir():
        masks = _by_stem(folder / "masks")
        for stem, image in _by_stem(folder / "images").items():
            yield pair(stem, image, masks.get(stem))
        return
    for item in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _by_stem(item)
        if "image" in files:
            yield pair(item.name, files["image"], files.get("mask"))


def _parquet_pairs(files: list[Path], root: Path, splits: dict[str, str]) -> Iterator[Pair]:
    import pyarrow.parquet as pq

    counters: dict[str, int] = {}
    for path in files:
        folder = next((n for n in (path.name.split("-")[0], path.parent.name) if n in splits), None)
        if folder is None:
            raise UserError(f"{path}: cannot tell its split from the name; add it to official.splits "
                            f"(known: {', '.join(splits)})")
        table = pq.ParquetFile(path)
        if not {"image", "mask"} <= set(table.schema_arrow.names):
            raise UserError(f"{path}: expected columns 'image' and 'mask', found {table.schema_arrow.names}")
        row = 0
        for batch in table.iter_batches(batch_size=16, columns=["image", "mask"]):
            for cell in batch.to_pylist():
                n = counters.get(folder, 0)
                counters[folder] = n + 1
                image, mask = (c["bytes"] if isinstance(c, dict) else c for c in (cell["image"], cell["mask"]))
                origin = f"{path.relative_to(root)}:{row}"
                yield Pair(f"{folder}_{n:06d}", splits[folder], origin, f"{origin} (mask column)",
                           _opener(image) if image else None, _opener(mask) if mask else None)
                row += 1


def discover(root: Path, splits: dict[str, str]) -> tuple[str, Iterator[Pair]]:
    """The release's layout under ``root`` and its items, in a stable order."""
    if not root.is_dir():
        raise UserError(f"official.path: {root} is not a folder (download the release there first)")
    children = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    split_dirs = [p for p in children if p.name in splits]
    if split_dirs:
        others = [p.name for p in children if p.name not in splits]
        if others:
            raise UserError(f"{root}: folder(s) {others} are not split names; map them in official.splits "
                            f"(known: {', '.join(splits)})")
        return "split folders", (pair for d in split_dirs
                                 for pair in _folder_pairs(d, root, splits[d.name], f"{d.name}_"))
    if (root / "images").is_dir() or any("image" in _by_stem(p) for p in children):
        return "no splits", _folder_pairs(root, root, None, "")
    # Hidden folders (huggingface-cli's .cache/) hold download metadata, never data.
    parquet = sorted(p for p in root.rglob("*.parquet")
                     if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if parquet:
        return "parquet", _parquet_pairs(parquet, root, splits)
    raise UserError(f"{root}: no recognised layout: expected split folders ({', '.join(splits)}), "
                    f"<id>/image.png + <id>/mask.png, images/ + masks/, or Parquet files with image and mask")


def convert(pair: Pair, table: np.ndarray, mask_values: dict[int, str]) -> tuple[np.ndarray, np.ndarray, str]:
    """RGB pixels and the label map of one item (raises :class:`BadItem` or :class:`MaskMismatch`)."""
    from diffseg.images import to_rgb

    if pair.image is None or pair.mask is None:
        raise BadItem(f"{pair.origin}: no {'image' if pair.image is None else 'mask'}")
    try:
        image, note = to_rgb(pair.image())
        mask_img = pair.mask()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadItem(f"{pair.origin}: corrupt or unsupported image or mask: {type(err).__name__}: {err}") from None
    values = mask_array(mask_img, pair.mask_origin)
    if values.shape != image.shape[:2]:
        raise BadItem(f"{pair.origin}: mask is {values.shape[1]}x{values.shape[0]}, image "
                      f"{image.shape[1]}x{image.shape[0]}")
    check_values(values, mask_values, pair.mask_origin)
    return image, table[values], note


def run(params: Params, out_dir: Path | None = None) -> pd.DataFrame:
    """Convert ``official.path`` into ``out_dir`` (default ``detect.dataset``); return the manifest."""
    cfg = params.official
    out_dir = Path(out_dir or params.detect.dataset)
    if out_dir.resolve() == records.DATASET_DIR.resolve():
        raise UserError(f"detect.dataset is {out_dir}, the pipeline's own assembled dataset; set detect.dataset to "
                        f"another folder (e.g. data/official) before converting the release into it")
    root = Path(cfg.path)
    if root.resolve() == out_dir.resolve() or root.resolve() in out_dir.resolve().parents:
        raise UserError(f"detect.dataset ({out_dir}) must lie outside official.path ({root})")
    classes, table = class_table(cfg.mask_values)
    layout, pairs = discover(root, cfg.splits)
    # Written beside the target and renamed at the end: a refused mask never leaves a half-converted dataset.
    work = out_dir.with_name(f".{out_dir.name}.partial")
    try:
        manifest, skipped = _write(params, root, layout, pairs, classes, table, records.fresh_dir(work))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    print(f"official: {len(manifest)} images from {root} ({layout}) into {out_dir}, classes {classes}, "
          f"{len(skipped)} skipped")
    return manifest


def _write(params: Params, root: Path, layout: str, pairs: Iterator[Pair], classes: list[str], table: np.ndarray,
           work: Path) -> tuple[pd.DataFrame, list[dict]]:
    from diffseg.dataset.assemble import assign_splits

    cfg = params.official
    out = records.StateDir(work)
    rows, skipped = [], []
    for pair in tqdm(pairs, desc="official", unit="img"):
        try:
            image, label, note = convert(pair, table, cfg.mask_values)
        except BadItem as err:
            skipped.append({"image_id": pair.image_id, "origin": pair.origin, "reason": str(err)})
            continue
        if out.image_path(pair.image_id).exists():
            raise UserError(f"{pair.origin}: a second item with id '{pair.image_id}'")
        records.write_png(out.image_path(pair.image_id), image)
        records.write_png(out.label_path(pair.image_id), label)
        counts = np.bincount(label.ravel(), minlength=len(classes))
        present = [classes[k] for k in range(1, len(classes)) if counts[k]]
        rows.append({"image_id": pair.image_id, "source_id": pair.image_id, "origin": pair.origin,
                     "url": RELEASE_URL, "license": "see the release's dataset card", "width": image.shape[1],
                     "height": image.shape[0], "split": pair.split, "n_edits": len(present),
                     "edited_fraction": float(counts[1:].sum() / label.size), "generators": ",".join(present),
                     "note": note, "status": records.OK, "reason": ""})
    total = len(rows) + len(skipped)
    if not rows:
        raise UserError(f"{root}: no usable image/mask pair ({len(skipped)} skipped)")
    if len(skipped) / total > params.max_item_failure:
        raise UserError(f"{root}: {len(skipped)} of {total} items unusable, above max_item_failure; first: "
                        f"{skipped[0]['reason']}")
    manifest = pd.DataFrame(rows)
    if layout == "no splits":
        split_of = assign_splits(list(manifest["source_id"]), params.assemble.splits, params.seed)
        manifest["split"] = manifest["source_id"].map(split_of)
    manifest = manifest.sort_values("image_id").reset_index(drop=True)
    records.write_table(out.root / records.MANIFEST, manifest)
    records.write_json(out.root / "classes.json", classes)
    records.write_json(out.root / "conversion.json", {
        "release": RELEASE_URL, "path": str(root), "layout": layout,
        "mask_values": {str(k): v for k, v in sorted(cfg.mask_values.items())}, "classes": classes,
        "images": {s: int(n) for s, n in manifest["split"].value_counts().sort_index().items()},
        "skipped": skipped})
    return manifest, skipped
