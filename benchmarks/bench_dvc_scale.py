"""DVC bookkeeping at paper scale: 30,000 small files as one output folder, and as 30 shard folders.

In a temporary git + DVC repository, writes the same 30,000 PNG-like blobs (2-4 KB, random, so
every file hashes differently) twice: once as ``flat/`` (one tracked folder, as ``data/dataset``
is today) and once as ``sharded/s00`` .. ``s29`` (thirty tracked folders of 1,000). For each
layout it times ``dvc add`` (hashing and caching), a no-op ``dvc status``, and, after one file
changed, ``dvc status`` and ``dvc add`` of the folder holding it (what an incremental run pays with
one stage per folder). Optionally it also times a no-op ``dvc status`` and ``dvc repro`` in a
finished workspace (``--workspace``; skipped unless that workspace is up to date, so nothing there
is re-run or rewritten)::

    PYTHONPATH=src python benchmarks/bench_dvc_scale.py [--workspace PATH]

Results go into benchmarks/RESULTS.md (this benchmark's section only).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_common import RESULTS, machine, write_section

SECTION = "## DVC at paper scale (`benchmarks/bench_dvc_scale.py`)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def dvc_version() -> str:
    return subprocess.run(["dvc", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return seconds, run.stdout


def write_blobs(n_files: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2048, 4097, n_files)
    return [PNG_MAGIC + rng.bytes(int(size) - len(PNG_MAGIC)) for size in sizes]


def layout(repo: Path, blobs: list[bytes], n_shards: int) -> list[str]:
    """Write the blobs as ``flat/`` (n_shards 1) or ``sharded/sNN/``; return the folders to track."""
    per = -(-len(blobs) // n_shards)
    folders = ["flat"] if n_shards == 1 else [f"sharded/s{k:02d}" for k in range(n_shards)]
    for k, folder in enumerate(folders):
        (repo / folder).mkdir(parents=True)
        for i in range(k * per, min((k + 1) * per, len(blobs))):
            (repo / folder / f"{i:012d}.png").write_bytes(blobs[i])
    return folders


def measure(repo: Path, folders: list[str]) -> dict:
    add, _ = timed(["dvc", "add", *folders], repo)
    timed(["git", "add", "-A"], repo)
    timed(["git", "commit", "-qm", f"track {folders[0]}"], repo)
    status = [timed(["dvc", "status", *[f"{f}.dvc" for f in folders]], repo)[0] for _ in range(3)]
    changed = repo / folders[-1] / sorted(os.listdir(repo / folders[-1]))[0]
    changed.write_bytes(PNG_MAGIC + b"changed" + changed.read_bytes()[15:])
    dirty, out = timed(["dvc", "status", *[f"{f}.dvc" for f in folders]], repo)
    assert "modified" in out, out
    readd, _ = timed(["dvc", "add", folders[-1]], repo)  # what the one stage whose output changed pays
    return {"add": add, "status": float(np.median(status)), "dirty_status": dirty, "readd": readd}


def workspace_noop(path: Path) -> dict | None:
    """No-op ``dvc status`` and ``dvc repro`` timings of a finished workspace, or None if it is not up to date."""
    status, out = timed(["dvc", "status"], path)
    if "up to date" not in out:
        print(f"{path}: not up to date, skipped:\n{out[:500]}")
        return None
    repro, out = timed(["dvc", "repro"], path)
    n_stages = out.count("didn't change, skipping")
    return {"status": status, "repro": repro, "stages": n_stages}


def report(results: dict, n_files: int, host: str, version: str, noop: dict | None) -> str:
    lines = [SECTION, "",
             f"Machine: {host}; DVC {version}, local cache (copy links). {n_files:,} random 2-4 KB blobs. "
             "Regenerate with `PYTHONPATH=src python benchmarks/bench_dvc_scale.py --workspace .` in a finished "
             "workspace.", "",
             "| layout | `dvc add` (hash + cache) (s) | no-op `dvc status` (s, median of 3) | `dvc status` after one "
             "file changed (s) | `dvc add` of the changed folder (s) |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['add']:.1f} | {r['status']:.2f} | {r['dirty_status']:.2f} | {r['readd']:.1f} |")
    if noop:
        lines += ["", f"Finished offline workspace ({noop['stages']} stages): no-op `dvc status` "
                  f"{noop['status']:.1f} s, no-op `dvc repro` {noop['repro']:.1f} s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30_000)
    parser.add_argument("--shards", type=int, default=30)
    parser.add_argument("--workspace", type=Path, help="a finished workspace: time its no-op status and repro")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md as it is")
    args = parser.parse_args()
    host, version = machine(), dvc_version()
    print(host, "| DVC", version)
    blobs = write_blobs(args.files)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        per_shard = args.files // args.shards
        layouts = ((f"one folder of {args.files:,}", 1), (f"{args.shards} folders of {per_shard:,}", args.shards))
        for name, shards in layouts:
            repo = Path(tmp) / f"repo{shards}"
            repo.mkdir()
            for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "b@b"],
                        ["git", "config", "user.name", "b"], ["dvc", "init", "-q"],
                        ["dvc", "config", "core.analytics", "false"]):
                timed(cmd, repo)
            folders = layout(repo, blobs, shards)
            results[name] = measure(repo, folders)
            print(name, {k: round(v, 2) for k, v in results[name].items()}, flush=True)
            shutil.rmtree(repo)
    noop = workspace_noop(args.workspace) if args.workspace else None
    if noop:
        print("workspace", noop)
    text = report(results, args.files, host, version, noop)
    print(text)
    if not args.no_write:
        write_section(RESULTS, text)


if __name__ == "__main__":
    main()
