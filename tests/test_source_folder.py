"""A folder of plain images (``source.kind: folder``): formats, skips, ids and order, and the planners on it."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.errors import UserError
from diffseg.propose import stage as propose_stage
from diffseg.seeding import keyed_unit
from diffseg.source import folder, stage
from vlm_fixture import candidate, one_turn_params, plan_answer, write_replay

# relative path -> (status, reason or note, width, height) after ingest with min_side 64, max_side 320.
EXPECT = {
    "a.png": ("ok", "", 80, 72),
    "b.JPG": ("ok", "", 96, 64),
    "e.tiff": ("ok", "", 72, 66),
    "f.gif": ("ok", "converted from P", 70, 65),
    "g.png": ("ok", "converted from RGBA", 66, 70),
    "large.png": ("ok", "downscaled from 400x200", 320, 160),
    "portrait.jpg": ("ok", "turned upright (EXIF orientation 6)", 64, 96),
    "sub/c.webp": ("ok", "", 70, 70),
    "sub/deeper/d.bmp": ("ok", "", 64, 80),
    "sub/broken.jpg": ("skipped", "corrupt or unsupported image: UnidentifiedImageError: cannot identify image "
                                  "file 'sub/broken.jpg'", 0, 0),
    "tiny.png": ("skipped", "smaller than min_side=64 (40x30)", 0, 0),
}
IGNORED = ["notes.txt", ".hidden.png", ".thumbnails/a.png"]
LOSSLESS = {"a.png", "e.tiff", "sub/c.webp", "sub/deeper/d.bmp"}  # decoded pixels are the written ones


def _pixels(name: str) -> np.ndarray:
    width, height = {"large.png": (400, 200), "tiny.png": (40, 30), "portrait.jpg": (96, 64)}.get(
        name, EXPECT.get(name, ("", "", 64, 64))[2:])
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_folder(root: Path, names: list[str] | None = None) -> Path:
    """The images of EXPECT (and the files that are not images) under ``root``, written in ``names`` order."""
    for name in names or [*EXPECT, *IGNORED]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = _pixels(name)
        if name == "sub/broken.jpg":
            path.write_bytes(b"this is not a JPEG")
        elif name == "notes.txt":
            path.write_text("holiday photos")
        elif name == "f.gif":
            Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
        elif name == "g.png":
            Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 200, np.uint8)])).save(path)
        elif name == "portrait.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # stored sideways: the viewer turns it 90 degrees clockwise
            Image.fromarray(pixels).save(path, exif=exif, quality=95)
        elif name == "sub/c.webp":
            Image.fromarray(pixels).save(path, lossless=True)
        else:
            Image.fromarray(pixels).save(path)
    return root


def _id(relpath: str) -> int:
    return int.from_bytes(hashlib.sha256(b"folder\x1f" + relpath.encode()).digest()[:8], "big") % 10 ** 12


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _params(workdir: Path, path: str, n_images: int = 64, seed: int = 0) -> params_mod.Params:
    return params_mod.load(write_params(workdir, {"seed": seed, "source": {
        "kind": "folder", "n_images": n_images, "max_side": 320, "folder": {"path": path}}}))


def test_every_format_is_decoded_and_every_skip_names_the_file(workdir):
    write_folder(workdir / "photos")
    manifest = stage.run(_params(workdir, "photos"), workdir / "source")
    state = records.StateDir(workdir / "source")

    got = {row.file: (row.status, row.reason or row.note, row.width, row.height) for row in manifest.itertuples()}
    assert got == EXPECT
    assert list(manifest["image_id"]) == sorted(f"{_id(name):012d}" for name in EXPECT)
    rows = manifest.set_index("file")
    assert rows.loc["a.png", "image_id"] == "174062420677"  # pinned: ids must never change with the code
    assert list(rows.loc["sub/c.webp", ["origin", "source_id", "license", "url"]]) == \
        ["folder:sub/c.webp", "sub/c.webp", "", ""]
    for name in LOSSLESS:
        assert np.array_equal(state.image(rows.loc[name, "image_id"]), _pixels(name)), name
    with Image.open(workdir / "photos" / "b.JPG") as img:
        assert np.array_equal(state.image(rows.loc["b.JPG", "image_id"]), np.asarray(img))
    with Image.open(workdir / "photos" / "portrait.jpg") as img:
        stored = np.asarray(img)
    assert np.array_equal(state.image(rows.loc["portrait.jpg", "image_id"]), np.rot90(stored, k=-1))
    assert sorted(p.name for p in (state.root / "images").iterdir()) == \
        sorted(f"{rows.loc[name, 'image_id']}.png" for name, e in EXPECT.items() if e[0] == "ok")

    kept = sorted((_id(name), w, h) for name, (status, _, w, h) in EXPECT.items() if status == "ok")
    assert state.annotations() == {
        "annotated": False, "annotations": [], "captions": [], "categories": [],
        "images": [{"id": i, "file_name": f"{i:012d}.png", "width": w, "height": h} for i, w, h in kept]}


def test_state_depends_on_relative_paths_only(tmp_path, monkeypatch):
    """Two copies written in opposite orders, in different places: the same bytes; a new file changes no other."""
    names = [*EXPECT, *IGNORED]
    for run, order in (("one", names), ("two", names[::-1])):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        write_folder(tmp_path / run / "deep" / "photos", order)
        stage.run(_params(tmp_path / run, str(tmp_path / run / "deep" / "photos")), Path("source"))
    first = _tree(tmp_path / "one" / "source")
    assert first == _tree(tmp_path / "two" / "source")
    assert not any(str(tmp_path).encode() in data for data in first.values())

    write_folder(tmp_path / "two" / "deep" / "photos", ["zz/new.png"])
    manifest = stage.run(_params(tmp_path / "two", "deep/photos"), Path("source"))
    assert len(manifest) == len(EXPECT) + 1
    grown = _tree(tmp_path / "two" / "source")
    assert set(grown) - set(first) == {f"images/{_id('zz/new.png'):012d}.png"}
    assert all(grown[name] == data for name, data in first.items() if name.startswith("images/"))


def test_n_images_takes_the_first_in_a_seeded_keyed_order(tmp_path):
    write_folder(tmp_path / "photos")

    def chosen(n: int, seed: int) -> list[str]:
        return folder.scan(tmp_path / "photos", n, seed).selected

    for seed in (0, 1):
        ranked = sorted(EXPECT, key=lambda name: keyed_unit(seed, "folder-select", name))
        assert chosen(4, seed) == ranked[:4]
        assert chosen(3, seed) == ranked[:3]
        assert chosen(100, seed) == ranked
    assert chosen(4, 0) == ["a.png", "large.png", "e.tiff", "f.gif"]  # pinned
    assert set(chosen(4, 0)) != set(chosen(4, 1))
    found = folder.scan(tmp_path / "photos", 4, 0)
    assert found.summary() == {"folder": str(tmp_path / "photos"), "image_files": len(EXPECT), "selected": 4,
                               "other_files": 1}


def test_bad_folders_stop_with_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        folder.scan(tmp_path / "nowhere", 5, 0)
    assert str(err.value) == f"source.folder.path: {tmp_path / 'nowhere'} is not a folder"
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no images here")
    (tmp_path / "texts" / ".hidden.png").write_bytes(b"")
    with pytest.raises(UserError) as err:
        folder.scan(tmp_path / "texts", 5, 0)
    assert str(err.value) == (f"source.folder.path: no image files (.avif .bmp .gif .jpeg .jpg .png .ppm .tif .tiff "
                              f".webp) in {tmp_path / 'texts'}")
    with pytest.raises(params_mod.ParamsError) as err:
        params_mod.load(write_params(tmp_path, {"source": {"kind": "folder"}}))
    assert str(err.value).endswith("key 'source.folder.path': must name the folder of images (source.kind is folder)")


def test_cli_reports_skips_by_relative_path(workdir):
    write_folder(workdir / "photos")
    write_params(workdir, {"source": {"kind": "folder", "max_side": 320, "folder": {"path": "photos"}}})
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=workdir, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines == [
        "source (folder): {'folder': 'photos', 'image_files': 11, 'selected': 11, 'other_files': 1}",
        "source: 9 images kept, 2 skipped",
        *[f"  skipped {name}: {EXPECT[name][1]}" for name in
          sorted((n for n in EXPECT if EXPECT[n][0] == "skipped"), key=_id)]]


def _folder_state(workdir: Path) -> list[str]:
    write_folder(workdir / "photos", ["a.png", "b.JPG", "large.png"])
    manifest = stage.run(_params(workdir, "photos"), records.SOURCE_DIR)
    return list(manifest["image_id"])


def test_annotations_planner_refuses_a_folder_state(workdir):
    _folder_state(workdir)
    p = one_turn_params(workdir, propose={"planner": "annotations"})
    message = ("propose.planner: annotations needs instance annotations, and data/source has none (its source is a "
               "folder of plain images); set propose.planner: vlm (Qwen2.5-VL plans, Grounded-SAM masks)")
    with pytest.raises(UserError) as err:
        propose_stage.run(p, "t1", records.turn_dir("t1", "plan"))
    assert str(err.value) == message
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "propose", "t1"], cwd=workdir, capture_output=True,
                         text=True)
    assert (run.returncode, run.stderr.splitlines()) == (2, [f"diffseg propose: {message}"])
    assert not records.turn_dir("t1", "plan").exists()


def test_vlm_planner_plans_on_a_folder_state(workdir):
    ids = _folder_state(workdir)
    answers = {("plan", ids[0], 0): plan_answer(candidate("add", "a red umbrella", box=[10, 10, 40, 40])),
               ("plan", ids[1], 0): plan_answer(candidate("remove", "the dog")),
               ("plan", ids[2], 0): plan_answer(candidate("add", "a small robot"))}
    replay = write_replay(workdir / "answers.jsonl", answers)
    p = one_turn_params(workdir, propose={"vlm": {"backend": "replay", "replay": str(replay), "fallback": "none"},
                                          "grounding": {"segmenter": "annotations"}})
    plan = propose_stage.run(p, "t1", records.turn_dir("t1", "plan")).set_index("image_id")
    assert list(plan.loc[ids, "status"]) == ["ok", "skipped", "ok"]
    assert list(plan.loc[ids, "action"]) == ["add", "none", "add"]
    assert list(plan.loc[ids, "category_id"]) == [28, -1, -1]  # an umbrella is a COCO class, a robot is not
    assert plan.loc[ids[1], "reason"] == "vlm: candidate 1 (remove 'the dog'): no annotated instance is a 'the dog'"
