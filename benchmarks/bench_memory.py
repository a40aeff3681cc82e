"""Peak memory of each stage at two dataset sizes: does it stay flat as the images grow in number?

Builds the offline source with 64 and with 512 images in two temporary workspaces (same settings
otherwise: one turn, two generator twins, small images, one training epoch), runs every stage through
the project's own command (``diffseg source``, ``propose t1``, ``edit t1``, ``filter t1``,
``assemble``, ``train segformer``, ``evaluate segformer``), each in a fresh process, and reads that
process's peak resident set size from the kernel (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a
one-command wrapper, so no sampling can miss a short peak). The target: the 512/64 ratio of every
stage at most 1.25. Run from the repository root, about fifteen minutes on two cores (most of it
the 512-image edit)::

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_memory.py

Results go into benchmarks/RESULTS.md (this benchmark's section only).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench_common import RESULTS, machine, write_section
from diffseg import records

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Peak memory per stage against dataset size (`benchmarks/bench_memory.py`)"
SIZES = (64, 512)
N_PHOTOS = 8  # the bundled photographs the offline source always includes
STAGES = [["source"], ["propose", "t1"], ["edit", "t1"], ["filter", "t1"], ["assemble"], ["train", "segformer"],
          ["evaluate", "segformer"]]
TARGET = 1.25
# The child's own peak, in KiB on Linux; the wrapper holds nothing but the command line.
WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def settings(n_images: int) -> dict:
    """Overrides of the repository's params: everything but the image count is the same for both sizes."""
    n_crops = n_images // 8
    generators = [g for g in yaml.safe_load((ROOT / "params.yaml").read_text())["edit"]["generators"]
                  if g["name"] in ("sd2", "sdxl")]
    for g in generators:
        g["resolution"] = 64  # the edit's per-image cost, not its memory, grows with it
    return {
        "source": {"offline": {"n_crops": n_crops, "n_procedural": n_images - N_PHOTOS - n_crops, "size": 96}},
        "twins": {"families": ["sd2", "sdxl"]},
        "final_state": "data/turns/t1/state", "propose": {"turn_weights": [0.2, 0.8]},
        "edit": {"generators": generators},
        "detect": {"image_size": 64, "epochs": 1, "batch_size": 8},
        "crossgen": {"held_out": []},
    }


def workspace(folder: Path, n_images: int, twins: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_params  # the tests' way to shrink the real params

    (folder / "models").mkdir(parents=True)
    path = write_params(folder, settings(n_images))
    params = yaml.safe_load(path.read_text())
    params["turns"] = {"t1": {"prev": "data/source"}}  # overrides merge into dicts; one turn replaces three
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "models" / "twins").symlink_to(twins)


def peak_mb(args: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Run ``diffseg <args>`` in a fresh process; its peak RSS in MB and its wall time in seconds."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "diffseg.cli", *args], cwd=cwd,
                         env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"diffseg {' '.join(args)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return int(run.stderr.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


def measure(folder: Path, env: dict) -> dict:
    rows = {}
    for args in STAGES:
        mb, seconds = peak_mb(args, folder, env)
        rows[" ".join(args)] = {"peak_mb": mb, "seconds": seconds}
        print(f"  {' '.join(args):20s} peak {mb:8.1f} MB  {seconds:6.1f} s", flush=True)
    rows["n_images"] = len(records.StateDir(folder / "data" / "source").manifest())
    rows["n_dataset"] = len(records.StateDir(folder / "data" / "dataset").manifest())
    return rows


def report(results: dict, host: str) -> str:
    small, large = (results[n] for n in SIZES)
    lines = [SECTION, "",
             f"Machine: {host}. Offline source of {SIZES[0]} and {SIZES[1]} images at 96 px, one turn, twins of sd2 "
             "and sdxl at 64 px, SegFormer (mit_b0) one epoch at 64 px; each stage a fresh `diffseg` "
             "process, its peak RSS from `getrusage`. Regenerate with `PYTHONPATH=src HF_HUB_OFFLINE=1 python "
             "benchmarks/bench_memory.py`.", "",
             f"| stage | peak RSS, {SIZES[0]} images (MB) | peak RSS, {SIZES[1]} images (MB) | ratio | "
             f"time {SIZES[0]} (s) | time {SIZES[1]} (s) |",
             "|---|---|---|---|---|---|"]
    for args in STAGES:
        name = " ".join(args)
        a, b = small[name], large[name]
        lines.append(f"| `{name}` | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} | {b['peak_mb'] / a['peak_mb']:.2f} | "
                     f"{a['seconds']:.1f} | {b['seconds']:.1f} |")
    worst = max(large[" ".join(s)]["peak_mb"] / small[" ".join(s)]["peak_mb"] for s in STAGES)
    lines += ["", f"Source images: {small['n_images']} and {large['n_images']}; dataset images: "
              f"{small['n_dataset']} and {large['n_dataset']}."]
    lines += ["", f"Largest ratio {worst:.2f} (target <= {TARGET}). Every stage reads and writes one image (or "
              "one batch) at a time; what grows with the count is tabular (manifests, per-image scores), a few "
              "hundred bytes an image. Most of each peak is the interpreter, torch and the models, which do not grow."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md as it is")
    args = parser.parse_args()
    host = machine()
    print(host)
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        twins = Path(tmp) / "twins"
        subprocess.run([sys.executable, "-c", "from diffseg.twins import stage as twins; "
                        f"twins.run(0, ['sd2', 'sdxl'], __import__('pathlib').Path({str(twins)!r}))"],
                       env=env, check=True)
        for n in SIZES:
            folder = Path(tmp) / f"n{n}"
            workspace(folder, n, twins)
            print(f"{n} images:", flush=True)
            results[n] = measure(folder, env)
    text = report(results, host)
    print(text)
    if not args.no_write:
        write_section(RESULTS, text)


if __name__ == "__main__":
    main()
