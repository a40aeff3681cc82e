"""Where the release's items lie under ``official.path``: folders, zip archives, Parquet shards.

An item is an image and its mask, matched by key inside one *group*: the folder that directly holds
them, as ``<key>.image.png`` + ``<key>.mask.png`` files (the release's ``train.zip``), as
``<id>/image.png`` + ``<id>/mask.png`` folders, or as ``images/<id>.png`` + ``masks/<id>.png``. A zip
counts as a folder named by its stem and is never extracted: its members are listed from the central
directory and read one at a time. A Parquet shard (``image`` and ``mask`` columns) is a group of its
own, read a batch of rows at a time.

A group's split is the innermost name on its path that ``official.splits`` maps (``train.zip`` /
``train_copy/`` -> ``train_copy``; ``data/validation-00000-of-00002.parquet`` -> ``validation``).
Items directly under ``official.path`` have none: the caller assigns one per image.
"""
from __future__ import annotations

import io
import re
import zipfile
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from PIL import Image, UnidentifiedImageError

from diffseg.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# How a group holds its items; conversion.json records these.
PAIRS = "<key>.image + <key>.mask files"
ITEM_FOLDERS = "<id>/image + <id>/mask folders"
IMAGES_MASKS = "images/ + masks/ folders"
COLUMNS = "image + mask columns"
# What reading one image or mask can raise: PIL's errors for a bad file, and for a damaged zip member a
# failed CRC check or inflate, a truncated stream, or a compression method zipfile lacks.
READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError,
               Image.DecompressionBombError)
_PAIR_STEM = re.compile(r"(?P<key>.+)\.(?P<field>image|mask)")


@dataclass
class Pair:
    """One release item: where it came from and how to open its image and its mask."""
    image_id: str
    split: str | None  # project split, or None when the release has no split folders
    origin: str  # the image's path (or zip member, or parquet file and row) for provenance
    mask_origin: str  # the mask's, for error messages
    image: Callable[[], Image.Image] | None
    mask: Callable[[], Image.Image] | None


@dataclass
class Group:
    """The items of one folder (or one Parquet shard): the unit that carries one split."""
    container: str  # folder | zip | parquet
    where: str  # e.g. 'train', 'train.zip:train_copy', 'data/validation-00000-of-00001.parquet'
    files: str  # PAIRS, ITEM_FOLDERS, IMAGES_MASKS or COLUMNS
    split: str | None
    items: int
    nested: bool  # False for items directly under official.path
    pairs: Callable[[], Iterator[Pair]] = field(repr=False)

    def record(self) -> dict:
        return {"where": self.where, "files": self.files, "split": self.split, "items": self.items}


@dataclass
class Release:
    groups: list[Group]

    @property
    def layout(self) -> str:
        """The kinds of group found, e.g. 'zip: <key>.image + <key>.mask files'."""
        return "; ".join(dict.fromkeys(f"{g.container}: {g.files}" for g in self.groups))

    @property
    def unsplit(self) -> bool:
        return all(g.split is None for g in self.groups)

    def __len__(self) -> int:
        return sum(g.items for g in self.groups)

    def pairs(self) -> Iterator[Pair]:
        for group in self.groups:
            yield from group.pairs()


@dataclass
class _Tree:
    """The file names of a folder or a zip archive, and how to read one file's bytes."""
    container: str
    name: str  # '' for the folder official.path names, else the zip's path under it ('train.zip')
    prefix: tuple[str, ...]  # the path above its root that counts for the split: ('train',) for train.zip
    names: list[str]  # sorted POSIX paths
    read: Callable[[str], bytes]


@contextmanager
def open_release(root: Path, splits: dict[str, str]) -> Iterator[Release]:
    """The release under ``root`` (folder, .zip or .parquet), its zips held open until the block ends."""
    with ExitStack() as stack:
        yield _discover(root, splits, stack)


def _discover(root: Path, splits: dict[str, str], stack: ExitStack) -> Release:
    if root.is_dir():
        files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
        trees = [_Tree("folder", "", (), [f.as_posix() for f in files if f.suffix.lower() in IMAGE_SUFFIXES],
                       lambda name: (root / name).read_bytes())]
        trees += [_zip(root / f, f.as_posix(), (*f.parent.parts, f.stem), stack)
                  for f in files if f.suffix.lower() == ".zip"]
        shards = [f for f in files if f.suffix.lower() == ".parquet"]
        base = root
    elif root.is_file() and root.suffix.lower() == ".zip":
        trees, shards, base = [_zip(root, root.name, (), stack)], [], root.parent
    elif root.is_file() and root.suffix.lower() == ".parquet":
        trees, shards, base = [], [Path(root.name)], root.parent
    else:
        raise UserError(f"official.path: {root} is not a folder, a .zip or a .parquet file (download the release "
                        f"there first)")
    groups = [g for tree in trees for g in _tree_groups(tree, splits)] + _parquet_groups(base, shards, splits)
    _check_splits(root, groups, splits)
    return Release(groups)


def _hidden(path: PurePosixPath | Path) -> bool:
    # Hidden folders (huggingface-cli's .cache/) hold download metadata, and macOS zips add ._* twins.
    return any(part.startswith(".") for part in path.parts)


def _zip(path: Path, name: str, prefix: tuple[str, ...], stack: ExitStack) -> _Tree:
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path}: not a readable zip file ({err}); an interrupted download leaves a zip without "
                        f"its directory: download it again") from None
    names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
    if not names:
        raise UserError(f"{path}: the zip file is empty")
    return _Tree("zip", name, prefix, names, archive.read)


def _place(name: str) -> tuple[tuple[str, ...], str, str, str] | None:
    """(group folder, key, 'image' or 'mask', how the group holds items) of one file, or None for other files."""
    path = PurePosixPath(name)
    if _hidden(path) or path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    folder = path.parts[:-1]
    if pair := _PAIR_STEM.fullmatch(path.stem):
        return folder, pair["key"], pair["field"], PAIRS
    if folder and folder[-1] in ("images", "masks"):
        return folder[:-1], path.stem, folder[-1][:-1], IMAGES_MASKS
    if folder and path.stem in ("image", "mask"):
        return folder[:-1], folder[-1], path.stem, ITEM_FOLDERS
    return None


def _tree_groups(tree: _Tree, splits: dict[str, str]) -> list[Group]:
    index: dict[tuple[tuple[str, ...], str], dict[str, dict[str, str]]] = {}
    for name in tree.names:  # sorted: of two files with one key and field (a.jpg, a.png) the first is kept
        if placed := _place(name):
            folder, key, kind, files = placed
            index.setdefault((folder, files), {}).setdefault(key, {}).setdefault(kind, name)
    groups = []
    for (folder, files), items in sorted(index.items()):
        parts = (*tree.prefix, *folder)
        inside = "/".join(folder)
        where = ":".join(filter(None, (tree.name, inside))) or "."  # 'train.zip:train_copy', 'train', '.'
        split = _split_of(parts, splits)
        groups.append(Group(tree.container, where, files, split, len(items), bool(parts),
                            partial(_tree_pairs, tree, parts, items, split)))
    return groups


def _split_of(parts: tuple[str, ...], splits: dict[str, str]) -> str | None:
    return next((splits[name] for name in reversed(parts) if name in splits), None)


def _tree_pairs(tree: _Tree, parts: tuple[str, ...], items: dict[str, dict[str, str]],
                split: str | None) -> Iterator[Pair]:
    label = f"{tree.name}:" if tree.name else ""  # zip members are named 'train.zip:train_copy/1.mask.png'
    for key in sorted(items):
        image, mask = items[key].get("image"), items[key].get("mask")
        yield Pair(_safe_id("_".join((*parts, key))), split, label + (image or mask),
                   label + mask if mask else "(none)",
                   _decoder(partial(tree.read, image), label + image) if image else None,
                   _decoder(partial(tree.read, mask), label + mask) if mask else None)


def _decoder(read: Callable[[], bytes], origin: str) -> Callable[[], Image.Image]:
    def decode() -> Image.Image:
        try:
            img = Image.open(io.BytesIO(read()))
        except UnidentifiedImageError:
            # PIL names the in-memory buffer by its address, which differs per run; name the file instead.
            raise UnidentifiedImageError(f"cannot identify image file {origin!r}") from None
        img.load()
        return img
    return decode


def _safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def _parquet_groups(base: Path, shards: list[Path], splits: dict[str, str]) -> list[Group]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    groups, seen = [], {}
    for shard in shards:
        # 'data/train-00000-of-00002.parquet' -> train; 'default/train/0000.parquet' -> train
        name = next((n for n in (shard.stem.split("-")[0], *reversed(shard.parent.parts)) if n in splits), None)
        if name is None:
            raise UserError(f"{base / shard}: cannot tell its split from the name; add it to official.splits "
                            f"(known: {', '.join(splits)})")
        try:
            schema, rows = pq.read_schema(base / shard), pq.read_metadata(base / shard).num_rows
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"{base / shard}: not a readable Parquet file ({err})") from None
        if not {"image", "mask"} <= set(schema.names):
            raise UserError(f"{base / shard}: expected columns 'image' and 'mask', found {schema.names}")
        # Ids number the rows of one release split across its shards, in shard order.
        start = seen.get(name, 0)
        seen[name] = start + rows
        groups.append(Group("parquet", shard.as_posix(), COLUMNS, splits[name], rows, True,
                            partial(_parquet_pairs, base, shard, name, splits[name], start)))
    return groups


def _parquet_pairs(base: Path, shard: Path, name: str, split: str, start: int) -> Iterator[Pair]:
    import pyarrow.parquet as pq

    row = 0
    # A few rows at a time: a shard holds gigabytes of PNG bytes.
    for batch in pq.ParquetFile(base / shard).iter_batches(batch_size=16, columns=["image", "mask"]):
        for cell in batch.to_pylist():
            # The Hub stores an image cell as {bytes, path}; plain binary columns hold the bytes.
            image, mask = (c["bytes"] if isinstance(c, dict) else c for c in (cell["image"], cell["mask"]))
            origin = f"{shard.as_posix()}:{row}"
            yield Pair(f"{name}_{start + row:06d}", split, origin, f"{origin} (mask column)",
                       _decoder(_held(image), origin) if image else None,
                       _decoder(_held(mask), f"{origin} (mask column)") if mask else None)
            row += 1


def _held(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _check_splits(root: Path, groups: list[Group], splits: dict[str, str]) -> None:
    if not groups:
        raise UserError(f"{root}: no recognised layout: expected <key>.image.png + <key>.mask.png, "
                        f"<id>/image.png + <id>/mask.png or images/ + masks/ (in a folder, in split folders or in "
                        f"zips), or Parquet files with image and mask columns")
    unmapped = [g.where for g in groups if g.split is None and g.nested]
    if unmapped:
        raise UserError(f"{root}: {unmapped} hold images and masks, but no folder on their path is a split name; "
                        f"map one in official.splits (known: {', '.join(splits)})")
    split = [g.where for g in groups if g.split]
    if split and len(split) < len(groups):
        raise UserError(f"{root}: images and masks lie directly under it beside split folders ({', '.join(split)}); "
                        f"move them into a split folder")
