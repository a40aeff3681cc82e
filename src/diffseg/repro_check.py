"""``diffseg check-metrics``: does a reproduction give the committed numbers?

After ``dvc repro`` the workspace holds freshly written metric files; git holds the committed ones. This
compares them value by value: every JSON file under the ``metrics:`` entries of ``dvc.yaml`` plus
``metrics/dataset.json``. It exits 1 and lists each differing value with both numbers when anything
differs beyond :data:`ABS_TOL`, or when a metric file exists on one side only::

    dvc repro && diffseg check-metrics              # workspace against HEAD
    diffseg check-metrics --rev v1.0                # against another commit
    diffseg check-metrics --reference /tmp/golden   # against a folder laid out like the repository
"""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from diffseg.errors import UserError

# The one tolerance of the check. Floats may differ by this much in absolute value; ints, bools, strings
# and nulls must be equal. The offline profile reproduces bit for bit on one machine and the writers
# round to six decimals, so 1e-6 admits one rounding step (a last-bit float difference that lands on the
# other side of a rounding boundary) and nothing a real change could hide in.
ABS_TOL = 1e-6

# Always compared, even if dvc.yaml stopped declaring it: the dataset statistics of the generation half.
ALWAYS = ("metrics/dataset.json",)


@dataclass(frozen=True)
class Difference:
    path: str  # metric file, repository-relative
    key: str  # flattened key inside it ("task.per_class_iou.sd2"); "" for the whole file
    committed: Any
    reproduced: Any

    def __str__(self) -> str:
        where = f"{self.path} {self.key}" if self.key else self.path
        return f"{where}: committed {_show(self.committed)}, reproduced {_show(self.reproduced)}"


class _Marker:
    """Stands for a whole file, or for its absence, where one side lacks a file or a key."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


MISSING = _Marker("(missing)")
PRESENT = _Marker("(present)")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, _Marker) else json.dumps(value)


def declared_entries(repo: Path) -> list[str]:
    """The ``metrics:`` entries of ``dvc.yaml`` (files or folders), plus :data:`ALWAYS`."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text()) or {}
    entries = [str(e) for e in spec.get("metrics", [])]
    return entries + [p for p in ALWAYS if p not in entries]


def workspace_files(repo: Path, entries: list[str]) -> dict[str, Path]:
    """Repository-relative name -> file, for every JSON file the entries name in a folder tree."""
    found = {}
    for entry in entries:
        path = repo / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json")) if path.is_dir() else []
        for file in candidates:
            if file.suffix == ".json":
                found[file.relative_to(repo).as_posix()] = file
    return found


def committed_files(repo: Path, rev: str, entries: list[str]) -> list[str]:
    """The JSON files under the entries in the commit ``rev``."""
    listing = _git(repo, "ls-tree", "-r", "--name-only", rev, "--", *entries)
    return sorted(name for name in listing.splitlines() if name.endswith(".json"))


def _git(repo: Path, *args: str) -> str:
    run = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if run.returncode != 0:
        raise UserError(f"git {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaf values keyed by dotted paths; list items as ``name[i]``."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def same(committed: Any, reproduced: Any, tol: float = ABS_TOL) -> bool:
    """Exact for ints, bools, strings and nulls; floats within ``tol`` (NaN equals NaN)."""
    numbers = (int, float)
    if isinstance(committed, bool) or isinstance(reproduced, bool):
        return type(committed) is type(reproduced) and committed == reproduced
    if isinstance(committed, int) and isinstance(reproduced, int):
        return committed == reproduced
    if isinstance(committed, numbers) and isinstance(reproduced, numbers):
        if math.isnan(committed) or math.isnan(reproduced):
            return math.isnan(committed) and math.isnan(reproduced)
        return abs(committed - reproduced) <= tol
    return type(committed) is type(reproduced) and committed == reproduced


def compare_file(path: str, committed: Any, reproduced: Any, tol: float = ABS_TOL) -> list[Difference]:
    old, new = dict(flatten(committed)), dict(flatten(reproduced))
    diffs = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if a is MISSING or b is MISSING or not same(a, b, tol):
            diffs.append(Difference(path, key, a, b))
    return diffs


def check(repo: Path, rev: str = "HEAD", reference: Path | None = None) -> tuple[list[Difference], int]:
    """Differences between the workspace's metric files and the committed (or reference) ones.

    :param repo: the repository root (holds ``dvc.yaml`` and the reproduced ``metrics/``).
    :param rev: the commit holding the expected metrics; ignored when ``reference`` is given.
    :param reference: a folder laid out like the repository root, holding the expected metric files.
    :return: the differences, and how many metric files were compared.
    """
    entries = declared_entries(repo)
    reproduced = workspace_files(repo, entries)
    if reference is not None:
        expected = set(workspace_files(reference, entries))

        def read_expected(name: str) -> str:
            return (reference / name).read_text()
    else:
        expected = set(committed_files(repo, rev, entries))

        def read_expected(name: str) -> str:
            return _git(repo, "show", f"{rev}:{name}")

    diffs = []
    names = sorted(expected | reproduced.keys())
    for name in names:
        if name not in reproduced or name not in expected:
            diffs.append(Difference(name, "", PRESENT if name in expected else MISSING,
                                    PRESENT if name in reproduced else MISSING))
            continue
        diffs += compare_file(name, json.loads(read_expected(name)), json.loads(reproduced[name].read_text()))
    return diffs, len(names)


def main(repo: Path, rev: str = "HEAD", reference: Path | None = None) -> int:
    """Print the outcome; 0 when every metric matches, 1 otherwise."""
    diffs, n_files = check(repo, rev, reference)
    against = str(reference) if reference else rev
    if not n_files:
        raise UserError("no metric files found: run `dvc repro` first, or check dvc.yaml's `metrics:`")
    if diffs:
        print(f"check-metrics: {len(diffs)} value(s) differ from {against} (floats: absolute tolerance "
              f"{ABS_TOL:g}; everything else exact):")
        for diff in diffs:
            print(f"  {diff}")
        return 1
    print(f"check-metrics: {n_files} metric files match {against} (floats within {ABS_TOL:g}, the rest exact)")
    return 0
