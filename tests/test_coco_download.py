"""The real COCO source against a local HTTP server: resumable verified downloads, safe extraction,
seeded selection and the raw COCO folder it writes."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from diffseg.errors import UserError
from diffseg.source.coco import download_coco, select_images
from diffseg.source.download import DownloadError, UnsafeArchiveError, fetch, safe_extract
from http_fixture import FileServer

SPLIT = "val2017"
ZIP = "annotations/annotations_trainval2017.zip"
ELIGIBLE = set(range(1, 9))  # images 1-8 have a polygon; 9 has only a crowd RLE; 10 has nothing
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 18, "name": "dog", "supercategory": "animal"}]


def _jpeg(seed: int, width: int, height: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_coco(root: Path, *, shuffled: bool = False) -> dict:
    """A tiny COCO release under ``root`` (annotations zip + images); returns its instances dict.

    ``shuffled`` writes the same content with images and annotations in another order.
    """
    images, annotations, captions = [], [], []
    for image_id in range(1, 11):
        width, height = 24 + image_id, 20
        name = f"{image_id:012d}.jpg"
        (root / SPLIT).mkdir(parents=True, exist_ok=True)
        (root / SPLIT / name).write_bytes(_jpeg(image_id, width, height))
        images.append({"id": image_id, "file_name": name, "width": width, "height": height, "license": 4,
                       "coco_url": f"http://images.cocodataset.org/{SPLIT}/{name}",
                       "flickr_url": f"http://farm.example/{name}", "date_captured": "2013-11-14 17:02:52"})
        if image_id in ELIGIBLE:
            category = CATEGORIES[image_id % 3]["id"]
            annotations.append({"id": 100 + image_id, "image_id": image_id, "category_id": category,
                                "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]], "area": 80.0,
                                "bbox": [2, 2, 10, 8], "iscrowd": 0})
        elif image_id == 9:
            annotations.append({"id": 109, "image_id": 9, "category_id": 1, "iscrowd": 1, "area": 30.0,
                                "bbox": [0, 0, 2, 15],
                                "segmentation": {"counts": [0, 30, height * width - 30], "size": [height, width]}})
        captions += [{"id": 1000 + 10 * image_id + k, "image_id": image_id, "caption": f"picture {image_id} #{k}"}
                     for k in range(2)]
    if shuffled:
        images, annotations, captions = images[::-1], annotations[3:] + annotations[:3], captions[::-1]
    header = {"info": {"description": "fixture"}, "licenses": [{"id": 4, "name": "CC", "url": "http://x"}]}
    instances = {**header, "images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(root / ZIP, "w") as zf:
        zf.writestr(f"annotations/instances_{SPLIT}.json", json.dumps(instances))
        zf.writestr(f"annotations/captions_{SPLIT}.json",
                    json.dumps({**header, "images": images, "annotations": captions}))
        zf.writestr(f"annotations/person_keypoints_{SPLIT}.json", "{}")
    return instances


@pytest.fixture
def server(tmp_path):
    with FileServer(tmp_path / "www") as srv:
        yield srv


def _run(srv: FileServer, tmp_path: Path, *, sub: str = "", n: int = 3, seed: int = 0,
         out: str = "out", cache: str = "cache", md5: str | None = None) -> tuple[dict, Path]:
    out_dir = tmp_path / out
    summary = download_coco(out_dir, base_url=f"{srv.url}/{sub}".rstrip("/"), split=SPLIT, n_images=n, seed=seed,
                            annotations_zip=ZIP, annotations_md5=md5, cache_dir=tmp_path / cache, progress=False)
    return summary, out_dir


def _selected(out_dir: Path) -> set[int]:
    return {img["id"] for img in json.loads((out_dir / "instances.json").read_text())["images"]}


def test_download_coco_writes_raw_coco_folder(server, tmp_path):
    www = server.root
    source = build_coco(www)
    md5 = hashlib.md5((www / ZIP).read_bytes()).hexdigest()
    summary, out = _run(server, tmp_path, n=3, md5=md5)

    coco = COCO(str(out / "instances.json"))
    ids = set(coco.getImgIds())
    assert len(ids) == 3 and ids <= ELIGIBLE
    assert coco.dataset["categories"] == CATEGORIES
    assert coco.dataset["annotations"] == sorted((a for a in source["annotations"] if a["image_id"] in ids),
                                                 key=lambda a: a["id"])
    for image_id in ids:
        img = coco.imgs[image_id]
        assert any(not a["iscrowd"] for a in coco.imgToAnns[image_id])
        assert img["origin"] == f"coco:{SPLIT}:{image_id}" and img["source_id"] == f"coco-{image_id}"
        original = next(i for i in source["images"] if i["id"] == image_id)
        assert {k: img[k] for k in original} == original
        assert (out / "images" / img["file_name"]).read_bytes() == (www / SPLIT / img["file_name"]).read_bytes()
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(coco.imgs[i]["file_name"] for i in ids)

    captions = json.loads((out / "captions.json").read_text())
    assert {c["image_id"] for c in captions["annotations"]} == ids and len(captions["annotations"]) == 6
    assert {i["id"] for i in captions["images"]} == ids
    for name in ("instances.json", "captions.json"):
        text = (out / name).read_text()
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"

    assert not (tmp_path / "cache" / "annotations" / f"person_keypoints_{SPLIT}.json").exists()
    image_bytes = sum((www / SPLIT / coco.imgs[i]["file_name"]).stat().st_size for i in ids)
    assert summary == {"split": SPLIT, "n_images": 3, "n_annotations": 3, "n_captions": 6, "n_categories": 3,
                       "files_downloaded": 4, "files_reused": 0,
                       "bytes_downloaded": (www / ZIP).stat().st_size + image_bytes, "bytes_reused": 0}


def test_selection_depends_on_seed_and_id_only(server, tmp_path):
    build_coco(server.root / "a")
    build_coco(server.root / "b", shuffled=True)
    picks = {(sub, seed): _selected(_run(server, tmp_path, sub=sub, seed=seed, out=f"out-{sub}-{seed}",
                                         cache=f"cache-{sub}")[1])
             for sub in ("a", "b") for seed in (0, 1)}
    assert all(len(p) == 3 and p <= ELIGIBLE for p in picks.values())
    assert picks["a", 0] == picks["b", 0] and picks["a", 1] == picks["b", 1]
    assert picks["a", 0] != picks["a", 1]

    everything = _run(server, tmp_path, sub="a", n=len(ELIGIBLE), out="out-all", cache="cache-a")[1]
    assert _selected(everything) == ELIGIBLE
    with pytest.raises(UserError, match="n_images=9 but only 8"):
        _run(server, tmp_path, sub="a", n=9, out="out-too-many", cache="cache-a")


def test_select_images_ignores_crowd_only_and_unannotated_images():
    images = [{"id": i} for i in range(1, 5)]
    anns = [{"image_id": 1, "iscrowd": 0}, {"image_id": 2, "iscrowd": 1}, {"image_id": 3, "iscrowd": 0},
            {"image_id": 99, "iscrowd": 0}]
    assert select_images({"images": images, "annotations": anns}, 2, seed=5) == {1, 3}


def test_cached_rerun_downloads_nothing(server, tmp_path):
    build_coco(server.root)
    first, out = _run(server, tmp_path)
    n_requests = len(server.requests)
    assert n_requests == 4
    second, out2 = _run(server, tmp_path, out="out2")
    assert len(server.requests) == n_requests
    assert second["files_downloaded"] == second["bytes_downloaded"] == 0
    assert second["files_reused"] == 4 and second["bytes_reused"] == first["bytes_downloaded"]
    assert (out / "instances.json").read_bytes() == (out2 / "instances.json").read_bytes()


def _blob(server: FileServer, name: str = "blob.bin", n: int = 200_000) -> bytes:
    data = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()
    server.root.mkdir(parents=True, exist_ok=True)
    (server.root / name).write_bytes(data)
    return data


def test_fetch_resumes_partial_part_after_a_cut_response(server, tmp_path):
    data = _blob(server)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    part = dest.with_name("blob.bin.part")
    part.write_bytes(data[:50_000])
    server.cut_after = 30_000
    assert fetch(f"{server.url}/blob.bin", dest, md5=hashlib.md5(data).hexdigest(), retries=3) == dest
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests == [("/blob.bin", "bytes=50000-"), ("/blob.bin", "bytes=80000-")]


def test_fetch_restarts_when_server_ignores_range(server, tmp_path):
    data = _blob(server)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(b"stale bytes that are not the file")
    server.ignore_range = True
    fetch(f"{server.url}/blob.bin", dest, size=len(data), progress=False)
    assert dest.read_bytes() == data and server.requests[0][1] is not None


def test_fetch_finishes_a_part_that_is_already_whole(server, tmp_path):
    data = _blob(server)
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(data)
    fetch(f"{server.url}/blob.bin", dest, progress=False)  # size unknown: the server's 416 says it is whole
    assert dest.read_bytes() == data and server.requests == [("/blob.bin", f"bytes={len(data)}-")]


def test_fetch_skips_a_verified_dest(server, tmp_path):
    data = _blob(server)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(data)
    fetch(f"{server.url}/blob.bin", dest, size=len(data), md5=hashlib.md5(data).hexdigest(), progress=False)
    assert server.requests == []


def test_fetch_md5_mismatch_leaves_nothing(server, tmp_path):
    _blob(server)
    dest = tmp_path / "blob.bin"
    url = f"{server.url}/blob.bin"
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        fetch(url, dest, md5="0" * 32, progress=False)
    assert url in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists() and not dest.with_name("blob.bin.part").exists()


def test_fetch_size_mismatch(server, tmp_path):
    data = _blob(server)
    with pytest.raises(DownloadError, match="size mismatch"):
        fetch(f"{server.url}/blob.bin", tmp_path / "blob.bin", size=len(data) + 1, progress=False)
    assert not (tmp_path / "blob.bin").exists()


def test_fetch_http_404_is_not_retried(server, tmp_path):
    _blob(server)
    server.missing.add("/blob.bin")
    url = f"{server.url}/blob.bin"
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch(url, tmp_path / "blob.bin", retries=3, progress=False)
    assert url in str(err.value) and len(server.requests) == 1
    assert not (tmp_path / "blob.bin").exists()


def test_fetch_unreachable_host_fails_fast(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="unreachable host") as err:
        fetch(url, tmp_path / "x.bin", timeout=1, retries=1, progress=False)
    assert time.monotonic() - start < 2
    assert url in str(err.value) and not (tmp_path / "x.bin").exists()


def _zip_with(path: Path, evil: zipfile.ZipInfo | str, payload: bytes = b"pwned") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("good/ok.txt", b"fine")
        zf.writestr(evil, payload)
    return path


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("good/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("evil", ["../evil.txt", "/abs.txt", "C:/drive.txt", "good/../../evil.txt", "symlink"])
def test_safe_extract_refuses_unsafe_members(tmp_path, evil):
    entry = _symlink_entry() if evil == "symlink" else zipfile.ZipInfo(evil)
    archive = _zip_with(tmp_path / "bad.zip", entry, b"/etc/passwd")
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(UnsafeArchiveError, match="archive member"):
        safe_extract(archive, dest)
    assert not dest.exists() or not any(dest.rglob("*"))
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/abs.txt").exists()


def test_safe_extract_members_and_missing_member(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("annotations/a.json", b"A")
        zf.writestr("annotations/b.json", b"B")
        zf.writestr("annotations/", b"")
    dest = tmp_path / "dest"
    assert safe_extract(archive, dest, ["annotations/b.json"]) == [dest.resolve() / "annotations" / "b.json"]
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["b.json"]
    assert {p.name for p in safe_extract(archive, dest)} == {"a.json", "b.json"}
    with pytest.raises(ValueError, match="no member.*annotations/c.json"):
        safe_extract(archive, dest, ["annotations/c.json"])
