"""``diffseg predict INPUT...``: run a trained detector on image files, folders and globs, and draw what it found.

Loads ``models/detectors/<name>`` (``--detector``, default the first of ``detect.detectors``) or any saved
detector folder (``--model DIR``) once through :func:`diffseg.detect.zoo.load`, then runs the images in
batches of ``--batch-size``: a class per pixel, an overlay PNG per image (one colour per class, a legend
with each class's share of the image) and the image-level score of
:func:`diffseg.detect.metrics.image_score` (>= 0.5 reads as "edited"). All scores go into one file,
``scores.json`` or ``scores.csv`` (``--format``), in the ``--out`` folder beside the overlays::

    diffseg predict photo.jpg                                # -> predictions/photo_pred.png, predictions/scores.json
    diffseg predict shots/ 'more/**/*.jpg' --format csv --out /tmp/run --batch-size 16

A folder is read recursively (hidden files and the ``--out`` folder left out); a glob is expanded by
Python (quote it so the shell does not). Any image PIL reads works: grayscale, palette, 16-bit and
transparent images are converted to 8-bit RGB as the source stage does. A file that is not a readable
image is skipped and recorded in the scores file with the reason; a path that does not exist, or a
folder or glob with no file, stops the command before the model loads (one error line, exit 2).
"""
from __future__ import annotations

import contextlib
import csv
import glob
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from diffseg import records
from diffseg.detect import zoo
from diffseg.detect.metrics import binary_view, image_score
from diffseg.detect.scoring import predict_probs, task_prediction
from diffseg.errors import UserError
from diffseg.overlays import class_colours, overlay, plt
from diffseg.params import Params
from diffseg.runtime import pick_device

GLOB_CHARS = frozenset("*?[")  # an argument holding one of these, and naming no file, is a pattern
MAX_SIDE = 2048  # a longer input is downsized: the detector sees image_size anyway, the overlay stays small
MAX_PIXELS = 89_478_485  # PIL's decompression-bomb threshold: never decode more pixels than this
LEGEND_ENTRY_INCHES = 1.8  # width of one legend entry ('authentic 100.0%' at 9 pt) when laying out columns


@contextlib.contextmanager
def _own_size_check():
    """PIL refuses (or warns about) huge images when opening them; the caller applies its own limit."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def load_image(path: Path, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """8-bit RGB pixels of ``path``, at most ``max_side`` on the longer side, and notes on what was changed."""
    from diffseg.images import to_rgb

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    notes = []
    try:
        with _own_size_check(), Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                # JPEG decodes at 1/2, 1/4 or 1/8 scale without ever holding the full image; others cannot.
                img.draft("RGB", (max_side, max_side))
                if img.size[0] * img.size[1] > max_pixels:
                    raise UserError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, above the "
                                    f"{max_pixels / 1e6:.0f} megapixel decoding limit (a decompression-bomb guard), "
                                    f"and {img.format or 'this'} images cannot be decoded at reduced size: "
                                    f"downscale it first")
                notes.append(f"decoded at reduced size from {width}x{height}")
            img.load()
            # Camera photos store their orientation in EXIF; the overlay should be upright like a viewer shows it.
            pixels, converted = to_rgb(ImageOps.exif_transpose(img))
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable image ({detail})") from None
    if converted:
        notes.append(converted)
    height, width = pixels.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
        notes.append(f"downsized from {width}x{height} to {size[0]}x{size[1]}")
    return np.ascontiguousarray(pixels), notes


def expand_inputs(args: list[str], out: Path) -> list[Path]:
    """The files that ``args`` name, in argument order, each folder and glob sorted, without repeats.

    Files inside ``out`` are left out of folders and globs, so predicting a folder twice never reads the
    first run's overlays; a file named explicitly is always kept.
    """
    out = out.resolve()
    files: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_file():
            files.append(path)
            continue
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
        elif GLOB_CHARS & set(arg):
            found = [Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file()]
        else:
            raise UserError(f"{arg}: no such file or folder")
        found = sorted(p for p in found if not p.resolve().is_relative_to(out))
        if not found:
            raise UserError(f"{arg}: {'a folder with no files' if path.is_dir() else 'no file matches this pattern'}"
                            f"{' outside --out' if path.is_dir() or GLOB_CHARS & set(arg) else ''}")
        files.extend(found)
    return list(dict.fromkeys(files))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def overlay_names(files: list[Path]) -> list[str]:
    """``<stem>_pred.png`` per file; a stem seen before gets its occurrence number (``x_2_pred.png``)."""
    seen: dict[str, int] = {}
    names = []
    for path in files:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(f"{path.stem}_pred.png" if seen[path.stem] == 1 else f"{path.stem}_{seen[path.stem]}_pred.png")
    return names


def draw(image: np.ndarray, label: np.ndarray, classes: list[str], areas: np.ndarray, title: str, path: Path) -> None:
    """The image with each predicted class overlaid in its colour, and a legend with its area share."""
    from matplotlib.patches import Patch

    colours = class_colours(len(classes))
    height, width = label.shape
    fig_w = max(6.0, width / 100)  # native resolution at dpi 100, but room for the legend on small images
    image_h = fig_w * height / width
    ncol = max(1, min(len(classes), int(fig_w // LEGEND_ENTRY_INCHES)))
    legend_h = 0.35 + 0.25 * -(-len(classes) // ncol)  # the title plus one line per row of classes
    fig = plt.figure(figsize=(fig_w, image_h + legend_h))
    ax = fig.add_axes((0, legend_h / (image_h + legend_h), 1, image_h / (image_h + legend_h)))
    ax.imshow(overlay(image, label, colours), interpolation="nearest")
    ax.axis("off")
    fig.legend(handles=[Patch(color=colours[k], label=f"{name} {areas[k]:.1%}") for k, name in enumerate(classes)],
               loc="lower center", ncol=ncol, fontsize=9, frameon=False, title=title, title_fontsize=9)
    with records.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def detector_folder(params: Params, detector: str | None, model: Path | None) -> Path:
    if detector and model:
        raise UserError("give --detector or --model, not both")
    folder = Path(model) if model else Path("models/detectors") / (detector or next(iter(params.detect.detectors)))
    if (folder / "config.json").is_file():
        return folder
    if model:
        raise UserError(f"--model {folder}: not a saved detector (no config.json in it)")
    raise UserError(f"no trained detector '{folder.name}' in {folder}: run `dvc repro train@{folder.name}` first, "
                    f"or pick another with --detector or --model")


def run(params: Params, inputs: list[str], detector: str | None = None, out: Path | None = None,
        fmt: str = "json", batch_size: int = 8, model_dir: Path | None = None) -> dict:
    """Predict every image ``inputs`` name; returns what the scores file holds."""
    started = time.perf_counter()
    out = Path(out) if out is not None else Path("predictions")
    if fmt not in ("json", "csv"):
        raise UserError(f"--format {fmt}: must be json or csv")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file; give the folder for the overlays and the scores")
    files = expand_inputs(inputs, out)
    folder = detector_folder(params, detector, model_dir)
    device = pick_device(params.detect.device)
    model, config = zoo.load(folder, device)
    startup = time.perf_counter() - started
    classes = config["classes"]
    rows = []
    names = overlay_names(files)
    with tqdm(total=len(files), desc="predict", unit="img", disable=None) as bar:
        for first in range(0, len(files), batch_size):
            batch = list(zip(files[first:first + batch_size], names[first:first + batch_size]))
            rows += _predict_batch(model, config, device, batch, out, folder.name, bar)
    n_ok = sum(row["status"] == "ok" for row in rows)
    elapsed = time.perf_counter() - started - startup
    result = {"detector": folder.name, "task": config["task"], "classes": classes, "images": rows}
    scores = out / f"scores.{fmt}"
    if n_ok and fmt == "json":  # nothing predicted: the error line below says why, and no empty table is written
        records.write_json(scores, result, sort_keys=False)  # classes in their class-id order
    elif n_ok:
        records.write_bytes(scores, _csv(result))
    skipped = len(rows) - n_ok
    print(f"detector {folder.name} ({config['task']}, {len(classes)} classes) loaded in {startup:.1f} s; "
          f"{n_ok} image(s) in {elapsed:.1f} s ({n_ok / max(elapsed, 1e-9):.2f} images/s), {skipped} skipped")
    if not n_ok:
        raise UserError(f"no readable image among the {len(files)} file(s) given")
    print(f"scores: {scores}; overlays in {out}")
    return result


def _predict_batch(model, config: dict, device: str, batch: list[tuple[Path, str]], out: Path, name: str,
                   bar) -> list[dict]:
    """One forward pass over the readable images of ``batch``; a row per file, skipped ones with their reason."""
    rows, images = [], []
    for path, overlay_name in batch:
        try:
            image, notes = load_image(path)
        except UserError as err:
            rows.append({"path": str(path), "status": "skipped", "reason": str(err).removeprefix(f"{path}: ")})
            bar.write(f"skipped {path}: {rows[-1]['reason']}", file=sys.stderr)
            continue
        rows.append({"path": str(path), "status": "ok", "reason": "", "width": int(image.shape[1]),
                     "height": int(image.shape[0]), "notes": "; ".join(notes), "overlay": str(out / overlay_name)})
        images.append(image)
    ok = [row for row in rows if row["status"] == "ok"]
    classes = config["classes"]
    for row, image, probs in zip(ok, images, predict_probs(model, images, config["image_size"], device)):
        label = task_prediction(probs, config["task"])
        score = image_score(binary_view(probs)[0])
        areas = np.bincount(label.ravel(), minlength=len(classes)) / label.size
        verdict = "edited" if score >= 0.5 else "authentic"
        draw(image, label, classes, areas, f"{name}: image score {score:.3f} ({verdict})", Path(row["overlay"]))
        row.update(image_score=round(score, 6), verdict=verdict,
                   areas={cls: round(float(a), 6) for cls, a in zip(classes, areas)})
        bar.write(f"{row['path']}: image score {score:.4f} ({verdict})")
    bar.update(len(batch))
    return rows


CSV_FIELDS = ["path", "status", "reason", "width", "height", "image_score", "verdict"]


def _csv(result: dict) -> bytes:
    """The scores as CSV: a row per file and an ``area_<class>`` column per class."""
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_FIELDS + [f"area_{c}" for c in result["classes"]] + ["notes", "overlay"],
                            lineterminator="\n")
    writer.writeheader()
    for row in result["images"]:
        areas = {f"area_{c}": a for c, a in row.get("areas", {}).items()}
        writer.writerow({**{k: v for k, v in row.items() if k != "areas"}, **areas})
    return text.getvalue().encode()
