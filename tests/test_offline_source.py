"""The offline source writes a raw COCO folder that pycocotools reads, deterministically by seed."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from diffseg.source import offline

SIZE, N_CROPS, N_PROCEDURAL, SEED = 128, 6, 8, 3
# Written out independently of the module, from the COCO 2017 category list.
COCO_2017_IDS = {"person": 1, "motorcycle": 4, "stop sign": 13, "bench": 15, "cat": 17, "tie": 32, "frisbee": 34,
                 "sports ball": 37, "kite": 38, "cup": 47, "spoon": 50, "book": 84, "clock": 85}
PHOTO_CATEGORIES = {"astronaut": ["person"], "chelsea": ["cat"], "coffee": ["cup", "spoon"], "rocket": [],
                    "stereo_motorcycle": ["motorcycle", "bench"], "china": [], "flower": [],
                    "grace_hopper": ["person", "tie"]}


def _build(root: Path, seed: int) -> tuple[Path, dict]:
    summary = offline.build_offline_coco(root, seed=seed, n_crops=N_CROPS, n_procedural=N_PROCEDURAL, size=SIZE)
    return root, summary


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    return _build(tmp_path_factory.mktemp("offline") / "raw", SEED)


@pytest.fixture(scope="module")
def coco(built) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(str(built[0] / "instances.json"))


@pytest.fixture(scope="module")
def photos() -> list[offline.Photo]:
    return offline.load_photos()


def _by_kind(coco: COCO, kind: str) -> list[dict]:
    return [img for img in coco.imgs.values() if img["origin"].split(":")[0] == kind]


def test_counts_equal_the_arguments(built, coco):
    _, summary = built
    assert summary["photo"] == len(PHOTO_CATEGORIES)
    assert (summary["crop"], summary["procedural"]) == (N_CROPS, N_PROCEDURAL)
    assert len(coco.imgs) == len(PHOTO_CATEGORIES) + N_CROPS + N_PROCEDURAL
    assert len(_by_kind(coco, "crop")) == N_CROPS
    assert len(_by_kind(coco, "procedural")) == N_PROCEDURAL
    assert summary["annotations"] == len(coco.anns)
    assert len({img["file_name"] for img in coco.imgs.values()}) == len(coco.imgs)


def test_every_image_and_annotation_decodes(built, coco):
    root, _ = built
    for img in coco.imgs.values():
        with Image.open(root / "images" / img["file_name"]) as pil:
            assert pil.mode == "RGB"
            assert pil.size == (img["width"], img["height"])
        assert max(img["width"], img["height"]) == SIZE
        assert img["license"] and isinstance(img["source_id"], str)
    assert coco.anns
    for ann in coco.anns.values():
        img = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann)
        assert mask.shape == (img["height"], img["width"])
        assert mask.sum() >= offline.MIN_AREA
        assert ann["area"] == pytest.approx(mask.sum())
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["iscrowd"] == 0
    assert {c["name"]: c["id"] for c in coco.dataset["categories"]} == COCO_2017_IDS


def test_photos_carry_their_hand_annotations(coco):
    photos = {img["source_id"]: img for img in coco.imgs.values() if img["id"] < offline.CROP_ID0}
    assert set(photos) == set(PHOTO_CATEGORIES)
    for name, img in photos.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert [coco.cats[a["category_id"]]["name"] for a in anns] == PHOTO_CATEGORIES[name]
        assert all(isinstance(a["segmentation"], list) for a in anns)  # hand-traced polygons


def test_captions_cover_every_image(built, coco):
    captions = json.loads((built[0] / "captions.json").read_text())
    assert captions["images"] == coco.dataset["images"]
    described = {c["image_id"] for c in captions["annotations"]}
    assert described == set(coco.imgs)
    assert len({c["id"] for c in captions["annotations"]}) == len(captions["annotations"])
    assert all(c["caption"][0].isupper() and c["caption"].endswith(".") for c in captions["annotations"])


def test_crops_share_source_id_with_their_photo(coco):
    photo_by_origin = {img["origin"]: img for img in coco.imgs.values() if img["id"] < offline.CROP_ID0}
    for crop in _by_kind(coco, "crop"):
        photo = photo_by_origin[crop["origin"].removeprefix("crop:")]
        assert crop["source_id"] == photo["source_id"]
        assert crop["license"] == photo["license"]
        if PHOTO_CATEGORIES[photo["source_id"]]:
            assert coco.getAnnIds(imgIds=[crop["id"]]), f"crop {crop['file_name']} lost every instance"
    for scene in _by_kind(coco, "procedural"):
        if scene["origin"] == "procedural":
            assert scene["source_id"] == scene["file_name"].removesuffix(".png")
        else:
            assert scene["source_id"] == photo_by_origin[scene["origin"].removeprefix("procedural:")]["source_id"]


def test_scene_masks_are_exactly_the_visible_pixels(photos):
    kinds, backdrops = set(), set()
    for index in range(12):
        scene = offline.render_scene(photos, SEED, index, SIZE)
        kinds |= {layer.category for layer in scene.layers}
        backdrops.add(scene.photo is None)
        covered = np.zeros((SIZE, SIZE), dtype=bool)
        expected = []
        for layer in scene.layers:
            # Each shape is drawn alone on an empty (all-zero) canvas: its mask must be exactly the painted
            # pixels (palette colours are never pure black, so painted means non-zero).
            assert np.array_equal(layer.rgb.any(axis=-1), layer.mask), layer.category
        for layer in reversed(scene.layers):  # the last object drawn is fully visible
            visible = layer.mask & ~covered
            covered |= layer.mask
            if visible.sum() >= offline.MIN_AREA:
                expected.append((layer.category, visible))
                assert np.array_equal(scene.image[visible], layer.rgb[visible])
        expected.reverse()
        drawn = scene.instances[len(scene.instances) - len(expected):]
        assert [c for c, _ in drawn] == [c for c, _ in expected]
        for (_, got), (_, want) in zip(drawn, expected):
            assert np.array_equal(got, want)
        assert np.array_equal(scene.image[~covered], scene.background[~covered])
        for _, mask in scene.instances[:len(scene.instances) - len(expected)]:  # the photo's own instances
            assert not (mask & covered).any()
        overlap = np.zeros((SIZE, SIZE), dtype=int)
        for _, mask in drawn:
            overlap += mask
        assert overlap.max() <= 1, "visible masks of drawn objects overlap"
    assert kinds == set(offline.SHAPES) and backdrops == {True, False}, "the scenes checked miss a shape or backdrop"


def test_written_scene_matches_its_render(built, coco, photos):
    root, _ = built
    for index in (0, N_PROCEDURAL - 1):
        scene = offline.render_scene(photos, SEED, index, SIZE)
        image_id = offline.SCENE_ID0 + index
        written = np.asarray(Image.open(root / "images" / coco.imgs[image_id]["file_name"]))
        assert np.array_equal(written, scene.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(scene.instances)
        for ann, (category, mask) in zip(anns, scene.instances):
            assert ann["category_id"] == COCO_2017_IDS[category]
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)


def test_same_seed_is_byte_identical_other_seed_differs(built, tmp_path):
    first, _ = built
    again, _ = _build(tmp_path / "again", SEED)
    other, _ = _build(tmp_path / "other", SEED + 1)
    assert _hashes(first) == _hashes(again)
    before, after = _hashes(first), _hashes(other)
    changed = {name for name in before if after[name] != before[name]}
    assert any(name.startswith("images/crop_") for name in changed)
    assert any(name.startswith("images/procedural_") for name in changed)
    assert not changed & {f"images/{name}.png" for name in PHOTO_CATEGORIES}, "photos must not depend on the seed"


def test_polygons_lie_inside_the_photos(photos):
    for photo in photos:
        height, width = photo.pixels.shape[:2]
        for category, polygon in photo.polygons:
            assert category in COCO_2017_IDS
            assert len(polygon) % 2 == 0 and len(polygon) >= 16
            assert all(0 <= x <= width for x in polygon[0::2]) and all(0 <= y <= height for y in polygon[1::2])


def test_rejects_tiny_size(tmp_path):
    with pytest.raises(ValueError, match="size"):
        offline.build_offline_coco(tmp_path, seed=0, n_crops=0, n_procedural=0, size=8)
