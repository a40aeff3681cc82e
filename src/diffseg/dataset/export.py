"""``diffseg export``: the assembled dataset as a Hugging Face ``datasets`` folder (Parquet shards + card).

    diffseg export                                   # data/dataset -> data/export
    python -c "import datasets; print(datasets.load_dataset('data/export'))"   # offline, no hub

One row per image and one split per dataset split (``train``, ``val``, ``test``). Columns:

* ``image``, ``label``, ``turnmask``: ``datasets.Image`` columns holding the dataset's PNG files byte for
  byte (RGB image; uint8 class ids, 0 = authentic, k = ``classes[k]``; bit t-1 set where turn t edited);
* ``image_id``, ``source_id``, ``origin``, ``url``, ``license``, ``width``, ``height``, ``n_edits``,
  ``edited_fraction``, ``generators`` (list): the image's row of ``manifest.parquet``;
* ``turns``: the image's rows of ``metadata.parquet`` (one record per turn: action, target, prompt,
  generator, checkpoint and revision, sampler settings, seed, mask area, filter scores and decision).

The features travel in each shard's Arrow schema, so ``load_dataset`` decodes the image columns without
any script. ``README.md`` is the dataset card (its YAML header names the splits' files).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from diffseg import records
from diffseg.errors import UserError
from diffseg.notices import OFFLINE_WARNING
from diffseg.runtime import is_local

IMAGE_COLUMNS = ("image", "label", "turnmask")
# manifest.parquet columns copied per image; every metadata.parquet column not listed here (nor
# ``split``) is a per-turn field.
IMAGE_FIELDS = ("image_id", "source_id", "origin", "url", "license", "width", "height", "n_edits",
                "edited_fraction", "generators")
# A shard is written (and, on loading, read) whole; ~256 MB keeps memory bounded at paper scale and stays
# under the hub's 500 MB advice.
SHARD_BYTES = 256 * 2**20
DEFAULT_OUT = Path("data/export")
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}  # the card and the folder list splits in this order


def features(turn_schema: pa.Schema) -> datasets.Features:
    """The export's features; ``turn_schema`` is metadata.parquet's schema restricted to per-turn fields."""
    string, int64, float64 = datasets.Value("string"), datasets.Value("int64"), datasets.Value("float64")
    return datasets.Features({
        "image_id": string, "image": datasets.Image(), "label": datasets.Image(), "turnmask": datasets.Image(),
        "source_id": string, "origin": string, "url": string, "license": string, "width": int64,
        "height": int64, "n_edits": int64, "edited_fraction": float64, "generators": datasets.List(string),
        "turns": datasets.List(dict(datasets.Features.from_arrow_schema(turn_schema))),
    })


def _files(data: records.StateDir, image_id: str) -> dict[str, Path]:
    paths = {"image": data.image_path(image_id), "label": data.label_path(image_id),
             "turnmask": data.turnmask_path(image_id)}
    for path in paths.values():
        if not path.is_file():
            raise UserError(f"{path}: missing; is {data.root} a dataset written by `diffseg assemble`?")
    return paths


def _shards(image_ids: list[str], sizes: dict[str, int]) -> list[list[str]]:
    """Consecutive runs of images whose files add up to at most SHARD_BYTES (at least one image each)."""
    shards, current, total = [], [], 0
    for image_id in image_ids:
        if current and total + sizes[image_id] > SHARD_BYTES:
            shards.append(current)
            current, total = [], 0
        current.append(image_id)
        total += sizes[image_id]
    return shards + [current] if current else shards


def _row(info: dict, paths: dict[str, Path], turns: list[dict]) -> dict:
    row = {k: info[k] for k in IMAGE_FIELDS}
    row["generators"] = [g for g in info["generators"].split(",") if g]
    for column, path in paths.items():
        row[column] = {"bytes": path.read_bytes(), "path": f"{column}s/{path.name}"}
    row["turns"] = turns
    return row


def run(dataset_dir: Path = records.DATASET_DIR, out_dir: Path = DEFAULT_OUT) -> dict[str, int]:
    """Write the export of ``dataset_dir`` into ``out_dir`` (replaced whole); return images per split."""
    data = records.StateDir(dataset_dir)
    if not (data.root / "metadata.parquet").is_file():
        raise UserError(f"{data.root}: no metadata.parquet; run `dvc repro assemble` first")
    manifest = pq.read_table(data.root / records.MANIFEST).to_pylist()
    metadata = pq.read_table(data.root / "metadata.parquet")
    turn_fields = [c for c in metadata.column_names if c not in {*IMAGE_FIELDS, "split"}]
    turns_of = defaultdict(list)
    for turn in metadata.select(["image_id", *turn_fields]).to_pylist():
        turns_of[turn.pop("image_id")].append(turn)
    feats = features(metadata.select(turn_fields).schema)
    schema = feats.arrow_schema

    by_split = defaultdict(list)
    for info in sorted(manifest, key=lambda r: (SPLIT_ORDER.get(r["split"], len(SPLIT_ORDER)), r["split"],
                                                r["image_id"])):
        by_split[info["split"]].append(info)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for split, infos in by_split.items():
            paths = {info["image_id"]: _files(data, info["image_id"]) for info in infos}
            sizes = {i: sum(p.stat().st_size for p in ps.values()) for i, ps in paths.items()}
            info_of = {info["image_id"]: info for info in infos}
            shards = _shards(list(info_of), sizes)
            for k, ids in enumerate(shards):
                rows = [_row(info_of[i], paths[i], turns_of.get(i, [])) for i in ids]
                target = tmp / "data" / f"{split}-{k:05d}-of-{len(shards):05d}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.Table.from_pylist(rows, schema=schema), target)
        shutil.copy2(data.root / "classes.json", tmp / "classes.json")
        counts = {split: len(infos) for split, infos in by_split.items()}
        (tmp / "README.md").write_text(card(data, counts, turn_fields, manifest, metadata))
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"export: {sum(counts.values())} images {counts} -> {out_dir}")
    return counts


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` into ``target``: readers see the old folder or the new one, never a mix."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)


def _provenance(data: records.StateDir) -> list[str]:
    """Where the export came from: the dataset folder's DVC hash and the git commit, where known."""
    lines = [f"- exported by `diffseg export` from `{data.root}` (written by the `assemble` stage)"]
    lock = Path("dvc.lock")
    if lock.is_file():
        outs = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get("assemble", {}).get("outs", [])
        for out in outs:
            if Path(out.get("path", "")) == data.root:
                lines.append(f"- DVC hash of `{data.root}` in dvc.lock: `{out.get('md5')}`")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True).returncode != 0
        lines.append(f"- git commit of the pipeline: `{commit.stdout.strip()}`"
                     + (" (with uncommitted changes to tracked files)" if dirty else ""))
    return lines


def card(data: records.StateDir, counts: dict[str, int], turn_fields: list[str], manifest: list[dict],
         metadata: pa.Table) -> str:
    """The dataset card: YAML header for ``load_dataset`` and the hub, then provenance, classes, licences."""
    classes = records.read_json(data.root / "classes.json")
    meta = metadata.select(["generator", "model", "revision"]).to_pylist()
    checkpoints = sorted({(m["generator"], m["model"], m["revision"] or "-") for m in meta if m["generator"]})
    # Real COCO images have origin "coco:<split>:<id>", generated base images "synthetic:<generator>" (their
    # checkpoint is among the generators'); twins are local folders.
    offline = any(not r["origin"].startswith(("coco:", "synthetic:")) for r in manifest) or any(
        is_local(model) for _, model, _ in checkpoints)
    header = {
        "license": "other",
        "pretty_name": "diffseg: localized multi-turn diffusion edits" + (" (offline profile)" if offline else ""),
        "task_categories": ["image-segmentation"],
        "tags": ["image-forensics", "diffusion", "inpainting", "synthetic-image-detection"],
        "configs": [{"config_name": "default", "data_files": [
            {"split": split, "path": f"data/{split}-*.parquet"} for split in counts]}],
    }
    class_rows = "\n".join(f"| {k} | `{name}` |" for k, name in enumerate(classes))
    gen_rows = "\n".join(f"| `{g}` | `{model}` | {rev} |" for g, model, rev in checkpoints) or "| - | - | - |"
    stats_path = data.root / "stats.json"
    stats = f"\nStatistics (`stats.json` of the dataset): `{json.dumps(records.read_json(stats_path))}`\n" \
        if stats_path.is_file() else ""
    return f"""---
{yaml.safe_dump(header, sort_keys=False)}---

# diffseg dataset

COCO-style images whose local regions were edited by diffusion models over up to three turns, with a
per-pixel label of which generator edited which pixel and the provenance of every edit.

{OFFLINE_WARNING if offline else ""}

```python
import datasets
ds = datasets.load_dataset("path/to/this/folder")  # splits: {", ".join(counts)}
label = ds["{next(iter(counts))}"][0]["label"]  # a PIL image, mode L: the class id of every pixel
```

Images per split: {json.dumps(counts)}. Splits are by source image: a photo, its crops and every edit
of them share one split; images with `n_edits == 0` were never edited (negatives).
{stats}
## Provenance
{chr(10).join(_provenance(data))}
- `turns`: one record per turn with the fields {", ".join(f"`{f}`" for f in turn_fields)} (the rows of the
  dataset's `metadata.parquet`; `decision` says whether the edit was kept, `reason` why).
- `origin`, `url`, `source_id`: where each image came from; `license`: its licence.

## Columns
- `image`: RGB PNG, 8 bit; every image, edited or not, written by the same encoder.
- `label`: single-channel uint8 PNG; 0 = authentic, k = class k below; the last generator to modify a
  pixel owns it. The binary task maps every k > 0 to 1.
- `turnmask`: uint8 PNG; bit t-1 set where turn t edited.
- `image_id`, `source_id`, `origin`, `url`, `license`, `width`, `height`, `n_edits`, `edited_fraction`,
  `generators` (the generators of the kept edits), `turns` (above).

## Classes
| id | name |
|---|---|
{class_rows}

## Generators (checkpoints)
| class | checkpoint | revision |
|---|---|---|
{gen_rows}

## Licence notes
- Images keep their own licences, recorded per row in `license` and `url`. COCO images are under their
  Flickr licences and COCO annotations under CC BY 4.0; the offline profile's photographs keep the
  licences of the packages that ship them, and its procedural scenes are generated by the pipeline.
- Edited regions were produced by the checkpoints above; each checkpoint's own licence (see its model
  card) governs the use of its outputs, and some are non-commercial. The card therefore says
  `license: other`: the most restrictive of these terms applies to the dataset as a whole.
"""
