"""A COCO site of broken and unusual image files, served like COCO (images under /<split>/, annotations zipped).

``EXPECT`` maps each file name to the status and the exact reason (skips) or note (kept images) that
``source`` must record for it with ``min_side: 64`` and ``max_side: 128``: the reasons name the file as COCO
names it and nothing of the folder it was read from.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT = "val2017"
ZIP = "annotations/annotations_trainval2017.zip"
MIN_SIDE, MAX_SIDE = 64, 128
BOMB = (100_000, 100_000)  # what the bomb's header claims: 10^10 pixels, over Pillow's limit

# file name -> (status, reason of a skip or note of a kept image)
EXPECT = {
    "000000000001.jpg": ("skipped", "corrupt or unsupported image: OSError: image file is truncated "
                                    "(143 bytes not processed)"),
    "000000000002.jpg": ("skipped", "corrupt or unsupported image: UnidentifiedImageError: cannot identify image "
                                    "file '000000000002.jpg'"),
    "000000000003.jpg": ("skipped", "corrupt or unsupported image: UnidentifiedImageError: cannot identify image "
                                    "file '000000000003.jpg'"),
    "000000000004.jpg": ("ok", "converted from CMYK; downscaled from 160x120"),
    "000000000005.png": ("ok", "converted from I;16; downscaled from 160x120"),
    "000000000006.png": ("ok", "converted from P; downscaled from 160x120"),
    "000000000007.png": ("ok", "converted from RGBA; downscaled from 160x120"),
    "000000000008.png": ("skipped", "smaller than min_side=64 (1x1)"),
    "000000000009.png": ("skipped", "smaller than min_side=64 (4000x3)"),
    "000000000010.png": ("skipped", "corrupt or unsupported image: DecompressionBombError: Image size "
                                    "(10000000000 pixels) exceeds limit of 178956970 pixels, could be "
                                    "decompression bomb DOS attack."),
    "000000000011.png": ("skipped", "corrupt or unsupported image: UnidentifiedImageError: cannot identify image "
                                    "file '000000000011.png'"),
    "000000000012.jpg": ("ok", "downscaled from 12000x9000"),
    # Pillow quotes a path with repr, which doubles a backslash (a Windows-made archive's names carry them).
    "000000000013\\copy.jpg": ("skipped", "corrupt or unsupported image: UnidentifiedImageError: cannot "
                                          "identify image file '000000000013\\copy.jpg'"),
}


def _png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _bare_png(width: int, height: int, bad_crc: bool = False) -> bytes:
    """An 8-bit RGB PNG of one IDAT row per line, built by hand so its header can lie or its CRC be wrong."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = min(height, 4)  # a bomb's header is all there is to it: a few rows of data
    idat = zlib.compress(b"".join(b"\0" + bytes(3 * min(width, 64)) for _ in range(rows)))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr, 0 if bad_crc else None)
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _files(rng: np.random.Generator) -> dict[str, tuple[bytes, int, int]]:
    """Each file's bytes and the size its annotation records (what a correct file would have)."""
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    alpha = np.dstack([rgb, rng.integers(0, 256, (120, 160), dtype=np.uint8)])
    jpeg = _encode(Image.fromarray(rgb), "JPEG", quality=90)
    # A large, smooth photograph-sized JPEG: a gradient compresses to a few hundred kB.
    ramp = np.linspace(0, 255, 12000, dtype=np.float32)
    big = np.broadcast_to(ramp[None, :, None], (9000, 12000, 3)).astype(np.uint8)
    return {
        "000000000001.jpg": (jpeg[:len(jpeg) // 2], 160, 120),
        "000000000002.jpg": (b"", 160, 120),
        "000000000003.jpg": (b"<html><body>404 Not Found</body></html>\n", 160, 120),
        "000000000004.jpg": (_encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90), 160, 120),
        "000000000005.png": (_encode(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"), 160, 120),
        "000000000006.png": (_encode(Image.fromarray(rgb).quantize(16), "PNG"), 160, 120),
        "000000000007.png": (_encode(Image.fromarray(alpha), "PNG"), 160, 120),
        "000000000008.png": (_encode(Image.fromarray(rgb[:1, :1]), "PNG"), 1, 1),
        "000000000009.png": (_encode(Image.fromarray(np.zeros((3, 4000, 3), np.uint8)), "PNG"), 4000, 3),
        "000000000010.png": (_bare_png(*BOMB), *BOMB),
        "000000000011.png": (_bare_png(160, 120, bad_crc=True), 160, 120),
        "000000000012.jpg": (_encode(Image.fromarray(big), "JPEG", quality=75), 12000, 9000),
        "000000000013\\copy.jpg": (b"saved by a browser: not an image\n", 160, 120),
    }


def build_site(www: Path, seed: int = 0) -> None:
    """Write the corpus under ``www`` as COCO's server lays it out, one square instance per image."""
    files = _files(np.random.default_rng(seed))
    (www / SPLIT).mkdir(parents=True)
    images, anns, caps = [], [], []
    for i, (name, (data, w, h)) in enumerate(files.items(), start=1):
        (www / SPLIT / name).write_bytes(data)
        images.append({"id": i, "file_name": name, "width": w, "height": h, "license": 1,
                       "coco_url": f"http://images.cocodataset.org/{SPLIT}/{name}"})
        s = max(1, min(w, h) // 2)
        anns.append({"id": 100 + i, "image_id": i, "category_id": 47, "iscrowd": 0, "area": float(s * s),
                     "bbox": [0, 0, s, s], "segmentation": [[0, 0, s, 0, s, s, 0, s]]})
        caps.append({"id": 200 + i, "image_id": i, "caption": f"A cup on a table number {i}."})
    instances = {"images": images, "annotations": anns,
                 "categories": [{"id": 47, "name": "cup", "supercategory": "kitchen"}]}
    (www / "annotations").mkdir()
    with zipfile.ZipFile(www / ZIP, "w") as zf:
        zf.writestr(f"annotations/instances_{SPLIT}.json", json.dumps(instances))
        zf.writestr(f"annotations/captions_{SPLIT}.json", json.dumps({"images": images, "annotations": caps}))
