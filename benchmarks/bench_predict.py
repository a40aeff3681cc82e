"""``diffseg predict`` on a folder of images: one batched run against one invocation per image of the old command.

The old arm is ``diffseg predict IMAGE`` as it was at ``--old-rev`` (one image per call, the model loaded each
time), run from a copy of that revision's ``src``; the new arm is one ``diffseg predict FOLDER`` call. Both run as
fresh processes, so start-up (Python, torch and the model) counts as a user sees it. The new command prints how
long its images took; start-up is the rest of its wall time. The old command's scores are compared with the new
ones (printed to 4 decimals). Needs a trained checkpoint, read only::

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_predict.py \\
        --model /work/main/models/detectors/deeplabv3plus --images data/dataset/images [--n 50] [--old-sample 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "94b0411"  # the last commit whose `diffseg predict` takes one image per call
RUN_CLI = "import sys; from diffseg.cli import main; sys.exit(main(sys.argv[1:]))"


def timed(args: list[str], cwd: Path, src: Path) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", RUN_CLI, *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return wall, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained detector folder (config.json, model.safetensors)")
    parser.add_argument("--images", default="data/dataset/images", help="folder whose first --n images are used")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--old-sample", type=int, default=10, help="images run through the old command, one call each")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--old-rev", default=OLD_REV)
    parser.add_argument("--write", action="store_true", help="replace this benchmark's section of RESULTS.md")
    args = parser.parse_args()
    model = Path(args.model).resolve()
    host = machine()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        folder = work / "images"
        folder.mkdir()
        for path in sorted(Path(args.images).glob("*.png"))[:args.n]:
            shutil.copy2(path, folder / path.name)
        shutil.copy2(ROOT / "params.yaml", work / "params.yaml")
        (work / "models" / "detectors").mkdir(parents=True)
        (work / "models" / "detectors" / model.name).symlink_to(model)
        old_src = work / "old"
        old_src.mkdir()
        archive = subprocess.run(["git", "archive", args.old_rev, "src"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive.stdout, check=True)

        wall, stdout = timed(["predict", "images", "--model", str(model), "--batch-size", str(args.batch_size),
                              "--out", "new"], work, ROOT / "src")
        loop = float(re.search(r"image\(s\) in ([\d.]+) s", stdout).group(1))
        scores = json.loads((work / "new" / "scores.json").read_text())
        n = sum(row["status"] == "ok" for row in scores["images"])
        new_score = {Path(row["path"]).name: row["image_score"] for row in scores["images"]}
        shutil.copy2(work / "new" / "scores.json", ROOT / "benchmarks" / "predict_scores.json")

        old_walls, agree = [], 0
        for path in sorted(folder.iterdir())[:args.old_sample]:
            old_wall, out = timed(["predict", f"images/{path.name}", "--detector", model.name, "--out",
                                   f"old/{path.stem}_pred.png"], work, old_src / "src")
            old_walls.append(old_wall)
            old = float(re.search(r"image score ([\d.]+)", out).group(1))
            agree += abs(old - new_score[path.name]) <= 5e-5
    old_per_image = sum(old_walls) / len(old_walls)
    new_per_image = wall / n
    verdicts = [row["verdict"] for row in scores["images"]]
    text = "\n".join([
        "## Predict on a folder (`benchmarks/bench_predict.py`)",
        "",
        f"Machine: {host}. Detector `{scores['detector']}` ({scores['task']}, {len(scores['classes'])} classes) "
        f"of the offline profile, {n} dataset images of 128 x 128, batch {args.batch_size}, overlays written by both "
        f"arms. The old arm (`diffseg predict IMAGE` at {args.old_rev}) ran once per image on the first "
        f"{len(old_walls)} of them. Regenerate with `PYTHONPATH=src HF_HUB_OFFLINE=1 "
        f"python benchmarks/bench_predict.py --model models/detectors/{model.name} --write`.",
        "",
        "| arm | wall (s) | start-up (s) | per image (s) | images/s | ratio to the old arm (per image) |",
        "|---|---|---|---|---|---|",
        f"| old: one call per image ({len(old_walls)} calls) | {sum(old_walls):.1f} | - | {old_per_image:.2f} | "
        f"{1 / old_per_image:.3f} | 1 |",
        f"| new: one call, {n} images | {wall:.1f} | {wall - loop:.1f} | {new_per_image:.2f} | {n / wall:.3f} "
        f"({n / loop:.3f} after start-up) | {old_per_image / new_per_image:.1f}x faster |",
        "",
        f"Reading it: the old command spends nearly all of its {old_per_image:.1f} s per image starting Python, torch "
        f"and the model; the new one pays that once ({wall - loop:.1f} s) and then runs {n / loop:.2f} images/s, "
        f"most of it drawing the overlays with matplotlib. Scores: {agree} of {len(old_walls)} old-arm scores equal "
        f"the new run's to 4 decimals; {verdicts.count('edited')} of {n} images read as edited. The new run's "
        f"scores file is `benchmarks/predict_scores.json`.",
        "",
    ])
    print(text)
    if args.write:
        write_section(ROOT / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
