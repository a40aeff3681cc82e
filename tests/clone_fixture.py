"""A fresh git repository made from the working tree, for tests that run git and DVC commands in it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# DVC outputs and the lock of the last full run stay behind: a clone starts from the code and params.
SKIP_PREFIXES = ("data/", "models/")
SKIP_FILES = {"dvc.lock"}


def tool_env(**extra: str) -> dict:
    """The environment for git, dvc and diffseg subprocesses: this interpreter's tools first, no hub."""
    return dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra)


def sh(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


def commit(repo: Path, env: dict, message: str) -> None:
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo, env)


def copy_working_tree(dest: Path, skip_prefixes: tuple[str, ...] = SKIP_PREFIXES) -> None:
    """Copy the tracked and untracked (not ignored) files of the working tree into ``dest``, without the
    paths under ``skip_prefixes`` and without the lock."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(skip_prefixes) and name not in SKIP_FILES:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def make_clone(dest: Path) -> tuple[Path, dict]:
    """Copy the tracked and untracked (not ignored) files into ``dest`` and commit them on branch main.

    :return: the clone and the environment to run its tools with (its own ``src`` on PYTHONPATH).
    """
    copy_working_tree(dest)
    env = tool_env(PYTHONPATH=str(dest / "src"))
    sh(["git", "init", "-q", "-b", "main"], dest, env)
    commit(dest, env, "clone")
    return dest, env
