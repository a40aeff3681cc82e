"""``edit@t1`` on the offline twins: the Ray executor with two workers against the in-process one.

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_executor.py              # 12 images, 3 repeats
    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_executor.py --images 24 --repeats 5 --no-write

A small project is built in a temporary folder by the stages' own code (offline source, every generator
twin of params.yaml, the annotations planner with every image edited), then ``edit_stage.run`` times
three ways, alternated in each round so that load from other processes hits all alike:

- ``inprocess``: one process, generator after generator;
- ``ray, cold``: a local Ray cluster started for the run and shut down after it (what ``dvc repro`` pays);
- ``ray, warm``: a cluster started before the run (as with ``RAY_ADDRESS``); the actors still start per run.

Every run's output must equal the in-process bytes. Results go into benchmarks/RESULTS.md (this
benchmark's section only).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from bench_common import machine, write_section
from diffseg import params as params_mod
from diffseg import records
from diffseg.edit import stage as edit_stage
from diffseg.twins import stage as twins
from diffseg.propose import stage as propose_stage
from diffseg.source import stage as source_stage

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Ray executor (`benchmarks/bench_executor.py`)"
WAYS = ("inprocess", "ray, cold", "ray, warm")


def project(folder: Path, n_images: int) -> params_mod.Params:
    """Source, twins and plan of turn t1 in ``folder`` (the working folder); the params they used."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["source"]["offline"].update(n_crops=n_images // 2, n_procedural=n_images - n_images // 2)
    data["propose"]["turn_weights"] = [0.0] * (len(data["turns"])) + [1.0]  # every image edited in t1
    data["edit"]["ray"]["num_workers"] = 2
    (folder / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    p = params_mod.load(folder / "params.yaml")
    source_stage.run(p, records.SOURCE_DIR)
    twins.run(p.seed, sorted({g.family for g in p.edit.generators}), Path(p.twins.out))
    propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    return p


def tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def time_way(p: params_mod.Params, way: str, out: Path) -> float:
    import ray

    p.edit.executor = "inprocess" if way == "inprocess" else "ray"
    if way == "ray, warm":
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    try:
        started = time.perf_counter()
        edit_stage.run(p, "t1", out)
        return time.perf_counter() - started
    finally:
        if way == "ray, warm":
            ray.shutdown()


def report(times: dict, n_items: int, n_gens: int, repeats: int, same: bool, host: str, threads: int) -> str:
    base = statistics.median(times["inprocess"])
    lines = [SECTION, "", f"Machine: {host}. `edit@t1` on {n_items} offline images, every one edited, by the "
             f"{n_gens} generator twins of params.yaml (256 px, 3 steps, batch 4). Ray: 2 workers of `num_cpus` 1, "
             f"each running torch with the driver's {threads} thread(s), like the in-process run. Median of "
             f"{repeats} alternated rounds. Regenerate with `PYTHONPATH=src HF_HUB_OFFLINE=1 python "
             f"benchmarks/bench_executor.py`.", "",
             "| executor | median (s) | in-process / this | every run (s) |", "|---|---|---|---|"]
    for way in WAYS:
        med = statistics.median(times[way])
        lines.append(f"| {way} | {med:.1f} | {base / med:.2f}x | {', '.join(f'{t:.1f}' for t in times[way])} |")
    lines += ["", "Reading it:", "",
              f"- Output of every Ray run equal to the in-process bytes (all files and the manifest): "
              f"{'yes' if same else 'NO'}.",
              "- Actors run torch with the driver's thread count, not their CPU share: CPU kernels split their "
              "sums by thread, and one thread instead of two moved pixels by one 8-bit level in the twins' "
              "output. Byte identity therefore costs oversubscription here: two actors with two threads each on "
              "two cores, while the in-process run already keeps both cores busy. On two cores the speed-up "
              "cannot exceed 2x and in practice stays near or below 1x; what Ray can win is overlap of one "
              "actor's generator load and single-threaded work (PNG decoding, scheduler steps, Python) with the "
              "other's compute.",
              "- What it pays: the cold start of a local cluster (GCS, raylet, worker processes), each actor "
              "importing torch and diffusers (the first shard of each actor includes it), each generator loaded "
              "by the actor that runs it, and every batch's inputs and outputs pickled through the object store "
              "(small at 256 px). The twins compute so little that these fixed costs dominate; with real "
              "checkpoints on GPUs (one actor per GPU; the GPU does the arithmetic, so the CPU thread count should "
              "not matter there, not measured here) the "
              "work per batch is seconds to minutes and the executor scales with the number of GPUs.",
              "- The machine is shared (see the load average): read the medians, not single runs."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="offline crops plus procedural scenes (the "
                        "offline source adds its bundled photographs)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md as it is")
    args = parser.parse_args()
    host = machine()
    print(host)
    here = Path.cwd()
    times = {way: [] for way in WAYS}
    same = True
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # stages use repository-relative paths
        try:
            p = project(Path(folder), args.images)
            n_items = int((records.PlanDir(records.turn_dir("t1", "plan")).manifest()["status"] == records.OK).sum())
            for _ in range(args.repeats):
                outputs = {}
                for way in WAYS:
                    out = Path(folder) / way.replace(", ", "-")
                    times[way].append(time_way(p, way, out))
                    outputs[way] = tree(out)
                same &= outputs["ray, cold"] == outputs["inprocess"] == outputs["ray, warm"]
                print({way: round(t[-1], 2) for way, t in times.items()}, "same bytes:", same)
        finally:
            os.chdir(here)
    text = report(times, n_items, len(p.edit.generators), args.repeats, same, host, torch.get_num_threads())
    print(text)
    if not args.no_write:
        write_section(ROOT / "benchmarks" / "RESULTS.md", text)


if __name__ == "__main__":
    main()
