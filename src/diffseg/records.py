"""Every on-disk format of the pipeline, in one place.

Stages talk only through output folders; each folder is self-describing: files plus one manifest
table (Parquet) with one row per item and ``status`` / ``reason`` columns. Every write goes to a
temporary name first and is renamed into place, so a killed stage never leaves a half-written file.

Folder kinds:

* **state** (``data/source``, ``data/turns/<t>/state``): ``images/<id>.png`` (RGB), ``labels/<id>.png``
  (uint8 class ids; absent means all authentic), ``turnmasks/<id>.png`` (bit t-1 set where turn t
  edited; absent means zero), ``annotations.json`` (COCO instances, kept current), ``manifest.parquet``
  (one row per image) and ``history.parquet`` (one row per image and turn, the provenance so far).
* **plan** (``data/turns/<t>/plan``): ``masks/<id>.png`` (0/255) and ``manifest.parquet``.
* **edit** (``data/turns/<t>/edit``): ``images/``, ``labels/``, ``turnmasks/`` of edited items and
  ``manifest.parquet``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from PIL import Image

MANIFEST = "manifest.parquet"
HISTORY = "history.parquet"
ANNOTATIONS = "annotations.json"
OK = "ok"
SKIPPED = "skipped"
FAILED = "failed"

SOURCE_DIR = Path("data/source")
# Manifest columns of a state with synthetic base images (the synthesize stage's), carried into the dataset:
# the text-to-image generator, its seed and its prompt; '', 0 and '' for a photograph.
SYNTHETIC_FIELDS = ("synthetic_generator", "synthetic_seed", "synthetic_prompt")
DATASET_DIR = Path("data/dataset")


def turn_dir(turn: str, kind: str) -> Path:
    """``data/turns/<turn>/<kind>`` with kind plan, edit or state (the paths dvc.yaml names)."""
    return Path("data/turns") / turn / kind


# One PNG encoder setting for every image the dataset holds (no format shortcut for detectors).
_PNG = {"format": "PNG", "compress_level": 6}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    """``obj`` as indented JSON, atomically. Keys are sorted unless their order carries meaning (numeric levels
    written in numeric order would otherwise sort as strings, '10.0' before '5.0')."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def encode_png(array: np.ndarray) -> bytes:
    """The single PNG encoder: uint8 HxWx3 (RGB) or HxW (labels, masks), no metadata."""
    if array.dtype != np.uint8:
        raise ValueError(f"PNG arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] != 3:
        raise ValueError(f"images must have 3 channels, got shape {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, **_PNG)
    return buf.getvalue()


def write_png(path: str | Path, array: np.ndarray) -> None:
    write_bytes(path, encode_png(array))


def read_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        if img.mode != "RGB":
            raise ValueError(f"{path}: expected an RGB image, found mode {img.mode}")
        return np.asarray(img, dtype=np.uint8).copy()


def read_gray(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        if img.mode != "L":
            raise ValueError(f"{path}: expected a single-channel uint8 image, found mode {img.mode}")
        return np.asarray(img, dtype=np.uint8).copy()


def write_table(path: str | Path, df: pd.DataFrame) -> None:
    """Parquet, index dropped, so identical frames give identical bytes."""
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (did the stage that writes it run?)")
    return pd.read_parquet(path)


def fresh_dir(path: str | Path) -> Path:
    """Empty ``path`` (a stage output): DVC removes outputs before a run, this makes direct runs alike."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


class StateDir:
    """A complete dataset state: the source, or the state after a turn."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def image_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.png"

    def label_path(self, image_id: str) -> Path:
        return self.root / "labels" / f"{image_id}.png"

    def turnmask_path(self, image_id: str) -> Path:
        return self.root / "turnmasks" / f"{image_id}.png"

    def image(self, image_id: str) -> np.ndarray:
        return read_rgb(self.image_path(image_id))

    def _gray_or_zero(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return read_gray(path) if path.is_file() else np.zeros(shape, np.uint8)

    def label(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        return self._gray_or_zero(self.label_path(image_id), shape)

    def turnmask(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        return self._gray_or_zero(self.turnmask_path(image_id), shape)

    def manifest(self) -> pd.DataFrame:
        return read_table(self.root / MANIFEST)

    def ok_ids(self) -> list[str]:
        m = self.manifest()
        return sorted(m.loc[m["status"] == OK, "image_id"])

    def history(self) -> pd.DataFrame:
        path = self.root / HISTORY
        return read_table(path) if path.is_file() else pd.DataFrame()

    def annotations(self) -> dict:
        return read_json(self.root / ANNOTATIONS)


class PlanDir:
    """The edit plan of one turn."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def mask_path(self, image_id: str) -> Path:
        return self.root / "masks" / f"{image_id}.png"

    def mask(self, image_id: str) -> np.ndarray:
        """The edit mask as a boolean array."""
        return read_gray(self.mask_path(image_id)) > 0

    def write_mask(self, image_id: str, mask: np.ndarray) -> None:
        write_png(self.mask_path(image_id), mask.astype(np.uint8) * 255)

    def manifest(self) -> pd.DataFrame:
        return read_table(self.root / MANIFEST)


def failure_share(statuses: pd.Series) -> float:
    return float((statuses == FAILED).mean()) if len(statuses) else 0.0


def check_failures(stage: str, statuses: pd.Series, limit: float) -> None:
    """Stop the stage when too many items failed (``max_item_failure`` in params)."""
    share = failure_share(statuses)
    if share > limit:
        raise RuntimeError(f"{stage}: {share:.0%} of items failed, above max_item_failure={limit:.0%}; "
                           f"see the manifest's 'reason' column")
