"""``diffseg predict IMAGE``: run a trained detector on any image and draw what it found.

Loads ``models/detectors/<name>`` (``--detector``, default the first of ``detect.detectors``) through
:func:`diffseg.detect.zoo.load`, predicts a class per pixel, writes an overlay PNG (one colour per
class, a legend with each class's share of the image) and prints the per-class area fractions and the
image-level score of :func:`diffseg.detect.metrics.image_score` (>= 0.5 reads as "edited")::

    diffseg predict photo.jpg                       # -> ./photo_pred.png
    diffseg predict photo.jpg --detector fcn8s --out /tmp/overlay.png

Any image PIL reads works: grayscale, palette, 16-bit and transparent images are converted to 8-bit
RGB as the source stage does. An unreadable, missing or non-image file is one error line (exit 2).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from diffseg import records
from diffseg.errors import UserError
from diffseg.params import Params

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


def predict(model: torch.nn.Module, config: dict, image: np.ndarray, device: str) -> tuple[np.ndarray, float]:
    """The class map at the image's size and the image-level score, exactly as evaluate@<detector> computes them:
    probabilities resized back to the image, the binary view P(edited) >= 0.5, the image score from that map."""
    from diffseg.detect.metrics import binary_view, image_score
    from diffseg.detect.scoring import predict_probs, task_prediction

    probs = predict_probs(model, [image], config["image_size"], device)[0]
    return task_prediction(probs, config["task"]), image_score(binary_view(probs)[0])


def draw(image: np.ndarray, label: np.ndarray, classes: list[str], areas: np.ndarray, title: str, path: Path) -> None:
    """The image with each predicted class overlaid in its colour, and a legend with its area share."""
    from diffseg.overlays import class_colours, overlay, plt
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


def run(params: Params, image_path: Path, detector: str | None = None, out: Path | None = None) -> dict:
    from diffseg.detect import zoo
    from diffseg.runtime import pick_device

    name = detector or next(iter(params.detect.detectors))
    folder = Path("models/detectors") / name
    if not (folder / "config.json").is_file():
        raise UserError(f"no trained detector '{name}' in {folder}: run `dvc repro train@{name}` first, "
                        f"or pick another with --detector")
    image_path = Path(image_path)
    out = Path(out) if out is not None else Path.cwd() / f"{image_path.stem}_pred.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: the overlay is a PNG, so the name must end in .png")
    if out.exists() and image_path.exists() and out.resolve() == image_path.resolve():
        raise UserError(f"--out {out} is the input image; choose another name")
    image, notes = load_image(image_path)
    device = pick_device(params.detect.device)
    model, config = zoo.load(folder, device)
    label, score = predict(model, config, image, device)
    classes = config["classes"]
    areas = np.bincount(label.ravel(), minlength=len(classes)) / label.size
    verdict = "edited" if score >= 0.5 else "authentic"
    draw(image, label, classes, areas, f"{name}: image score {score:.3f} ({verdict})", out)
    size = f"{image.shape[1]}x{image.shape[0]}"
    print(f"{image_path} ({'; '.join([size, *notes])}), detector {name} ({config['task']}, {len(classes)} classes)")
    for cls, area in zip(classes, areas):
        print(f"  {cls:<16} {area:8.2%}")
    print(f"image score {score:.4f} ({verdict}: >= 0.5 reads as edited)")
    print(f"overlay: {out}")
    return {"detector": name, "areas": dict(zip(classes, map(float, areas))), "image_score": score,
            "notes": notes, "out": str(out)}
