"""A COCO copy on disk (``source.coco.local_dir``), read in place: the state a download gives, byte for byte."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import write_params
from diffseg import params as params_mod
from diffseg import records
from diffseg.errors import UserError
from diffseg.source import stage
from diffseg.source.download import safe_extract
from http_fixture import FileServer
from source_fixture import EXPECT, build_coco_site

ZIP = "annotations/annotations_trainval2017.zip"
INSTANCES, CAPTIONS = "annotations/instances_val2017.json", "annotations/captions_val2017.json"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _params(workdir: Path, n_images: int = len(EXPECT), **coco) -> params_mod.Params:
    return params_mod.load(write_params(workdir, {"source": {"kind": "coco", "n_images": n_images, "coco": coco}}))


@pytest.fixture
def site(workdir) -> Path:
    """COCO's layout (val2017/*, the annotations zip), served by the HTTP fixture or read in place."""
    build_coco_site(workdir / "www")
    return workdir / "www"


@pytest.mark.parametrize("layout, n_images", [("zip", 5), ("extracted", len(EXPECT))])
def test_local_copy_gives_the_downloaded_state_byte_for_byte(workdir, site, capsys, layout, n_images):
    with FileServer(site) as server:
        downloaded = stage.run(_params(workdir, n_images, base_url=server.url, cache_dir=str(workdir / "cache")),
                               workdir / "downloaded")
    if layout == "extracted":
        safe_extract(site / ZIP, site, [INSTANCES, CAPTIONS])
        (site / ZIP).unlink()
    capsys.readouterr()
    local = stage.run(_params(workdir, n_images, local_dir=str(site), cache_dir=str(workdir / "unused")),
                      workdir / "local")

    tree = _tree(workdir / "local")
    assert tree == _tree(workdir / "downloaded")
    assert len(local) == len(downloaded) == n_images
    assert sum(name.startswith("images/") for name in tree) == (local["status"] == "ok").sum()
    assert not (workdir / "unused").exists()  # nothing cached, nothing copied
    if n_images == len(EXPECT):
        assert dict(zip(local["file"], local["status"])) == {name: status for name, (status, _) in EXPECT.items()}
        out = capsys.readouterr().out
        assert "source: 6 images kept, 2 skipped" in out
        assert "  skipped tiny.png: smaller than min_side=64 (40x30)" in out.splitlines()


def test_a_missing_image_of_the_copy_is_a_skipped_item(workdir, site):
    (site / "val2017" / "rgb.jpg").unlink()
    manifest = stage.run(_params(workdir, local_dir=str(site)), workdir / "out").set_index("file")
    assert (manifest.loc["rgb.jpg", "status"], manifest.loc["rgb.jpg", "reason"]) == ("skipped", "missing file")
    assert (manifest["status"] == "ok").sum() == 5


def _replace_zip(site: Path, members: dict[str, bytes]) -> Path:
    archive = site / ZIP
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def test_bad_copies_stop_with_one_line_naming_the_path(workdir, site):
    def error(**coco) -> str:
        with pytest.raises(UserError) as err:
            stage.run(_params(workdir, **coco), workdir / "out")
        assert "\n" not in str(err.value)
        return str(err.value)

    assert error(local_dir=str(workdir / "nowhere")) == f"source.coco.local_dir: {workdir / 'nowhere'} is not a folder"
    assert error(local_dir=str(site), split="train2017") == \
        f"source.coco.local_dir: {site / 'train2017'} is not a folder (the train2017 images)"
    md5 = hashlib.md5((site / ZIP).read_bytes()).hexdigest()
    assert error(local_dir=str(site), annotations_md5="0" * 32) == \
        f"{site / ZIP}: md5 {md5}, expected {'0' * 32} (source.coco.annotations_md5)"

    archive = _replace_zip(site, {INSTANCES: (site / "raw" / "instances.json").read_bytes()})
    assert error(local_dir=str(site)) == f"{archive} has no member {CAPTIONS}"
    archive.write_bytes(b"PK not a zip")
    assert error(local_dir=str(site)).startswith(f"{archive}: not a readable zip archive (")
    archive.unlink()
    assert error(local_dir=str(site)) == \
        f"source.coco.local_dir: {site / INSTANCES} not found, nor {archive} to read it from"

    (site / CAPTIONS).write_bytes((site / "raw" / "captions.json").read_bytes())
    (site / INSTANCES).write_text('{"images": [], "annotations": [')
    assert error(local_dir=str(site)).startswith(f"{site / INSTANCES}: not valid JSON (Expecting value: line 1")
    (site / INSTANCES).write_text('{"images": [], "annotations": []}')
    assert error(local_dir=str(site)) == \
        f"{site / INSTANCES}: not a COCO annotation file (it needs 'images', 'annotations', 'categories')"


def test_cli_keeps_the_previous_state_when_the_copy_is_missing(workdir, site):
    stage.run(_params(workdir, local_dir=str(site)), records.SOURCE_DIR)
    before = _tree(workdir / records.SOURCE_DIR)
    write_params(workdir, {"source": {"kind": "coco", "coco": {"local_dir": "coco_copy"}}})
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=workdir, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["diffseg source: source.coco.local_dir: coco_copy is not a folder"]
    assert _tree(workdir / records.SOURCE_DIR) == before
