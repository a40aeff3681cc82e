"""``diffseg official``: local copies of the release in each recognised layout, mapped or refused."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_params
from diffseg import cli, records
from diffseg import params as params_mod
from diffseg.dataset import official
from diffseg.detect import evaluate, zoo
from diffseg.detect.data import SegmentationSet
from diffseg.errors import UserError

BINARY = {0: "authentic", 255: "edited"}
GENERATORS = ["sd2", "sd3.5", "sdxl", "flux", "glide", "kolors", "hunyuan", "kandinsky"]
CLASS_IDS = {0: "authentic", **{k: name for k, name in enumerate(GENERATORS, start=1)}}
SIZE = (24, 32)  # height, width


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def binary_mask(i: int) -> np.ndarray:
    """0 / 255; every third image is never edited."""
    mask = np.zeros(SIZE, np.uint8)
    if i % 3:
        mask[2:10, 3 + i:15 + i] = 255
    return mask


def class_mask(i: int) -> np.ndarray:
    """Class ids 0..8: two regions by two generators; every third image is never edited."""
    mask = np.zeros(SIZE, np.uint8)
    if i % 3:
        mask[0:8, 0:10] = 1 + i % 8
        mask[12:20, 16:30] = 1 + (i + 3) % 8
    return mask


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


def parquet_files(root, masks) -> None:
    """data/<split>-00000-of-00001.parquet with image and mask cells as the Hub stores them ({bytes, path})."""
    def png(array) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    (root / "data").mkdir(parents=True)
    for split, ids in [("train", [0, 1, 2, 3]), ("test", [4, 5])]:
        pd.DataFrame({"image": [{"bytes": png(_image(i)), "path": f"{i}.png"} for i in ids],
                      "mask": [{"bytes": png(masks(i)), "path": f"{i}_mask.png"} for i in ids]}
                     ).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")


def _params(workdir, mask_values, **official_keys):
    path = write_params(workdir, {"detect": {"dataset": "data/official"},
                                  "official": {"path": "release", "mask_values": mask_values} | official_keys})
    return params_mod.load(path)


def _labels(workdir) -> dict[str, np.ndarray]:
    data = records.StateDir(workdir / "data" / "official")
    return {i: records.read_gray(data.label_path(i)) for i in data.manifest()["image_id"]}


def test_binary_masks_under_the_binary_mapping(workdir):
    split_folders(workdir / "release", binary_mask)
    manifest = official.run(_params(workdir, BINARY))
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
    assert report["layout"] == "split folders" and report["skipped"] == []


def test_class_id_masks_under_the_class_mapping(workdir):
    flat_folders(workdir / "release", class_mask)
    manifest = official.run(_params(workdir, CLASS_IDS))
    assert records.read_json(workdir / "data" / "official" / "classes.json") == ["authentic", *GENERATORS]
    assert set(manifest["split"]) == {"train", "val", "test"}  # assigned by the keyed hash, one source each
    labels = _labels(workdir)
    for i in range(9):
        assert np.array_equal(labels[f"img{i}"], class_mask(i))  # value k is the k-th class, nothing merged
    row = manifest.set_index("image_id").loc["img1"]
    assert row["n_edits"] == 2 and row["generators"] == f"{GENERATORS[1]},{GENERATORS[4]}"


def test_parquet_layout(workdir):
    parquet_files(workdir / "release", class_mask)
    manifest = official.run(_params(workdir, CLASS_IDS))
    assert list(manifest["image_id"]) == ["test_000000", "test_000001"] + [f"train_{n:06d}" for n in range(4)]
    assert np.array_equal(_labels(workdir)["test_000001"], class_mask(5))
    assert manifest.set_index("image_id").loc["train_000002", "origin"] == "data/train-00000-of-00001.parquet:2"


@pytest.mark.parametrize("layout, masks, mapping, named, values", [
    (split_folders, binary_mask, CLASS_IDS, "test/00004/mask.png", "255 ("),  # test/ sorts before train/
    (flat_folders, class_mask, BINARY, "masks/img1.png", "2 ("),
])
def test_the_wrong_mapping_is_refused(workdir, capsys, layout, masks, mapping, named, values):
    layout(workdir / "release", masks)
    (workdir / "data" / "official").mkdir(parents=True)
    (workdir / "data" / "official" / "keep.txt").write_text("an earlier conversion")
    with pytest.raises(official.MaskMismatch) as err:
        official.run(_params(workdir, mapping))
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
    manifest = official.run(_params(workdir, BINARY))
    assert len(manifest) == 6
    skipped = records.read_json(workdir / "data" / "official" / "conversion.json")["skipped"]
    reasons = {s["image_id"]: s["reason"] for s in skipped}
    assert set(reasons) == {"img4", "img5", "img6"}
    assert "no mask" in reasons["img4"] and "mask is 5x5" in reasons["img5"] and "corrupt" in reasons["img6"]


def test_it_never_overwrites_the_assembled_dataset(workdir):
    flat_folders(workdir / "release", binary_mask)
    p = params_mod.load(write_params(workdir, {"official": {"path": "release", "mask_values": BINARY}}))
    with pytest.raises(UserError, match="set detect.dataset to another folder"):
        official.run(p)
    p = _params(workdir, BINARY, path="nowhere")
    with pytest.raises(UserError, match="not a folder"):
        official.run(p)
    p = _params(workdir, {})  # the repository's params leave the mapping empty: no guessed encoding
    with pytest.raises(params_mod.ParamsError, match="official.mask_values"):
        official.run(p)


def test_train_and_evaluate_read_it_unchanged(workdir):
    split_folders(workdir / "release", class_mask)
    write_params(workdir, {"detect": {"dataset": "data/official"},
                           "official": {"path": "release", "mask_values": CLASS_IDS}})
    assert cli.main(["official"]) == 0
    p = params_mod.load("params.yaml")
    x, y, _ = SegmentationSet(workdir / "data" / "official", ["train"], "attribution", 32)[0]
    assert tuple(x.shape) == (3, 32, 32) and int(y.max()) <= len(GENERATORS)
    classes = ["authentic", *GENERATORS]
    zoo.save(zoo.build("Unet", "resnet18", len(classes)), workdir / "models" / "detectors" / "tiny",
             {"arch": "Unet", "encoder": "resnet18", "task": "attribution", "classes": classes, "image_size": 32})
    result = evaluate.run(p, "tiny", workdir / "eval.json", workdir / "confusion.json")
    assert result["test_images"] == 2 and result["task"] == "attribution"
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


def test_unknown_folders_stop_and_hidden_ones_are_ignored(workdir):
    split_folders(workdir / "release", binary_mask)
    (workdir / "release" / ".cache" / "huggingface").mkdir(parents=True)  # huggingface-cli's download metadata
    (workdir / "release" / "cross_test" / "00009").mkdir(parents=True)
    with pytest.raises(UserError, match=r"\['cross_test'\] are not split names"):
        official.run(_params(workdir, BINARY))
    manifest = official.run(_params(workdir, BINARY, splits={"cross_test": "test"}))
    assert len(manifest) == 6  # the empty cross_test item has no image and is not an item


def test_mask_modes():
    values = np.array([[0, 255], [255, 0]], np.uint8)
    for img in (Image.fromarray(values), Image.fromarray(values).convert("RGB"), Image.fromarray(values).convert("1")):
        assert np.array_equal(official.mask_array(img, "m.png"), values)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    with pytest.raises(official.BadItem, match="colour image"):
        official.mask_array(Image.fromarray(colour), "m.png")
    wide = Image.fromarray(np.array([[0, 300]], np.uint16))  # 16-bit masks keep their values
    assert official.mask_array(wide, "m.png").tolist() == [[0, 300]]
