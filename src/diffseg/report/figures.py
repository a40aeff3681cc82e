"""The report's figures: robustness curves, training curves, qualitative examples and failure cases.

Every PNG is written without a timestamp or version string, so two runs on the same inputs give
identical bytes (DVC then sees an unchanged output).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from diffseg import records  # noqa: E402
from diffseg.overlays import class_colours, overlay  # noqa: E402
from diffseg.report.tables import ROBUST_METRICS, robust_kinds, robust_levels  # noqa: E402

# DVCLive series drawn in the training figure; the last is optional (only newer training runs log it).
TRAIN_SERIES = {"train/loss": "training loss", "val/miou": "validation mIoU", "val/iou_edited": "validation IoU edited"}
# A binary detector's "edited" colour: magenta, none of the tab20 generator colours and visible on dark or light photos.
BINARY_COLOURS = np.array([(0.5, 0.5, 0.5), (1.0, 0.0, 1.0)])
PANEL = 2.4  # inches per image panel
# Image panels are upscaled pixel for pixel: smoothing would blur exactly the pixel-level traces the detectors are
# judged on, and the interpolated colours made the qualitative figure's PNG three times larger (3.8 MB instead of 1.2 MB).
PIXELS = "nearest"


def save(fig, path: Path) -> None:
    with records.atomic_path(path) as tmp:
        # No timestamp or version metadata, so the PNG bytes are stable between runs.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _ci_arrays(points: list[dict | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """value, low, high as float arrays, NaN where undefined (matplotlib leaves a gap there)."""
    def get(key: str) -> np.ndarray:
        return np.array([np.nan if p is None or p.get(key) is None else p[key] for p in points], np.float64)
    return get("value"), get("low"), get("high")


def robustness_figure(robust: dict[str, dict], path: Path) -> None:
    """One panel per metric (rows) and distortion kind (columns): value and 95% band against the numeric level,
    the clean value as a dotted line."""
    kinds = robust_kinds(robust) or ["none"]
    fig, axes = plt.subplots(len(ROBUST_METRICS), len(kinds), figsize=(4 * len(kinds), 3 * len(ROBUST_METRICS)),
                             squeeze=False)
    for col, kind in enumerate(kinds):
        levels = robust_levels(robust, kind)
        x = [float(lv) for lv in levels]
        for row, (metric, label) in enumerate(ROBUST_METRICS.items()):
            ax = axes[row, col]
            for name, r in robust.items():
                value, low, high = _ci_arrays([r.get(kind, {}).get(lv, {}).get(metric) for lv in levels])
                line = ax.plot(x, value, marker="o", label=name)[0]
                ax.fill_between(x, low, high, alpha=0.15, color=line.get_color())
                clean = r["clean"].get(metric) or {}
                if clean.get("value") is not None:
                    ax.axhline(clean["value"], linestyle=":", linewidth=0.8, color=line.get_color())
            ax.set_title(f"{kind}: {label}", fontsize=9)
            ax.set_xlabel("level")
    if robust:
        axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def training_figure(train_dir: Path, path: Path) -> None:
    """Loss and validation curves of every detector's DVCLive log (metrics/train/<d>/plots/metrics/...)."""
    logs = sorted(p for p in train_dir.iterdir() if p.is_dir()) if train_dir.is_dir() else []
    series = [s for s in TRAIN_SERIES if s != "val/iou_edited"
              or any((log / f"plots/metrics/{s}.tsv").is_file() for log in logs)]
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, name in zip(axes[0], series):
        for log in logs:
            tsv = log / f"plots/metrics/{name}.tsv"
            if tsv.is_file():
                frame = pd.read_csv(tsv, sep="\t")
                column = name.rsplit("/", 1)[1]
                ax.plot(frame["step"], frame[column] if column in frame else frame.iloc[:, -1], marker=".",
                        label=log.name)
        ax.set_title(TRAIN_SERIES[name])
        ax.set_xlabel("epoch")
    if logs:
        axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def _shown(label: np.ndarray, n_colours: int) -> np.ndarray:
    """Label values without a colour (IGNORE) drawn as authentic."""
    return np.where(label < n_colours, label, 0).astype(np.uint8)


def image_grid(dataset: records.StateDir, rows: list[tuple[str, str]], detectors: dict[str, str],
               predictions: Path, classes: list[str], path: Path, notes: dict[tuple[str, str], str] | None = None
               ) -> None:
    """Rows of image | ground truth | each detector's predicted label map over the image.

    ``rows`` are (image_id, row title); ``detectors`` maps a name to its task (binary maps use
    :data:`BINARY_COLOURS`); ``notes[(image_id, detector)]`` is added to that panel's title.
    """
    colours = class_colours(len(classes))
    cols = 2 + len(detectors)
    height = (PANEL + 0.3) * max(1, len(rows)) + 0.6  # 0.3 in per row for the titles, 0.6 in for the legend
    fig, axes = plt.subplots(max(1, len(rows)), cols, figsize=(PANEL * cols, height), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not rows:
        axes[0, 0].text(0, 0.5, "no test image to show", fontsize=9)
    for r, (image_id, title) in enumerate(rows):
        image = dataset.image(image_id)
        axes[r, 0].imshow(image, interpolation=PIXELS)
        axes[r, 0].set_title(title, fontsize=7)
        truth = _shown(dataset.label(image_id, image.shape[:2]), len(colours))
        axes[r, 1].imshow(overlay(image, truth, colours), interpolation=PIXELS)
        axes[r, 1].set_title("ground truth", fontsize=7)
        for c, (name, task) in enumerate(detectors.items(), start=2):
            pred_path = predictions / name / f"{image_id}.png"
            note = (notes or {}).get((image_id, name))
            axes[r, c].set_title(name + (f" ({note})" if note else ""), fontsize=7)
            if not pred_path.is_file():
                axes[r, c].text(0.1, 0.5, "no prediction", fontsize=7)
                continue
            palette = BINARY_COLOURS if task == "binary" else colours
            predicted = _shown(records.read_gray(pred_path), len(palette))
            axes[r, c].imshow(overlay(image, predicted, palette), interpolation=PIXELS)
    handles = [Patch(color=colours[k], label=name) for k, name in enumerate(classes)]
    if "binary" in detectors.values():
        handles.append(Patch(color=BINARY_COLOURS[1], label="edited (binary detectors)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / height, 1, 1))
    save(fig, path)


def largest_per_generator(dataset: records.StateDir, classes: list[str]) -> list[tuple[str, str]]:
    """Per generator, the test image where its surviving (final-label) area is largest; ties by image id."""
    manifest = dataset.manifest()
    test_ids = sorted(manifest.loc[(manifest["split"] == "test") & (manifest["status"] == records.OK), "image_id"])
    best: dict[int, tuple[int, str]] = {}
    for image_id in test_ids:  # one label at a time: memory stays flat at any test-split size
        if not dataset.label_path(image_id).is_file():
            continue
        counts = np.bincount(records.read_gray(dataset.label_path(image_id)).ravel(), minlength=len(classes))
        for k in range(1, len(classes)):
            if counts[k] > best.get(k, (0, ""))[0]:
                best[k] = (int(counts[k]), image_id)
    return [(best[k][1], f"{classes[k]}: {best[k][1]} ({best[k][0]} px)") for k in sorted(best)]


def worst_images(predictions: Path, detectors: list[str], n: int) -> tuple[list[tuple[str, str]], dict]:
    """The ``n`` test images with the lowest mean per-image IoU over detectors (ties by image id), and each
    detector's IoU on them as panel notes."""
    frames = [records.read_table(predictions / d / "per_image.parquet")[["image_id", "iou"]].assign(detector=d)
              for d in detectors if (predictions / d / "per_image.parquet").is_file()]
    if not frames:
        return [], {}
    scores = pd.concat(frames, ignore_index=True)
    mean = scores.groupby("image_id")["iou"].mean().reset_index()
    # Rounded before ranking so that equal means summed in another order still tie (and fall back on the id).
    mean = mean.assign(iou=mean["iou"].round(6)).sort_values(["iou", "image_id"]).head(n)
    rows = [(i, f"{i}: mean IoU {m:.3f}") for i, m in zip(mean["image_id"], mean["iou"])]
    notes = {(i, d): f"IoU {v:.3f}" for i, d, v in zip(scores["image_id"], scores["detector"], scores["iou"])}
    return rows, notes
