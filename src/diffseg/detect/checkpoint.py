"""The resumable state of ``train@<detector>``: written after every epoch, so a killed run goes on from there.

It lies in ``data/cache/resume/train-<detector>/<fingerprint>/epoch.pt`` (:mod:`diffseg.resume`), written
atomically (a temporary name, then a rename), and holds everything the next epoch depends on: the
weights, the optimizer and scheduler states, the global and loader random-number states, the per-epoch
history and the weights of the best epoch so far. A restart loads it and runs the remaining epochs, so it
ends with the bytes of an uninterrupted run; it loses at most the epoch in flight.

The fingerprint covers the inputs of the training (the dataset's files, the detector's settings, the
seed, the device and thread count, the code and the library versions): a state of other inputs is never
loaded, and opening a journal removes every other fingerprint's. The folder goes once the detector is saved.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from diffseg import records, resume

_FILE = "epoch.pt"


class EpochJournal:
    """The state after the last finished epoch of one detector's training, keyed by its inputs."""

    def __init__(self, name: str, key: str, writer: bool = True):
        home = resume.ROOT / f"train-{name}"
        self.root = home / key[:32]
        self.writer = writer  # of several DDP processes only one writes; all read
        if writer and home.is_dir():
            for old in home.iterdir():  # stale: other inputs, other code
                if old != self.root:
                    shutil.rmtree(old)

    def load(self) -> dict | None:
        """The saved state, or None when no epoch of these inputs has finished."""
        path = self.root / _FILE
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def save(self, state: dict) -> None:
        if self.writer:
            with records.atomic_path(self.root / _FILE) as tmp:
                torch.save(state, tmp)

    def remove(self) -> None:
        """Remove the state, and the folders above it that it leaves empty."""
        if self.writer:
            resume.discard(self.root)


def fingerprint(dataset: Path, settings: object, extra: dict) -> str:
    """Every input of a training run: ``dataset``'s files, ``settings`` (a dataclass), ``extra`` (JSON-able),
    the code of this package and the base modules it uses, and the library versions."""
    import segmentation_models_pytorch as smp

    package = Path(records.__file__).parent
    code = sorted((package / "detect").glob("*.py")) + [package / n for n in ("records.py", "runtime.py",
                                                                             "seeding.py", "resume.py")]
    files = sorted(p for p in Path(dataset).rglob("*") if p.is_file())
    described = json.dumps({"settings": dataclasses.asdict(settings), **extra, "threads": torch.get_num_threads(),
                            "versions": [torch.__version__, smp.__version__],
                            "files": [str(p.relative_to(dataset)) for p in files]}, sort_keys=True, default=str)
    return resume.fingerprint([described, *code, *files])
