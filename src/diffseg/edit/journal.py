"""Progress of ``edit@<turn>`` kept outside its output, so a killed run resumes where it stopped.

Finished work waits in ``data/cache/resume/edit-<turn>/<fingerprint>/`` (:mod:`diffseg.resume`):
``items/`` holds the finished items' files, laid out like a state folder, and ``batches/<index>.json``
the manifest rows of each finished batch. A batch's JSON is written last, atomically, so a batch
counts as finished only once all its files are in place; a kill loses at most the batches in flight.

The fingerprint covers everything the output depends on (the files the stage reads, the generator
settings, the code and library versions), so a journal from other inputs is never reused: opening a
journal removes every other fingerprint's. Batches that failed with a generator error (e.g. out of
memory) are journaled for the run's own manifest but run again on a restart.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from diffseg import records, resume


class Journal:
    """The finished batches of one stage run, keyed by the fingerprint of its inputs."""

    def __init__(self, stage: str, key: str):
        home = resume.ROOT / stage
        self.root = home / key[:32]
        if home.is_dir():
            for old in home.iterdir():  # stale: other inputs, other code
                if old != self.root:
                    shutil.rmtree(old)
        self.items = records.StateDir(self.root / "items")

    def _batch(self, index: int) -> Path:
        return self.root / "batches" / f"{index:06d}.json"

    def finished(self) -> set[int]:
        """Indexes of the batches a restart may reuse."""
        folder = self.root / "batches"
        if not folder.is_dir():
            return set()
        return {int(p.stem) for p in folder.glob("*.json") if not records.read_json(p)["retry"]}

    def record(self, index: int, rows: list[dict], retry: bool) -> None:
        """Mark batch ``index`` finished (after its files are written); ``retry``: run it again on a restart."""
        records.write_json(self._batch(index), {"rows": rows, "retry": retry})

    def rows(self, index: int) -> list[dict]:
        return records.read_json(self._batch(index))["rows"]

    def remove(self) -> None:
        """Remove the journal, and the folders above it that it leaves empty."""
        resume.discard(self.root)
