"""DVC's own overhead: a no-op ``dvc repro`` with and without ruamel.yaml's C extension, side by side.

DVC reads ``params.yaml`` once per stage and ``dvc.lock`` several times through ruamel.yaml's "safe"
loader, which is pure Python unless ``ruamel.yaml.clib`` (the ``_ruamel_yaml`` module) is importable.
In one finished workspace (every stage up to date, so nothing is re-run or rewritten) this times, in
alternating order, ``dvc version``, a no-op ``dvc repro`` with the C extension and one with the C
extension hidden (a module of the same name on ``PYTHONPATH`` that refuses to import), and prints the
medians and ratios. ``--profile`` adds where a no-op ``dvc repro`` spends its time (cProfile, the
functions with the most cumulative time)::

    PYTHONPATH=src python benchmarks/bench_dvc_noop.py [--workspace .] [--runs 5] [--profile]

Results go into benchmarks/RESULTS.md (this benchmark's section only).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from bench_common import RESULTS, machine, write_section

SECTION = "## DVC no-op overhead (`benchmarks/bench_dvc_noop.py`)"
HIDE_CLIB = "raise ImportError('hidden by bench_dvc_noop: the pure-Python YAML loader is measured')\n"


def timed(args: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(args)} failed in {cwd}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return elapsed


def up_to_date(cwd: Path, env: dict) -> bool:
    run = subprocess.run(["dvc", "status", "-q"], cwd=cwd, env=env, capture_output=True, text=True)
    return run.returncode == 0


def uses_clib(env: dict) -> bool:
    probe = "import ruamel.yaml.main as m; print(m.CParser is not None)"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip() \
        == "True"


def profile_noop(cwd: Path, top: int) -> str:
    """The ``top`` functions by cumulative time of one in-process no-op ``dvc repro``."""
    from dvc.cli import main as dvc_main

    here = os.getcwd()
    os.chdir(cwd)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(dvc_main, ["repro", "-q"])
    finally:
        os.chdir(here)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    # Paths below site-packages only: the report must not name the machine's folders.
    return out.getvalue().replace(sysconfig.get_paths()["purelib"] + os.sep, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workspace", type=Path, default=Path("."), help="a finished workspace (default: .)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default: 5)")
    parser.add_argument("--profile", action="store_true", help="also profile one no-op dvc repro")
    args = parser.parse_args()
    cwd = args.workspace.resolve()
    with_clib = dict(os.environ, DVC_NO_ANALYTICS="1")
    if not up_to_date(cwd, with_clib):
        sys.exit(f"{cwd}: `dvc status` is not clean; run `dvc repro` there first (this benchmark re-runs nothing)")
    with tempfile.TemporaryDirectory() as hide:
        Path(hide, "_ruamel_yaml.py").write_text(HIDE_CLIB)
        without_clib = dict(with_clib, PYTHONPATH=os.pathsep.join(filter(None, [hide, with_clib.get("PYTHONPATH")])))
        if not uses_clib(with_clib):
            sys.exit("ruamel.yaml.clib is not installed (pip install -r requirements.txt)")
        assert not uses_clib(without_clib)
        times = {"dvc version": [], "no-op dvc repro, C loader": [], "no-op dvc repro, pure Python": []}
        for _ in range(args.runs):  # alternating, so a change of machine load hits every variant alike
            times["dvc version"].append(timed(["dvc", "version"], cwd, with_clib))
            times["no-op dvc repro, C loader"].append(timed(["dvc", "repro"], cwd, with_clib))
            times["no-op dvc repro, pure Python"].append(timed(["dvc", "repro"], cwd, without_clib))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["dvc version"]
    rows = "\n".join(f"| {name} | {m:.2f} | {m / base:.1f}x |" for name, m in medians.items())
    speedup = medians["no-op dvc repro, pure Python"] / medians["no-op dvc repro, C loader"]
    text = f"""{SECTION}

{machine()}; a finished workspace of the offline profile, median of {args.runs} alternating runs.

| command | median s | vs `dvc version` |
|---|---|---|
{rows}

The C loader makes a no-op `dvc repro` {speedup:.2f}x faster.
"""
    if args.profile:
        text += f"\nOne no-op `dvc repro`, by cumulative time:\n\n```\n{profile_noop(cwd, 25)}```\n"
    print(text)
    write_section(RESULTS, text)


if __name__ == "__main__":
    main()
