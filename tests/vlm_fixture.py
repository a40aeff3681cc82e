"""A one-turn project for the vlm planner and judge: a source state with known instances, params, transcripts.

Images are drawn with solid objects on noise and go through the real ``ingest``, so the planner reads
the same COCO-format state a real run does. Every image has a cup; some have the awkward instances the
tests need (an instance covering the whole image, one whose mask is empty, one too large to edit).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from conftest import repo_params
from diffseg import masks, params as params_mod, records
from diffseg.source.ingest import image_key, ingest

CUP, WALL, KITE, DOG = 47, 200, 38, 18
CATEGORIES = {CUP: "cup", WALL: "wall", KITE: "kite", DOG: "dog"}


def _square(x: int, y: int, w: int, h: int) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def build_scene(root: Path, n: int, size: tuple[int, int] = (224, 168), extras: dict | None = None) -> list[str]:
    """Raw COCO folder with ``n`` images, ingested into ``root/data/source``; returns the image ids.

    ``extras`` maps a 1-based image number to extra instances: 'wall' (the whole image), 'dog' (60 %).
    """
    raw, rng = root / "raw", np.random.default_rng(0)
    (raw / "images").mkdir(parents=True, exist_ok=True)
    width, height = size
    images, anns, caps = [], [], []
    for i in range(1, n + 1):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels[40:90, 30:80] = (250, 250, 245)  # the cup
        Image.fromarray(pixels).save(raw / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": width, "height": height})
        anns.append({"id": 1000 + i, "image_id": i, "category_id": CUP, "iscrowd": 0, "area": 2500.0,
                     "bbox": [30, 40, 50, 50], "segmentation": _square(30, 40, 50, 50)})
        for k, extra in enumerate((extras or {}).get(i, []), start=1):
            box = {"wall": (0, 0, width, height), "dog": (0, 0, width, int(height * 0.6))}[extra]
            cat = {"wall": WALL, "dog": DOG}[extra]
            anns.append({"id": 1000 * (k + 1) + i, "image_id": i, "category_id": cat, "iscrowd": 0,
                         "area": float(box[2] * box[3]), "bbox": list(box), "segmentation": _square(*box)})
        caps.append({"id": 5000 + i, "image_id": i, "caption": f"A cup on a table, picture {i}."})
    instances = {"images": images, "annotations": anns,
                 "categories": [{"id": c, "name": name, "supercategory": "thing"} for c, name in CATEGORIES.items()]}
    (raw / "instances.json").write_text(json.dumps(instances))
    (raw / "captions.json").write_text(json.dumps({"images": images, "annotations": caps}))
    ingest(raw, root / "data" / "source", min_side=64, max_side=320)
    return [image_key(i) for i in range(1, n + 1)]


def add_empty_instance(root: Path, image_id: str) -> None:
    """A 'kite' instance with an empty mask, as degenerate COCO annotations have (ingest would drop it)."""
    state = records.StateDir(root / "data" / "source")
    coco = state.annotations()
    info = next(img for img in coco["images"] if f"{img['id']:012d}" == image_id)
    empty = np.zeros((info["height"], info["width"]), bool)
    coco["annotations"].append({"id": 9999, "image_id": info["id"], "category_id": KITE, "iscrowd": 0, "area": 0.0,
                                "bbox": [0, 0, 0, 0], "segmentation": masks.rle_encode(empty)})
    records.write_json(state.root / records.ANNOTATIONS, coco)


def one_turn_params(root: Path, propose: dict | None = None, filter_: dict | None = None,
                    **top: object) -> params_mod.Params:
    """The repository's params.yaml reduced to one turn in which every image is edited, the sd2 twin only."""
    data = repo_params()
    data["turns"] = {"t1": {"prev": "data/source"}}
    data["final_state"] = "data/turns/t1/state"
    data["max_item_failure"] = 1.0
    data["edit"]["generators"] = [g for g in data["edit"]["generators"] if g["name"] == "sd2"]
    data["crossgen"]["held_out"] = []
    data["propose"].update({"turn_weights": [0.0, 1.0], "planner": "vlm"})
    for section, over in (("propose", propose or {}), ("filter", filter_ or {})):
        for key, value in over.items():
            if isinstance(value, dict):
                data[section][key].update(value)
            else:
                data[section][key] = value
    data.update(top)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return params_mod.load(path)


def write_replay(path: Path, answers: dict[tuple[str, str, int], str], turn: str = "t1") -> Path:
    """A transcript the replay backend reads: {(role, image_id, attempt): answer}."""
    lines = [{"role": role, "image_id": image_id, "turn": turn, "attempt": attempt, "answer": text, "error": ""}
             for (role, image_id, attempt), text in answers.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def plan_answer(*candidates: dict) -> str:
    return json.dumps({"candidates": list(candidates)})


def candidate(action: str, target: str, box: list | None = None, **extra) -> dict:
    out = {"action": action, "target": target, "prompt": f"{action} {target}, photorealistic",
           "negative_prompt": "blurry", "rationale": "A clear, separate object."}
    if box is not None:
        out["box"] = box
    return {**out, **extra}
