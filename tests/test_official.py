"""``diffseg official``: local copies of the release in each recognised layout, mapped or refused."""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_params
from diffseg import cli, records
from diffseg import params as params_mod
from diffseg.dataset.assemble import assign_splits
from diffseg.dataset.official import convert, inspect_masks, masks
from diffseg.dataset.official.layouts import COLUMNS, IMAGES_MASKS, ITEM_FOLDERS, PAIRS
from diffseg.detect import evaluate, zoo
from diffseg.detect.data import SegmentationSet
from diffseg.errors import UserError

BINARY = {0: "authentic", 255: "edited"}
GENERATORS = ["sd2", "sd3.5", "sdxl", "flux", "glide", "kolors", "hunyuan", "kandinsky"]
CLASS_IDS = {0: "authentic", **{k: name for k, name in enumerate(GENERATORS, start=1)}}
SIZE = (24, 32)  # height, width
# The release's split folders as the pair layouts name them: train.zip holds train_copy/.
RELEASE_SPLITS = {"train_copy": [0, 1, 2], "validation": [3], "cross_test": [4, 5]}


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def binary_mask(i: int) -> np.ndarray:
    """0 / 255; every third image is never edited."""
    mask = np.zeros(SIZE, np.uint8)
    if i % 3:
        mask[2:10, 3 + i:15 + i] = 255
    return mask


def class_mask(i: int) -> np.ndarray:
    """Class ids 0..8: two regions (80 and 112 px) by two generators; every third image is never edited."""
    mask = np.zeros(SIZE, np.uint8)
    if i % 3:
        mask[0:8, 0:10] = 1 + i % 8
        mask[12:20, 16:30] = 1 + (i + 3) % 8
    return mask


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def split_folders(root, masks) -> None:
    """<split>/<id>/image.png + mask.png, with the Hub's 'validation' spelling."""
    for i, split in enumerate(["train", "train", "train", "validation", "test", "test"]):
        item = root / split / f"{i:05d}"
        item.mkdir(parents=True)
        Image.fromarray(_image(i)).save(item / "image.png")
        Image.fromarray(masks(i)).save(item / "mask.png")


def flat_folders(root, masks, n: int = 9) -> None:
    """images/<id>.jpg + masks/<id>.png, no splits."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(_image(i)).save(root / "images" / f"img{i}.jpg", quality=95)
        Image.fromarray(masks(i)).save(root / "masks" / f"img{i}.png")


def pair_members(masks, folders: dict[str, list[int]]) -> dict[str, bytes]:
    """<folder>/NNNNNNNN.image.png + NNNNNNNN.mask.png, as the release's train.zip holds them ('' = no folder)."""
    return {f"{folder}/{i:08d}.{field}.png".lstrip("/"): png(make(i))
            for folder, ids in folders.items() for i in ids
            for field, make in (("image", _image), ("mask", masks))}


def pair_files(root, masks, folders: dict[str, list[int]] = RELEASE_SPLITS) -> None:
    for name, data in pair_members(masks, folders).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def write_zip(path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def zipped_pairs(path, masks, compression: int = zipfile.ZIP_DEFLATED) -> None:
    write_zip(path, pair_members(masks, RELEASE_SPLITS), compression)


def shard(path, masks, ids) -> None:
    """One Parquet shard with image and mask cells as the Hub stores them ({bytes, path})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image": [{"bytes": png(_image(i)), "path": f"{i}.png"} for i in ids],
                  "mask": [{"bytes": png(masks(i)), "path": f"{i}_mask.png"} for i in ids]}).to_parquet(path)


def hub_parquet(root, masks) -> None:
    """data/<split>-0000k-of-0000n.parquet: two train shards, a validation and a test shard."""
    for name, ids in [("train-00000-of-00002", [0, 1]), ("train-00001-of-00002", [2]),
                      ("validation-00000-of-00001", [3]), ("test-00000-of-00001", [4, 5])]:
        shard(root / "data" / f"{name}.parquet", masks, ids)


def mirror_parquet(path, masks) -> None:
    """The mirror's one split, cross_test, as a single shard."""
    shard(path, masks, range(6))


MIRROR = "release/data/cross_test-00000-of-00001.parquet"


def _params(workdir, mask_values, **official_keys):
    path = write_params(workdir, {"detect": {"dataset": "data/official"},
                                  "official": {"path": "release", "mask_values": mask_values} | official_keys})
    return params_mod.load(path)


def _labels(workdir) -> dict[str, np.ndarray]:
    data = records.StateDir(workdir / "data" / "official")
    return {i: records.read_gray(data.label_path(i)) for i in data.manifest()["image_id"]}


def _tree(folder) -> dict[str, str]:
    """Every path under ``folder`` with its content's digest ('' for a folder)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            for p in sorted(folder.rglob("*"))}


def test_binary_masks_under_the_binary_mapping(workdir):
    split_folders(workdir / "release", binary_mask)
    manifest = convert.run(_params(workdir, BINARY))
    out = workdir / "data" / "official"
    assert records.read_json(out / "classes.json") == ["authentic", "edited"]
    assert list(manifest["split"]) == ["test", "test", "train", "train", "train", "val"]
    for row in manifest.itertuples():
        i = int(row.image_id.split("_")[-1])
        label = records.read_gray(out / "labels" / f"{row.image_id}.png")
        assert np.array_equal(label, (binary_mask(i) == 255).astype(np.uint8))
        assert np.array_equal(records.read_rgb(out / "images" / f"{row.image_id}.png"), _image(i))
        assert row.n_edits == int(i % 3 > 0) and row.generators == ("edited" if i % 3 else "")
    report = records.read_json(out / "conversion.json")
    assert report["layout"] == f"folder: {ITEM_FOLDERS}" and report["skipped"] == []
    assert report["groups"] == [{"where": w, "files": ITEM_FOLDERS, "split": s, "items": n}
                                for w, s, n in [("test", "test", 2), ("train", "train", 3), ("validation", "val", 1)]]


@pytest.mark.parametrize("build, files, ids", [
    (flat_folders, IMAGES_MASKS, [f"img{i}" for i in range(9)]),
    (lambda root, masks: pair_files(root, masks, {"": list(range(9))}), PAIRS, [f"{i:08d}" for i in range(9)]),
])
def test_class_id_masks_under_the_class_mapping(workdir, build, files, ids):
    build(workdir / "release", class_mask)
    p = _params(workdir, CLASS_IDS)
    manifest = convert.run(p)
    assert records.read_json(workdir / "data" / "official" / "classes.json") == ["authentic", *GENERATORS]
    # No split folders: one split per image by assemble's keyed hash, every image its own source.
    assert dict(zip(manifest["image_id"], manifest["split"])) == assign_splits(ids, p.assemble.splits, p.seed)
    assert set(manifest["split"]) == {"train", "val", "test"}
    labels = _labels(workdir)
    for i, image_id in enumerate(ids):
        assert np.array_equal(labels[image_id], class_mask(i))  # value k is the k-th class, nothing merged
    row = manifest.set_index("image_id").loc[ids[1]]
    assert row["n_edits"] == 2 and row["generators"] == f"{GENERATORS[1]},{GENERATORS[4]}"
    report = records.read_json(workdir / "data" / "official" / "conversion.json")
    assert report["layout"] == f"folder: {files}"
    assert report["groups"] == [{"where": ".", "files": files, "split": None, "items": 9}]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_zip_is_read_in_place(workdir, monkeypatch, compression):
    zipped_pairs(workdir / "release.zip", class_mask, compression)
    p = _params(workdir, CLASS_IDS, path="release.zip")
    (workdir / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workdir / "tmp"))
    before = _tree(workdir)
    manifest = convert.run(p)
    ids = [f"cross_test_{4:08d}", f"cross_test_{5:08d}", *(f"train_copy_{i:08d}" for i in range(3)),
           f"validation_{3:08d}"]
    assert list(manifest["image_id"]) == ids
    assert list(manifest["split"]) == ["test", "test", "train", "train", "train", "val"]
    assert manifest["origin"][2] == "release.zip:train_copy/00000000.image.png"
    # Nothing was extracted: the work folder gained the converted dataset and nothing else.
    after = _tree(workdir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == sorted(
        ["data", "data/official", "data/official/images", "data/official/labels", "data/official/classes.json",
         "data/official/conversion.json", "data/official/manifest.parquet",
         *(f"data/official/{kind}/{i}.png" for kind in ("images", "labels") for i in ids)])
    for i, image_id in zip([4, 5, 0, 1, 2, 3], ids):
        assert np.array_equal(_labels(workdir)[image_id], class_mask(i))
        assert np.array_equal(records.read_rgb(workdir / "data" / "official" / "images" / f"{image_id}.png"),
                              _image(i))
    report = records.read_json(workdir / "data" / "official" / "conversion.json")
    assert report["layout"] == f"zip: {PAIRS}" and report["images"] == {"test": 2, "train": 3, "val": 1}
    assert report["groups"] == [{"where": f"release.zip:{w}", "files": PAIRS, "split": s, "items": n}
                                for w, s, n in [("cross_test", "test", 2), ("train_copy", "train", 3),
                                                ("validation", "val", 1)]]
    convert.run(p)  # a second run writes the same bytes
    assert _tree(workdir) == after


def test_a_folder_of_zips_and_the_mirror(workdir):
    release = workdir / "release"
    write_zip(release / "train.zip", pair_members(class_mask, {"train_copy": [0, 1, 2]}))
    write_zip(release / "validation.zip", pair_members(class_mask, {"": [3]}))  # named by the zip's stem
    mirror_parquet(release / "data" / "cross_test-00000-of-00001.parquet", class_mask)
    write_zip(release / ".cache" / "old.zip", pair_members(class_mask, {"": [7]}))  # download metadata: ignored
    manifest = convert.run(_params(workdir, CLASS_IDS))
    assert dict(zip(manifest["image_id"], manifest["split"])) == {
        **{f"cross_test_{n:06d}": "test" for n in range(6)},
        **{f"train_train_copy_{i:08d}": "train" for i in range(3)}, "validation_00000003": "val"}
    assert manifest.set_index("image_id").loc["cross_test_000004", "origin"] == \
        "data/cross_test-00000-of-00001.parquet:4"
    assert np.array_equal(_labels(workdir)["cross_test_000004"], class_mask(4))
    report = records.read_json(workdir / "data" / "official" / "conversion.json")
    assert report["layout"] == f"zip: {PAIRS}; parquet: {COLUMNS}"
    assert report["groups"] == [
        {"where": "train.zip:train_copy", "files": PAIRS, "split": "train", "items": 3},
        {"where": "validation.zip", "files": PAIRS, "split": "val", "items": 1},
        {"where": "data/cross_test-00000-of-00001.parquet", "files": COLUMNS, "split": "test", "items": 6}]


def test_hub_parquet_shards(workdir):
    hub_parquet(workdir / "release", class_mask)
    manifest = convert.run(_params(workdir, CLASS_IDS))
    assert dict(zip(manifest["image_id"], manifest["split"])) == {
        "test_000000": "test", "test_000001": "test", "train_000000": "train", "train_000001": "train",
        "train_000002": "train", "validation_000000": "val"}
    assert np.array_equal(_labels(workdir)["test_000001"], class_mask(5))
    assert np.array_equal(_labels(workdir)["validation_000000"], class_mask(3))
    # Row numbers continue across the shards of one split.
    assert manifest.set_index("image_id").loc["train_000002", "origin"] == "data/train-00001-of-00002.parquet:0"


@pytest.mark.parametrize("build, path, named, values", [
    (split_folders, "release", "test/00004/mask.png", "255 ("),  # test/ sorts before train/
    (flat_folders, "release", "masks/img1.png", "2 ("),
    (zipped_pairs, "release.zip", "release.zip:cross_test/00000004.mask.png", "5 ("),
])
def test_the_wrong_mapping_is_refused(workdir, capsys, build, path, named, values):
    masks_of, mapping = (binary_mask, CLASS_IDS) if build is split_folders else (class_mask, BINARY)
    build(workdir / path, masks_of)
    (workdir / "data" / "official").mkdir(parents=True)
    (workdir / "data" / "official" / "keep.txt").write_text("an earlier conversion")
    with pytest.raises(masks.MaskMismatch) as err:
        convert.run(_params(workdir, mapping, path=path))
    message = str(err.value)
    assert f"mask {named} holds value(s) {values}" in message and "no threshold" in message
    # The earlier output is untouched and no half-converted folder is left behind.
    assert (workdir / "data" / "official" / "keep.txt").is_file()
    assert not (workdir / "data" / ".official.partial").exists()
    assert cli.main(["official"]) == 2
    assert "official.mask_values" in capsys.readouterr().err


def test_bad_items_are_skipped_and_recorded(workdir):
    flat_folders(workdir / "release", binary_mask)
    (workdir / "release" / "masks" / "img4.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(workdir / "release" / "masks" / "img5.png")
    (workdir / "release" / "images" / "img6.jpg").write_bytes(b"not a jpeg")
    manifest = convert.run(_params(workdir, BINARY))
    assert len(manifest) == 6
    skipped = records.read_json(workdir / "data" / "official" / "conversion.json")["skipped"]
    assert skipped == [
        {"image_id": "img4", "origin": "images/img4.jpg", "reason": "images/img4.jpg: no mask"},
        {"image_id": "img5", "origin": "images/img5.jpg", "reason": "images/img5.jpg: mask is 5x5, image 32x24"},
        {"image_id": "img6", "origin": "images/img6.jpg",
         "reason": "images/img6.jpg: corrupt or unsupported image or mask: UnidentifiedImageError: "
                   "cannot identify image file 'images/img6.jpg'"}]


def test_bad_zip_members_are_skipped_and_recorded(workdir):
    members = pair_members(binary_mask, {"train_copy": list(range(9))})
    members["train_copy/00000003.mask.png"] = png(np.zeros((5, 5), np.uint8))
    del members["train_copy/00000004.mask.png"], members["train_copy/00000005.image.png"]
    write_zip(workdir / "release.zip", members, zipfile.ZIP_STORED)
    # A damaged download: bytes flipped inside one stored member fail its CRC check.
    blob = bytearray((workdir / "release.zip").read_bytes())
    at = blob.find(members["train_copy/00000002.image.png"]) + 100
    blob[at:at + 8] = bytes(255 - b for b in blob[at:at + 8])
    (workdir / "release.zip").write_bytes(bytes(blob))
    manifest = convert.run(_params(workdir, BINARY, path="release.zip"))
    assert list(manifest["image_id"]) == [f"train_copy_{i:08d}" for i in (0, 1, 6, 7, 8)]
    member = "release.zip:train_copy/0000000{}.{}.png".format
    assert records.read_json(workdir / "data" / "official" / "conversion.json")["skipped"] == [
        {"image_id": "train_copy_00000002", "origin": member(2, "image"),
         "reason": f"{member(2, 'image')}: corrupt or unsupported image or mask: BadZipFile: "
                   f"Bad CRC-32 for file 'train_copy/00000002.image.png'"},
        {"image_id": "train_copy_00000003", "origin": member(3, "image"),
         "reason": f"{member(3, 'image')}: mask is 5x5, image 32x24"},
        {"image_id": "train_copy_00000004", "origin": member(4, "image"), "reason": f"{member(4, 'image')}: no mask"},
        {"image_id": "train_copy_00000005", "origin": member(5, "mask"), "reason": f"{member(5, 'mask')}: no image"}]


def _truncated(path) -> None:
    zipped_pairs(path, binary_mask)
    path.write_bytes(path.read_bytes()[:2000])


@pytest.mark.parametrize("build, message", [
    (lambda path: write_zip(path, {}), "release.zip: the zip file is empty"),
    (lambda path: path.write_bytes(b"not a zip"),
     "release.zip: not a readable zip file (File is not a zip file); an interrupted download leaves a zip "
     "without its directory: download it again"),
    (_truncated, "release.zip: not a readable zip file (File is not a zip file); an interrupted download leaves "
                 "a zip without its directory: download it again"),
    (lambda path: write_zip(path, {"README.md": b"# DiffSeg30k"}),
     "release.zip: no recognised layout: expected <key>.image.png + <key>.mask.png, <id>/image.png + "
     "<id>/mask.png or images/ + masks/ (in a folder, in split folders or in zips), or Parquet files with image "
     "and mask columns"),
])
def test_unusable_zips_stop_with_one_line(workdir, capsys, build, message):
    build(workdir / "release.zip")
    write_params(workdir, {"detect": {"dataset": "data/official"},
                           "official": {"path": "release.zip", "mask_values": BINARY}})
    assert cli.main(["official"]) == 2
    assert capsys.readouterr().err == f"diffseg official: {message}\n"
    assert not (workdir / "data").exists()


def test_it_never_overwrites_the_assembled_dataset(workdir):
    flat_folders(workdir / "release", binary_mask)
    p = params_mod.load(write_params(workdir, {"official": {"path": "release", "mask_values": BINARY}}))
    with pytest.raises(UserError, match="set detect.dataset to another folder"):
        convert.run(p)
    p = _params(workdir, BINARY, path="nowhere")
    with pytest.raises(UserError, match="nowhere is not a folder, a .zip or a .parquet file"):
        convert.run(p)
    p = _params(workdir, {})  # the repository's params leave the mapping empty: no guessed encoding
    with pytest.raises(params_mod.ParamsError, match="official.mask_values"):
        convert.run(p)


@pytest.mark.parametrize("build, path, test_images", [
    (split_folders, "release", 2),
    (pair_files, "release", 2),
    (zipped_pairs, "release.zip", 2),
    (hub_parquet, "release", 2),
    (mirror_parquet, MIRROR, 6),  # official.path names the shard itself; no val split, so no val threshold
])
def test_train_and_evaluate_read_it_unchanged(workdir, build, path, test_images):
    build(workdir / path, class_mask)
    write_params(workdir, {"detect": {"dataset": "data/official"},
                           "official": {"path": path, "mask_values": CLASS_IDS}})
    assert cli.main(["official"]) == 0
    p = params_mod.load("params.yaml")
    x, y, _ = SegmentationSet(workdir / "data" / "official", ["test"], "attribution", 32)[0]
    assert tuple(x.shape) == (3, 32, 32) and int(y.max()) <= len(GENERATORS)
    classes = ["authentic", *GENERATORS]
    zoo.save(zoo.build("Unet", "resnet18", len(classes)), workdir / "models" / "detectors" / "tiny",
             {"arch": "Unet", "encoder": "resnet18", "task": "attribution", "classes": classes, "image_size": 32})
    result = evaluate.run(p, "tiny", workdir / "eval.json", workdir / "confusion.json")
    assert result["test_images"] == test_images and result["task"] == "attribution"
    assert set(result["attribution"]["per_class_iou"]) == set(classes)
    assert json.loads((workdir / "eval.json").read_text())["detector"] == "tiny"


@pytest.mark.parametrize("override, key", [
    ({"mask_values": {0: "background", 255: "edited"}}, "official.mask_values"),
    ({"mask_values": {0: "authentic", 70000: "edited"}}, "official.mask_values.70000"),
    ({"splits": {"dev": "validation"}}, "official.splits.dev"),
])
def test_bad_official_params_name_the_key(tmp_path, override, key):
    with pytest.raises(params_mod.ParamsError, match=key.replace(".", r"\.")):
        params_mod.load(write_params(tmp_path, {"official": override}))


def test_unmapped_folders_stop_and_hidden_ones_are_ignored(workdir):
    split_folders(workdir / "release", binary_mask)
    pair_files(workdir / "release" / ".cache" / "huggingface", binary_mask, {"": [7]})  # download metadata
    (workdir / "release" / "empty" / "00008").mkdir(parents=True)  # no image and no mask: not an item
    pair_files(workdir / "release", binary_mask, {"extra/more": [9]})
    with pytest.raises(UserError, match=r"\['extra/more'\] hold images and masks, but no folder on their path is "
                                        r"a split name; map one in official.splits"):
        convert.run(_params(workdir, BINARY))
    manifest = convert.run(_params(workdir, BINARY, splits={"extra": "test"}))
    assert len(manifest) == 7 and manifest.set_index("image_id").loc["extra_more_00000009", "split"] == "test"
    pair_files(workdir / "release", binary_mask, {"": [10]})
    with pytest.raises(UserError, match=r"images and masks lie directly under it beside split folders \(extra/more, "
                                        r"test, train, validation\)"):
        convert.run(_params(workdir, BINARY, splits={"extra": "test"}))


def test_release_split_names_map_by_default(tmp_path):
    splits = params_mod.load(write_params(tmp_path)).official.splits
    assert splits == {"train": "train", "val": "val", "validation": "val", "test": "test", "train_copy": "train",
                      "cross_test": "test"}


def test_mask_modes():
    values = np.array([[0, 255], [255, 0]], np.uint8)
    for img in (Image.fromarray(values), Image.fromarray(values).convert("RGB"), Image.fromarray(values).convert("1")):
        assert np.array_equal(masks.mask_array(img, "m.png"), values)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    with pytest.raises(masks.BadItem, match="colour image"):
        masks.mask_array(Image.fromarray(colour), "m.png")
    wide = Image.fromarray(np.array([[0, 300]], np.uint16))  # 16-bit masks keep their values
    assert masks.mask_array(wide, "m.png").tolist() == [[0, 300]]


# --- diffseg official --inspect ----------------------------------------------------------------------------

def test_inspect_counts_the_values_of_the_first_masks(workdir, capsys):
    # Keys 0..8; the first six (0..5) are read. Their class masks hold, per value (pixels, masks):
    # 0 in all six (2 x 768 + 4 x 576 = 3840 px), the 80 px region k = 1 + i % 8 and the 112 px region
    # k = 1 + (i + 3) % 8 of i = 1, 2, 4, 5: 2 and 5, 3 and 6, 5 and 8, 6 and 1.
    write_zip(workdir / "release.zip", pair_members(class_mask, {"train_copy": list(range(9))}))
    write_params(workdir, {"official": {"path": "release.zip"}})  # mask_values still empty, as shipped
    before = _tree(workdir)
    assert cli.main(["official", "--inspect", "--sample", "6"]) == 0
    assert capsys.readouterr().out == (
        "official --inspect: 6 masks, the first in key order under release.zip "
        "(zip: <key>.image + <key>.mask files)\n"
        "  value       pixels   masks\n"
        "      0         3840       6\n"
        "      1          112       1\n"
        "      2           80       1\n"
        "      3           80       1\n"
        "      5          192       2\n"
        "      6          192       2\n"
        "      8          112       1\n"
        "Suggested from these 6 masks only, not a documented encoding: class ids 0..8; which generator each id "
        "stands for is not documented, so rename gen1..gen8 once known\n"
        "official.mask_values: {0: authentic, 1: gen1, 2: gen2, 3: gen3, 4: gen4, 5: gen5, 6: gen6, 7: gen7, "
        "8: gen8}\n")
    assert _tree(workdir) == before  # it writes nothing


def test_inspect_binary_masks_with_an_unreadable_one(workdir, capsys):
    mirror_parquet(workdir / MIRROR, binary_mask)
    table = pd.read_parquet(workdir / MIRROR)
    table.at[2, "mask"] = {"bytes": b"not a png", "path": "2_mask.png"}
    table.to_parquet(workdir / MIRROR)
    write_params(workdir, {"official": {"path": "release"}})
    assert cli.main(["official", "--inspect"]) == 0  # the default sample, 200, reads all six
    # binary_mask(i) holds a 96 px region of 255 when i % 3: masks 1, 4 and 5 of the five read (2 is unreadable).
    assert capsys.readouterr().out == (
        "official --inspect: 5 masks, the first in key order under release (parquet: image + mask columns)\n"
        "1 unreadable, not counted; first: data/cross_test-00000-of-00001.parquet:2 (mask column): "
        "UnidentifiedImageError: cannot identify image file 'data/cross_test-00000-of-00001.parquet:2 "
        "(mask column)'\n"
        "  value       pixels   masks\n"
        "      0         3552       5\n"
        "    255          288       3\n"
        "Suggested from these 5 masks only, not a documented encoding: binary (0/255)\n"
        "official.mask_values: {0: authentic, 255: edited}\n")


@pytest.mark.parametrize("values, text", [
    ({0}, "Every mask read is all 0 (no edited pixel): no suggestion; read more with --sample"),
    ({0, 127, 255}, "The values fit neither a binary 0/255 mask nor class ids 0..8: no suggestion; map every "
                    "value in official.mask_values by hand"),
    ({0, 9}, "The values fit neither a binary 0/255 mask nor class ids 0..8: no suggestion; map every "
             "value in official.mask_values by hand"),
    ({0, 255}, "Suggested from these 3 masks only, not a documented encoding: binary (0/255)\n"
               "official.mask_values: {0: authentic, 255: edited}"),
])
def test_inspect_suggests_only_for_the_known_encodings(values, text):
    assert inspect_masks.suggestion(values, 3) == text


@pytest.mark.parametrize("argv, message", [
    (["official", "--inspect", "--sample", "0"], "--sample must be 1 or more, got 0"),
    (["official", "--sample", "5"], "--sample goes with --inspect"),
])
def test_inspect_arguments(workdir, capsys, argv, message):
    write_params(workdir, {})
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"diffseg official: {message}\n"
