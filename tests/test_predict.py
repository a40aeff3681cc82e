"""``diffseg predict``: a saved detector on real image files of every kind, and clean refusals of bad ones."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import write_params
from diffseg import cli, records
from diffseg import params as params_mod
from diffseg.detect import predict, zoo
from diffseg.errors import UserError

CLASSES = ["authentic", "sd2", "sdxl"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved (untrained) U-Net: predict needs a checkpoint in the zoo's format, not a good one."""
    folder = tmp_path_factory.mktemp("detectors") / "tiny"
    zoo.save(zoo.build("Unet", "resnet18", len(CLASSES)), folder,
             {"arch": "Unet", "encoder": "resnet18", "task": "attribution", "classes": CLASSES, "image_size": 64,
              "name": "tiny"})
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


def test_overlay_areas_and_score(project, capsys):
    Image.fromarray(_photo()).save(project / "photo.jpg", quality=90)
    assert cli.main(["predict", "photo.jpg", "--detector", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "image score" in out and "sdxl" in out and "photo_pred.png" in out
    with Image.open(project / "photo_pred.png") as overlay:
        assert overlay.format == "PNG" and overlay.size[0] >= 600  # room for the legend
    # A 16-bit grayscale PNG goes through the whole path too.
    Image.fromarray(np.asarray(Image.fromarray(_photo()).convert("L"), np.uint16) * 257).save(project / "deep.png")
    result = predict.run(params_mod.load("params.yaml"), project / "deep.png", "tiny", project / "elsewhere" / "o.png")
    assert set(result["areas"]) == set(CLASSES) and sum(result["areas"].values()) == pytest.approx(1.0)
    assert 0.0 <= result["image_score"] <= 1.0 and (project / "elsewhere" / "o.png").is_file()
    assert result["notes"] == ["converted from I;16"]


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
    ("missing.png", None, "no such file"),
    ("notes.png", b"just some text, not pixels\n", "not a readable image"),
    ("broken.png", "truncate", "not a readable image"),
    ("folder", "dir", "not a file"),
])
def test_bad_input_is_one_line_and_exit_2(project, capsys, name, content, message):
    path = project / name
    if content == "truncate":  # noise, so the PNG is large enough to cut in half
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert cli.main(["predict", name, "--detector", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_detector_and_bad_out_name(project, capsys):
    Image.fromarray(_photo()).save(project / "photo.png")
    assert cli.main(["predict", "photo.png"]) == 2  # the default, params' first detector, was never trained
    assert "no trained detector 'fcn8s'" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--detector", "tiny", "--out", "photo.jpg"]) == 2
    assert "must end in .png" in capsys.readouterr().err
    assert cli.main(["predict", "photo.png", "--detector", "tiny", "--out", "photo.png"]) == 2
    assert "is the input image" in capsys.readouterr().err
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
