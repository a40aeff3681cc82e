"""DVC's own overhead: what a no-op ``dvc repro`` of a finished workspace costs, part by part, side by side.

A finished workspace (every stage up to date) is copied into a temporary folder (DVC runs only in the copy;
``--finished`` names it, e.g. a checkout after a full ``dvc repro``). In alternating order this times
``dvc version`` and a no-op ``dvc repro`` in five arms: as the project runs it (ruamel.yaml's C loader,
``ruamel.yaml.clib``); with the C loader hidden (a module of the same name on ``PYTHONPATH`` that refuses
to import); and with DVC patched (benchmarks/dvc_memo.py, loaded by a ``sitecustomize.py``) to walk each
directory once per process, to parse ``params.yaml`` once per process, and both: what those two DVC
behaviours cost. ``--profile`` adds where one in-process no-op ``dvc repro`` spends its wall time (no
profiler) and how often each directory is walked::

    PYTHONPATH=src python benchmarks/bench_dvc_noop.py --finished PATH [--runs 5] [--profile]

Results go into benchmarks/RESULTS.md (this benchmark's section only).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import RESULTS, machine, write_section

SECTION = "## DVC no-op overhead (`benchmarks/bench_dvc_noop.py`)"
HIDE_CLIB = "raise ImportError('hidden by bench_dvc_noop: the pure-Python YAML loader is measured')\n"
# Loaded by Python at start-up from PYTHONPATH: installs the memos named in BENCH_DVC_MEMO.
SITECUSTOMIZE = ("import os\nimport dvc_memo\n"
                 "dvc_memo.install(set(filter(None, os.environ['BENCH_DVC_MEMO'].split(','))))\n")
# A checkout's own environment and caches are not part of the workspace DVC looks at.
NOT_COPIED = shutil.ignore_patterns(".venv", ".pytest_cache", "__pycache__")


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


def copy_workspace(finished: Path, into: Path) -> Path:
    """A copy of ``finished`` (its git folder, DVC cache and outputs included) that DVC may lock and write."""
    copy = into / "workspace"
    shutil.copytree(finished, copy, symlinks=True, ignore=NOT_COPIED)
    for stale in ("lock", "rwlock", "rwlock.lock"):  # a killed run's locks must not block the copy
        (copy / ".dvc" / "tmp" / stale).unlink(missing_ok=True)
    return copy


def arms(base: dict, shims: Path) -> dict[str, dict]:
    """The environment of each ``dvc repro`` arm."""
    path = os.pathsep.join(filter(None, [str(shims / "memo"), str(Path(__file__).parent), base.get("PYTHONPATH")]))
    hidden = os.pathsep.join(filter(None, [str(shims / "hide_clib"), base.get("PYTHONPATH")]))
    return {"no-op dvc repro, C loader (as the project runs it)": base,
            "no-op dvc repro, pure-Python YAML": dict(base, PYTHONPATH=hidden),
            "no-op dvc repro, DVC walks each directory once (as dep, as out)":
                dict(base, PYTHONPATH=path, BENCH_DVC_MEMO="dirs"),
            "no-op dvc repro, DVC parses params.yaml once": dict(base, PYTHONPATH=path, BENCH_DVC_MEMO="params"),
            "no-op dvc repro, both": dict(base, PYTHONPATH=path, BENCH_DVC_MEMO="dirs,params")}


class Breakdown:
    """Wall-clock time per part of one in-process DVC command (no profiler), and each directory's walks."""

    PARTS = {  # label -> (module, attribute path); nested parts are indented
        "dvc.yaml + dvc.lock parse, stages built (Index.from_repo)": ("dvc.repo.index", "Index.from_repo"),
        "stage graph (build_graph)": ("dvc.repo.graph", "build_graph"),
        "stage status (Stage.changed)": ("dvc.stage", "Stage.changed"),
        "  directory walks + hashes (_build_tree)": ("dvc_data.hashfile.build", "_build_tree"),
        "    state database lookups (State.get_many)": ("dvc_data.hashfile.state", "State.get_many"),
        "  params.yaml reads (read_param_file)": ("dvc.dependency.param", "read_param_file"),
        "YAML parses, all files (parse_yaml)": ("dvc.utils.serialize._yaml", "parse_yaml"),
        "rwlock file edits (_edit_rwlock)": ("dvc.rwlock", "_edit_rwlock"),
    }

    WALKS = "  directory walks + hashes (_build_tree)"

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {label: 0.0 for label in self.PARTS}
        self.calls: dict[str, int] = {label: 0 for label in self.PARTS}
        self.walks: dict[str, list] = {}  # path -> [walks, files in the last walk]
        self._undo: list = []

    def _patch(self, label: str, module: str, attr: str) -> None:
        owner = importlib.import_module(module)
        *parents, name = attr.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)
        generator = inspect.isgeneratorfunction(original)
        context = hasattr(original, "__wrapped__") and inspect.isgeneratorfunction(original.__wrapped__)
        if context:  # a contextmanager: time the whole with-block (its body is a few dict operations)
            original_gen = original.__wrapped__

            @contextlib.contextmanager
            def patched(*args, **kwargs):
                yield from self._timed_generator(label, original_gen(*args, **kwargs))
        elif generator:
            def patched(*args, **kwargs):
                return (yield from self._timed_generator(label, original(*args, **kwargs)))
        else:
            depth = [0]

            def patched(*args, **kwargs):
                depth[0] += 1
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    self.calls[label] += 1
                    if not depth[0]:  # recursive calls count once
                        self.seconds[label] += time.perf_counter() - start
        setattr(owner, name, patched)
        self._undo.append(lambda: setattr(owner, name, original))

    def _timed_generator(self, label: str, gen):
        self.calls[label] += 1
        while True:
            start = time.perf_counter()
            try:
                value = next(gen)
            except StopIteration as stop:
                self.seconds[label] += time.perf_counter() - start
                return stop.value
            self.seconds[label] += time.perf_counter() - start
            yield value

    def _count_walks(self, root: Path) -> None:
        import dvc_data.hashfile.build as build

        walk_files = build._walk_files

        def counted(fs, path, ignore=None):
            entry = self.walks.setdefault(os.path.relpath(path, root), [0, 0])
            entry[0] += 1
            entry[1] = 0
            for top, files in walk_files(fs, path, ignore=ignore):
                entry[1] += len(files)
                yield top, files

        build._walk_files = counted
        self._undo.append(lambda: setattr(build, "_walk_files", walk_files))

    def run(self, cwd: Path, argv: list[str]) -> float:
        """Run ``dvc ARGV`` in ``cwd`` in this process; returns the seconds of DVC's main()."""
        from dvc.cli import main as dvc_main

        for label, (module, attr) in self.PARTS.items():
            self._patch(label, module, attr)
        self._count_walks(cwd)
        here = os.getcwd()
        os.chdir(cwd)
        try:
            start = time.perf_counter()
            if dvc_main(argv) != 0:
                sys.exit(f"dvc {' '.join(argv)} failed in {cwd}")
            return time.perf_counter() - start
        finally:
            os.chdir(here)
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()

    def report(self, total: float) -> str:
        rows = [f"| DVC main() of `dvc repro`, all of it | {total:.2f} | 1 |"]
        rows += [f"| {label.replace('  ', '&nbsp;&nbsp;')} | {self.seconds[label]:.2f} | {self.calls[label]} |"
                 for label in self.PARTS]
        walks = sorted(self.walks.items(), key=lambda item: -item[1][0] * item[1][1])
        files = sum(n * f for n, f in self.walks.values())
        per_visit = 1e6 * self.seconds[self.WALKS] / max(files, 1)
        top = "\n".join(f"| `{path}` | {n} | {f} | {n * f} |" for path, (n, f) in walks if n * f >= 100)
        return (f"| part | s | calls |\n|---|---|---|\n" + "\n".join(rows) +
                f"\n\nDirectory walks: {sum(n for n, _ in self.walks.values())} of {len(self.walks)} directories, "
                f"{files} file visits ({per_visit:.0f} us each, "
                f"walk + ignore match + state lookup + tree build). Those with 100 visits or more:\n\n"
                f"| directory | walks | files | file visits |\n|---|---|---|---|\n{top}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--finished", type=Path, required=True,
                        help="a finished workspace (`dvc status` clean); it is copied, never run in")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (default: 5)")
    parser.add_argument("--profile", action="store_true", help="also break one no-op dvc repro down")
    args = parser.parse_args()
    base = dict(os.environ, DVC_NO_ANALYTICS="1")
    if not uses_clib(base):
        sys.exit("ruamel.yaml.clib is not installed (pip install -r requirements.txt)")
    with tempfile.TemporaryDirectory() as tmp:
        shims = Path(tmp)
        (shims / "hide_clib").mkdir()
        (shims / "hide_clib" / "_ruamel_yaml.py").write_text(HIDE_CLIB)
        (shims / "memo").mkdir()
        (shims / "memo" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        envs = arms(base, shims)
        assert not uses_clib(envs["no-op dvc repro, pure-Python YAML"])
        cwd = copy_workspace(args.finished.resolve(), shims)
        if not up_to_date(cwd, base):
            sys.exit(f"{args.finished}: `dvc status` is not clean; finish it with `dvc repro` first "
                     "(this benchmark re-runs nothing)")
        header = machine()
        times = {"dvc version": [], **{name: [] for name in envs}}
        for _ in range(args.runs):  # alternating, so a change of machine load hits every arm alike
            times["dvc version"].append(timed(["dvc", "version"], cwd, base))
            for name, env in envs.items():
                times[name].append(timed(["dvc", "repro"], cwd, env))
        if not up_to_date(cwd, base):
            sys.exit("the copy is no longer up to date after the runs: an arm changed something")
        breakdown, total = Breakdown(), 0.0
        if args.profile:
            total = breakdown.run(cwd, ["repro", "-q"])
    load_end = os.getloadavg()[0]
    medians = {name: statistics.median(values) for name, values in times.items()}
    base_s = medians["dvc version"]
    rows = "\n".join(f"| {name} | {m:.2f} | {min(times[name]):.2f}-{max(times[name]):.2f} | {m / base_s:.1f}x |"
                     for name, m in medians.items())
    text = f"""{SECTION}

{header}, at the end {load_end:.1f}; a copy of a finished workspace of the offline profile, median of
{args.runs} alternating runs. The memo arms patch DVC (benchmarks/dvc_memo.py): they measure what DVC's own
behaviour costs and are exact only for a no-op run; the project does not use them.

| command | median s | range s | vs `dvc version` |
|---|---|---|---|
{rows}
"""
    if args.profile:
        text += f"\nOne in-process no-op `dvc repro`, wall time per part (nested parts indented):\n\n" \
                f"{breakdown.report(total)}"
    print(text)
    write_section(RESULTS, text)


if __name__ == "__main__":
    main()
