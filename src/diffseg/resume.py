"""Work a stage keeps between runs, outside its outputs, so a killed run resumes and a finished one leaves nothing.

DVC deletes a stage's outputs before it runs the stage, so unfinished work cannot wait in the output
folder. It waits in ``data/cache/resume/<stage>/`` (git-ignored, no stage's output): ``edit``'s batch
journal, ``train``'s per-epoch checkpoint, ``source``'s raw COCO folder. A stage removes its folder when
it completes, and with it every parent folder it leaves empty, up to ``data/cache/resume`` itself.

The folder's path is fixed and relative to the repository, never a random temporary one, so no output
can depend on where or when the stage ran.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Iterable

ROOT = Path("data/cache/resume")


def fingerprint(parts: Iterable[bytes | str | Path]) -> str:
    """SHA-256 over ``parts``; a Path contributes its name and its content (absent files count too)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(part.name.encode() + b"\0")
            if part.is_file():
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            else:
                digest.update(b"<absent>")
        else:
            digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0\0")
    return digest.hexdigest()


def scratch(name: str) -> Path:
    """An empty ``data/cache/resume/<name>``: what a killed run left there is removed first."""
    folder = ROOT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def discard(folder: Path) -> None:
    """Remove ``folder`` (below :data:`ROOT`) and every parent it leaves empty, ``ROOT`` included."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    for parent in folder.parents:
        if not parent.is_relative_to(ROOT) or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()
