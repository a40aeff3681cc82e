"""``robustness@<detector>``: test-split metrics under each distortion level from params.

Writes ``metrics/robustness/<detector>.json`` ({distortion: {level: metrics}}, level "none" is the
clean baseline) and one plot table per distortion, ``metrics/robustness_curves/<detector>/<distortion>.json``
with rows (level, miou, binary_miou, detection_auc) for DVC's line plots.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg import records
from diffseg.detect import zoo
from diffseg.detect.data import SegmentationSet
from diffseg.detect.distortions import DISTORTIONS
from diffseg.detect.infer import score_dataset
from diffseg.params import Params
from diffseg.runtime import pick_device


def run(params: Params, name: str, metrics_path: Path, plots_dir: Path) -> dict:
    device = pick_device(params.detect.device)
    model, config = zoo.load(Path("models/detectors") / name, device)

    def measure(distort=None) -> dict:
        test = SegmentationSet(Path(params.detect.dataset), ["test"], config["task"], config["image_size"],
                               distort=distort)
        s = score_dataset(model, test, config["classes"], device, params.detect.batch_size)
        return {"miou": s["task"]["miou"], "binary_miou": s["binary"]["miou"],
                "detection_auc": s["binary"]["detection_auc"], "detection_accuracy": s["binary"]["detection_accuracy"]}

    clean = measure()
    result = {"detector": name, "clean": clean}
    plots_dir = records.fresh_dir(plots_dir)
    for kind, levels in [("jpeg", params.robustness.jpeg), ("resize", params.robustness.resize),
                         ("blur", params.robustness.blur), ("noise", params.robustness.noise)]:
        per_level = {str(level): measure(partial(DISTORTIONS[kind], **{_ARG[kind]: level})) for level in levels}
        result[kind] = per_level
        records.write_json(plots_dir / f"{kind}.json", [{"level": float(level), **m} for level, m in per_level.items()])
        print(f"robustness@{name}: {kind}: " + ", ".join(f"{lv}: {m['miou']}" for lv, m in per_level.items()))
    records.write_json(metrics_path, result)
    return result


_ARG = {"jpeg": "quality", "resize": "scale", "blur": "sigma", "noise": "std"}
