"""``report``: the benchmark's tables and figures as ``metrics/report.md`` and ``metrics/figures/``, and the
detectors' ranking (paired bootstrap, :mod:`diffseg.report.ranking`) as ``metrics/ranking.json``.

Reads ``metrics/`` (dataset, eval, robustness, crossgen, baselines, train logs), the per-image predictions
``data/predictions/<detector>/`` and the dataset (``detect.dataset``) for the qualitative and failure
figures. It writes nothing anywhere else, so a changed robustness level re-runs ``robustness@*`` and this
stage only.
"""
from __future__ import annotations

from pathlib import Path

from diffseg import records
from diffseg.notices import OFFLINE_WARNING, offline_run
from diffseg.params import Params
from diffseg.report import figures, ranking, tables
from diffseg.seeding import keyed_seed

METRICS = Path("metrics")
PREDICTIONS = Path("data/predictions")
N_FAILURES = 4  # rows of the failure figure


def _load_dir(folder: Path) -> dict[str, dict]:
    return {p.stem: records.read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def detector_lines(evals: dict[str, dict]) -> str:
    """One line per detector: model, task, the epoch kept on validation and the test split it was scored on."""
    return "\n".join(
        f"- `{n}`: {e['arch']} / {e['encoder']}, {e['task']} task, kept epoch {e['kept_epoch']}; test split "
        f"{e['test_images']} images: {e['test_edited']} edited, {e['test_negatives']} never edited"
        for n, e in evals.items()) or "_No evaluated detector._"


def _intervals(evals: dict[str, dict]) -> str:
    boot = next(iter(evals.values()), {}).get("bootstrap")
    if not boot:
        return ""
    return (f"Every metric reads `value [low, high]`: the {boot['level']:.0%} percentile bootstrap interval over "
            f"test images ({boot['resamples']} resamples, seed {boot['seed']}); `-` where undefined.")


def draw_figures(dataset: records.StateDir, classes: list[str], evals: dict[str, dict], robust: dict[str, dict],
                 figures_dir: Path) -> None:
    """Robustness and training curves, the per-generator examples and the worst test images."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures.robustness_figure(robust, figures_dir / "robustness.png")
    figures.training_figure(METRICS / "train", figures_dir / "training.png")
    tasks = {n: e["task"] for n, e in evals.items()}
    figures.image_grid(dataset, figures.largest_per_generator(dataset, classes), tasks, PREDICTIONS, classes,
                       figures_dir / "qualitative.png")
    worst, notes = figures.worst_images(PREDICTIONS, list(evals), N_FAILURES)
    figures.image_grid(dataset, worst, tasks, PREDICTIONS, classes, figures_dir / "failures.png", notes)


def run(params: Params, out_path: Path, figures_dir: Path, ranking_path: Path) -> str:
    dataset = records.read_json(METRICS / "dataset.json")["dataset"]
    evals = _load_dir(METRICS / "eval")
    ranked = ranking.compute(PREDICTIONS, list(evals), keyed_seed(params.seed, "report", "ranking"))
    records.write_json(ranking_path, ranked)
    robust = _load_dir(METRICS / "robustness")
    cross = _load_dir(METRICS / "crossgen")
    baselines = _load_dir(METRICS / "baselines")
    data = records.StateDir(params.detect.dataset)
    classes = records.read_json(data.root / "classes.json")
    draw_figures(data, classes, evals, robust, figures_dir)
    offline = offline_run(params)
    text = f"""# Benchmark report

{OFFLINE_WARNING if offline else ""}

Dataset: {dataset['n_images']} images, {dataset['n_edited_images']} edited, {dataset['n_edits']} accepted edits,
edited pixel fraction {dataset['edited_pixel_fraction']}. Detectors trained at {params.detect.image_size} px for
up to {params.detect.epochs} epochs, the epoch with the best validation IoU (edited) kept; metrics on the test split.

{_intervals(evals)}

{detector_lines(evals)}

## Ranking

The detectors ranked on the binary view, with a paired bootstrap over the {ranked['test_images']} common test
images ({ranked['resamples']} resamples, seed {ranked['seed']}; `metrics/ranking.json`): every resample scores
every detector on the same images. Rank interval: the {ranked['level']:.0%} range of a detector's rank over
resamples; difference to the next: the paired difference to the detector ranked below, with its interval; told
apart: that interval excludes 0 (otherwise this test split does not support their order).

{tables.ranking(ranked, evals)}

## Binary segmentation (edited vs authentic)

{tables.binary(evals)}

## Attribution (authentic + one class per generator)

{tables.attribution(evals)}

## Breakdowns (binary view)

{tables.breakdowns(evals, classes[1:])}

## Robustness

{tables.robustness(robust)}

![robustness](figures/robustness.png)

## Cross-generator generalisation

{tables.crossgen(cross)}

## Segmentation detectors versus image-level classifiers

{tables.classifiers(evals, baselines)}

## Qualitative examples

Per generator, the test image with the largest surviving area of that generator: image, ground truth, and each
detector's predicted label map.

![qualitative](figures/qualitative.png)

## Failure cases

The {N_FAILURES} test images with the lowest mean per-image IoU (edited) over detectors.

![failures](figures/failures.png)

## Training curves

![training](figures/training.png)
"""
    records.write_bytes(out_path, text.encode())
    print(f"report: {out_path} ({len(evals)} detectors, {len(robust)} robustness runs, {len(cross)} crossgen runs, "
          f"{len(baselines)} baselines)")
    return text
