"""``report``: the benchmark's tables and figures from the metric files, as ``metrics/report.md``.

Reads only ``metrics/`` (dataset, eval, robustness, crossgen, baselines, train logs), so changing a
robustness level re-runs ``robustness@*`` and this stage, nothing else.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from diffseg import records  # noqa: E402
from diffseg.notices import OFFLINE_WARNING  # noqa: E402
from diffseg.params import Params  # noqa: E402
from diffseg.report import tables  # noqa: E402

METRICS = Path("metrics")


def _load_dir(folder: Path) -> dict[str, dict]:
    return {p.stem: records.read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def _save(fig, path: Path) -> None:
    with records.atomic_path(path) as tmp:
        # No timestamp or version metadata, so the PNG bytes are stable between runs.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def robustness_figure(robust: dict[str, dict], path: Path) -> None:
    kinds = ["jpeg", "resize", "blur", "noise"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.2))
    for ax, kind in zip(axes, kinds):
        for name, r in robust.items():
            levels = [float(lv) for lv in r[kind]]
            ax.plot(levels, [r[kind][lv]["miou"] for lv in r[kind]], marker="o", label=name)
            ax.axhline(r["clean"]["miou"], linestyle=":", linewidth=0.8, color=ax.lines[-1].get_color())
        ax.set_title(kind)
        ax.set_xlabel("level")
        ax.set_ylabel("mIoU")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def training_figure(train_dir: Path, path: Path) -> None:
    fig, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    for log in sorted(p for p in train_dir.iterdir() if p.is_dir()) if train_dir.is_dir() else []:
        for ax, tsv in [(loss_ax, log / "plots/metrics/train/loss.tsv"), (miou_ax, log / "plots/metrics/val/miou.tsv")]:
            if tsv.is_file():
                frame = pd.read_csv(tsv, sep="\t")
                ax.plot(frame["step"], frame.iloc[:, -1], marker=".", label=log.name)
    loss_ax.set_title("training loss")
    miou_ax.set_title("validation mIoU")
    for ax in (loss_ax, miou_ax):
        ax.set_xlabel("epoch")
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def run(params: Params, out_path: Path, figures_dir: Path) -> str:
    dataset = records.read_json(METRICS / "dataset.json")["dataset"]
    evals = _load_dir(METRICS / "eval")
    robust = _load_dir(METRICS / "robustness")
    cross = _load_dir(METRICS / "crossgen")
    baselines = _load_dir(METRICS / "baselines")
    figures_dir.mkdir(parents=True, exist_ok=True)
    robustness_figure(robust, figures_dir / "robustness.png")
    training_figure(METRICS / "train", figures_dir / "training.png")
    offline = params.source.kind == "offline"
    text = f"""# Benchmark report

{OFFLINE_WARNING if offline else ""}

Dataset: {dataset['n_images']} images, {dataset['n_edited_images']} edited, {dataset['n_edits']} accepted edits,
edited pixel fraction {dataset['edited_pixel_fraction']}. Detectors trained on the `{params.detect.task}` task at
{params.detect.image_size} px for {params.detect.epochs} epochs; metrics on the test split.

## Binary segmentation (edited vs authentic)
{tables.binary(evals)}

## Attribution (authentic + one class per generator)
{tables.attribution(evals)}

## Robustness
{tables.robustness(robust)}

![robustness](figures/robustness.png)

## Cross-generator generalisation
{tables.crossgen(cross)}

## Segmentation detectors versus image-level classifiers
{tables.classifiers(evals, baselines)}

## Training curves
![training](figures/training.png)
"""
    records.write_bytes(out_path, text.encode())
    print(f"report: {out_path} ({len(evals)} detectors, {len(robust)} robustness runs, {len(cross)} crossgen runs, "
          f"{len(baselines)} baselines)")
    return text
