"""``diffseg predict``: a saved detector on real image files of every kind, and clean refusals of bad ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import write_params
from dataset_fixture import build_dataset
from diffseg import cli, records
from diffseg import params as params_mod
from diffseg.detect import predict, zoo
from diffseg.detect.data import prepare
from diffseg.detect.metrics import binary_view, image_score
from diffseg.detect.scoring import predict_probs
from diffseg.errors import UserError

STEPS = 20  # full-batch steps: enough for a U-Net to separate bright squares from dark noise


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A U-Net trained for a few steps to find the bright squares of the dataset fixture (binary task)."""
    torch.manual_seed(0)
    data = records.StateDir(build_dataset(tmp_path_factory.mktemp("train"), n=6, size=64))
    ids = sorted(p.stem for p in data.root.joinpath("images").glob("*.png"))
    pairs = [prepare(data.image(i), (records.read_gray(data.label_path(i)) > 0).astype(np.uint8), 64) for i in ids]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    model = zoo.build("Unet", "resnet18", 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("detectors") / "tiny"
    zoo.save(model.eval(), folder, {"arch": "Unet", "encoder": "resnet18", "task": "binary",
                                    "classes": ["authentic", "edited"], "image_size": 64, "name": "tiny"})
    return folder


@pytest.fixture
def project(workdir, checkpoint):
    write_params(workdir)
    (workdir / "models" / "detectors").mkdir(parents=True)
    (workdir / "models" / "detectors" / "tiny").symlink_to(checkpoint)
    return workdir


def _photo(h: int = 90, w: int = 120) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy) % 256], axis=2).astype(np.uint8)


def _square(edited: bool, seed: int) -> np.ndarray:
    """Dark noise, with a bright square (what the tiny detector learnt to call edited) when ``edited``."""
    image = np.random.default_rng(seed).integers(0, 120, (64, 64, 3), dtype=np.uint8)
    if edited:
        image[16:40, 20:44] = 200
    return image


def test_overlay_areas_and_score(project, capsys):
    Image.fromarray(_photo()).save(project / "photo.jpg", quality=90)
    assert cli.main(["predict", "photo.jpg", "--detector", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "1 image(s) in" in out and "0 skipped" in out and "photo.jpg: image score" in out
    with Image.open(project / "predictions" / "photo_pred.png") as overlay:
        assert overlay.format == "PNG" and overlay.size[0] >= 600  # room for the legend
    scores = records.read_json(project / "predictions" / "scores.json")
    assert scores["detector"] == "tiny" and scores["classes"] == ["authentic", "edited"]
    (row,) = scores["images"]
    assert row["path"] == "photo.jpg" and (row["width"], row["height"]) == (120, 90)
    assert row["overlay"] == str(Path("predictions") / "photo_pred.png")
    assert list(row["areas"]) == ["authentic", "edited"] and sum(row["areas"].values()) == pytest.approx(1.0, abs=1e-5)
    # A 16-bit grayscale PNG goes through the whole path too.
    Image.fromarray(np.asarray(Image.fromarray(_photo()).convert("L"), np.uint16) * 257).save(project / "deep.png")
    result = predict.run(params_mod.load("params.yaml"), ["deep.png"], "tiny", project / "elsewhere")
    assert (project / "elsewhere" / "deep_pred.png").is_file() and result["images"][0]["notes"] == "converted from I;16"


def test_many_inputs_one_model_load_batched(project, capsys, monkeypatch):
    """Files, folders and globs; a non-image in a folder is a recorded skip; the model loads once; scores equal the
    evaluate path's (predict_probs, binary view, image_score) and do not depend on the batch size."""
    (project / "shots" / "deeper").mkdir(parents=True)
    truth = {}
    for k in range(5):
        path = project / "shots" / ("deeper" if k == 4 else "") / f"s{k}.png"
        Image.fromarray(_square(k % 2 == 0, k)).save(path)
        truth[str(path.relative_to(project))] = k % 2 == 0
    Image.fromarray(_square(True, 9)).save(project / "s0.png")  # the same stem as shots/s0.png
    (project / "shots" / "readme.txt").write_text("not pixels\n")
    (project / "shots" / ".hidden.png").write_bytes(b"skipped: hidden")
    loads = []
    real_load = zoo.load
    monkeypatch.setattr(zoo, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    results = {}
    for batch in (1, 3):
        argv = ["predict", "s0.png", "shots", "shots/deeper/*.png", "--model", "models/detectors/tiny",
                "--batch-size", str(batch), "--out", f"out{batch}"]
        assert cli.main(argv + (["--format", "csv"] if batch == 3 else [])) == 0
        assert "6 image(s) in" in capsys.readouterr().out
        results[batch] = pd.read_csv(project / "out3" / "scores.csv") if batch == 3 else \
            pd.DataFrame(records.read_json(project / "out1" / "scores.json")["images"])
    assert len(loads) == 2  # once per command, not per batch or image
    one, three = results[1], results[3]
    # Argument order, each folder sorted; shots/deeper/s4.png named twice (folder and glob) is predicted once.
    assert list(one["path"]) == ["s0.png", "shots/deeper/s4.png", "shots/readme.txt", "shots/s0.png", "shots/s1.png",
                                 "shots/s2.png", "shots/s3.png"]
    skipped = one[one["status"] == "skipped"]
    assert list(skipped["path"]) == ["shots/readme.txt"]
    assert skipped["reason"].iloc[0].startswith("not a readable image")
    ok = one[one["status"] == "ok"].set_index("path")
    assert list(ok["overlay"]) == ["out1/s0_pred.png", "out1/s4_pred.png", "out1/s0_2_pred.png", "out1/s1_pred.png",
                                   "out1/s2_pred.png", "out1/s3_pred.png"]
    assert all((project / o).is_file() for o in ok["overlay"])
    assert np.allclose(three.set_index("path").loc[ok.index, "image_score"], ok["image_score"], atol=1e-5)
    assert np.allclose(three.set_index("path").loc[ok.index, "area_edited"],
                       [a["edited"] for a in ok["areas"]], atol=1e-5)
    model, config = real_load(project / "models" / "detectors" / "tiny")
    for path, edited in truth.items():
        probs = predict_probs(model, [records.read_rgb(project / path)], 64, "cpu")[0]
        assert ok.loc[path, "image_score"] == pytest.approx(image_score(binary_view(probs)[0]), abs=1e-6)
        assert ok.loc[path, "verdict"] == ("edited" if edited else "authentic")  # the detector learnt the squares


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK"])
def test_odd_modes_are_converted(tmp_path, mode):
    rgb = Image.fromarray(_photo())
    image = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257) if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / ("odd.jpg" if mode == "CMYK" else "odd.png")
    image.save(path)
    pixels, notes = predict.load_image(path)
    assert pixels.shape == (90, 120, 3) and pixels.dtype == np.uint8
    assert notes == [f"converted from {image.mode}"]


@pytest.mark.parametrize("name, content, message", [
    ("missing.png", None, "missing.png: no such file or folder"),
    ("missing/*.png", None, "missing/*.png: no file matches this pattern outside --out"),
    ("folder", "dir", "folder: a folder with no files outside --out"),
])
def test_bad_path_is_one_line_and_exit_2(project, capsys, name, content, message):
    Image.fromarray(_photo()).save(project / "photo.png")
    if content == "dir":
        (project / name).mkdir()
    assert cli.main(["predict", "photo.png", name, "--detector", "tiny"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"diffseg predict: {message}\n" and not (project / "predictions").exists()


@pytest.mark.parametrize("name, content, reason", [
    ("notes.png", b"just some text, not pixels\n", "not a readable image (cannot identify image file"),
    ("broken.png", "truncate", "not a readable image ("),
])
def test_unreadable_file_is_a_recorded_skip(project, capsys, name, content, reason):
    path = project / name
    if content == "truncate":  # noise, so the PNG is large enough to cut in half
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    assert cli.main(["predict", name, "--detector", "tiny"]) == 2  # nothing readable: nothing to score
    err = capsys.readouterr().err
    assert f"skipped {name}: {reason}" in err and "Traceback" not in err
    assert err.splitlines()[-1] == "diffseg predict: no readable image among the 1 file(s) given"
    Image.fromarray(_photo()).save(project / "photo.png")
    assert cli.main(["predict", name, "photo.png", "--detector", "tiny", "--format", "csv"]) == 0
    rows = pd.read_csv(project / "predictions" / "scores.csv", keep_default_na=False)
    assert list(rows["status"]) == ["skipped", "ok"] and rows["reason"][0].startswith(reason)


def test_missing_detector_and_bad_out(project, capsys):
    Image.fromarray(_photo()).save(project / "photo.png")
    assert cli.main(["predict", "photo.png"]) == 2  # the default, params' first detector, was never trained
    assert "no trained detector 'fcn8s'" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--out", "photo.png", "--detector", "tiny"]) == 2
    assert "--out photo.png: a file" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--model", "models", "--detector", "tiny"]) == 2
    assert "give --detector or --model, not both" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--model", "models"]) == 2
    assert "--model models: not a saved detector" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--detector", "tiny", "--batch-size", "0"]) == 2
    assert "--batch-size 0: must be at least 1" in capsys.readouterr().err
    assert records.read_rgb(project / "photo.png").shape == (90, 120, 3)  # the input was not overwritten


def test_large_images_are_downsized_not_fatal(tmp_path):
    Image.fromarray(_photo(300, 500)).save(tmp_path / "wide.png")
    pixels, notes = predict.load_image(tmp_path / "wide.png", max_side=200)
    assert pixels.shape == (120, 200, 3) and "downsized from 500x300 to 200x120" in notes
    # Above the pixel budget a JPEG is decoded at reduced scale; a PNG cannot be, so it is refused.
    Image.fromarray(_photo(400, 600)).save(tmp_path / "big.jpg", quality=90)
    pixels, notes = predict.load_image(tmp_path / "big.jpg", max_side=150, max_pixels=100_000)
    assert max(pixels.shape[:2]) <= 150 and "decoded at reduced size from 600x400" in notes
    Image.fromarray(_photo(400, 600)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match="decoding limit"):
        predict.load_image(tmp_path / "big.png", max_pixels=100_000)


def test_decompression_bomb_is_refused_cleanly(project, capsys):
    # 180 megapixels of a 1-bit PNG (22 kB on disk): PIL itself raises DecompressionBombError on open.
    Image.new("1", (20000, 9000)).save(project / "bomb.png")
    assert cli.main(["predict", "bomb.png", "--detector", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "decoding limit" in err and "Traceback" not in err
