"""``synthesize@synthetic``: the source state with a share of its images replaced by text-to-image generations.

The paper builds DiffSeg30k from "images or image prompts" from COCO: some base images are generated from
COCO captions. This stage (on when params ``synthesize`` has its entry, docs/sources.md) picks
``round(share x kept images)`` of the captioned source images in a keyed-hash order, draws for each a
generator from ``synthesize.synthetic.generators`` and one of its captions, and paints the image with that
generator's text-to-image pipeline (:mod:`text2image`) at the generator's native size for the photograph's
aspect. The result goes through the sources' size bounds and PNG encoder. Every other image is copied byte
for byte.

Output (``data/synthetic``), a state like ``data/source``: a generated image loses the photograph's instance
annotations (they describe another picture) and keeps only its prompt as its caption; its manifest row has
``origin`` ``synthetic:<generator>``, the generator, seed and prompt (:data:`records.SYNTHETIC_FIELDS`), and
with ``label: generator`` a label map of the generator's class on every pixel. A generation that fails (NaN,
out of the size bounds) keeps the photograph, with the reason in its note; the stage fails when more than
``max_item_failure`` of the generations fail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from diffseg import records
from diffseg.errors import UserError
from diffseg.images import BadImage, fit_sides
from diffseg.params import Params
from diffseg.resampling import native_size
from diffseg.seeding import keyed_rng, keyed_seed, keyed_unit
from diffseg.synthesize.text2image import Painter


def choose(candidates: list[str], n: int, seed: int) -> list[str]:
    """The ``n`` images to replace: first in a keyed-hash order, so no file or record order matters."""
    return sorted(sorted(candidates, key=lambda i: (keyed_unit(seed, "synthesize", i), i))[:n])


def draws(params: Params, key: str, chosen: list[str], captions: dict[str, list[str]]) -> dict[str, dict]:
    """Per chosen image its generator, seed and prompt, each keyed by the image id."""
    names = params.synthesize[key].generators
    out = {}
    for image_id in chosen:
        rng = keyed_rng(params.seed, "synthesize", "draw", image_id)
        gen = names[int(rng.integers(len(names)))]
        texts = captions[image_id]
        out[image_id] = {"synthetic_generator": gen, "synthetic_seed": keyed_seed(params.seed, "synthesize", image_id),
                         "synthetic_prompt": texts[int(rng.integers(len(texts)))]}
    return out


def run(params: Params, key: str, out_dir: Path) -> pd.DataFrame:
    cfg, where = params.synthesize[key], f"synthesize.{key}"
    source = records.StateDir(records.SOURCE_DIR)
    manifest, coco = source.manifest(), source.annotations()
    coco_id_of = dict(zip(manifest["image_id"], manifest["coco_id"]))
    captions: dict[str, list[str]] = {}
    for cap in coco.get("captions", []):
        captions.setdefault(f"{cap['image_id']:012d}", []).append(cap["caption"])
    captions = {i: sorted(texts) for i, texts in captions.items()}
    ok = sorted(manifest.loc[manifest["status"] == records.OK, "image_id"])
    candidates = [i for i in ok if captions.get(i)]
    n = round(cfg.share * len(ok))
    if n > len(candidates):
        raise UserError(f"key '{where}.share': {cfg.share} of {len(ok)} images is {n}, but only {len(candidates)} "
                        f"of them have a caption to generate from")
    todo = draws(params, key, choose(candidates, n, params.seed), captions)
    painters = {name: Painter(params.generator(name), cfg.device, where) for name in cfg.generators}
    out = records.StateDir(records.fresh_dir(out_dir))

    made, failed = {}, {}
    info = manifest.set_index("image_id")
    for name, painter in painters.items():
        mine = sorted(i for i, d in todo.items() if d["synthetic_generator"] == name)
        if not mine:
            continue
        painter.load()
        for image_id in tqdm(mine, desc=f"synthesize@{key} {name}", unit="img"):
            draw = todo[image_id]
            width, height = native_size(int(info.at[image_id, "width"]), int(info.at[image_id, "height"]),
                                        params.generator(name).resolution)
            pixels = painter.paint(draw["synthetic_prompt"], draw["synthetic_seed"], width, height)
            try:
                if not np.isfinite(pixels).all():
                    raise BadImage("NaN output")
                made[image_id] = fit_sides(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8),
                                           f"generated at {width}x{height}", min_side=params.source.min_side,
                                           max_side=params.source.max_side)
            except BadImage as err:
                failed[image_id] = f"text-to-image by {name} failed ({err}): the photograph is kept"
        painter.unload()

    class_of = {name: k for k, name in enumerate(params.classes)}
    rows = []
    for row in manifest.to_dict("records"):
        image_id = row["image_id"]
        row.update({"synthetic_generator": "", "synthetic_seed": 0, "synthetic_prompt": ""})
        if image_id in made:
            pixels, note = made[image_id]
            draw = todo[image_id]
            gen = params.generator(draw["synthetic_generator"])
            records.write_png(out.image_path(image_id), pixels)
            if cfg.label == "generator":
                records.write_png(out.label_path(image_id),
                                  np.full(pixels.shape[:2], class_of[gen.name], np.uint8))
            row.update(draw, origin=f"synthetic:{gen.name}", url="", note=note, width=int(pixels.shape[1]),
                       height=int(pixels.shape[0]), license=f"generated by {gen.model} from a COCO caption")
        elif row["status"] == records.OK:
            # Bytes as they are: both sides are written by the same encoder.
            records.write_bytes(out.image_path(image_id), source.image_path(image_id).read_bytes())
            if image_id in failed:
                row["note"] = "; ".join(filter(None, [row["note"], failed[image_id]]))
        rows.append(row)
    result = pd.DataFrame(rows)
    records.write_json(out.root / records.ANNOTATIONS, _annotations(coco, made, todo, coco_id_of))
    records.write_table(out.root / records.MANIFEST, result)
    by_generator = result.loc[result["synthetic_generator"] != "", "synthetic_generator"].value_counts()
    print(f"synthesize@{key}: {len(made)} of {len(ok)} images generated {by_generator.sort_index().to_dict()}, "
          f"{len(failed)} failed, label: {cfg.label}")
    for image_id, reason in sorted(failed.items()):
        print(f"  {image_id}: {reason}")
    statuses = pd.Series([records.FAILED if i in failed else records.OK for i in todo], dtype=object)
    records.check_failures(f"synthesize@{key}", statuses, params.max_item_failure)
    return result


def _annotations(coco: dict, made: dict, todo: dict, coco_id_of: dict) -> dict:
    """A generated image keeps no instance (they outline the photograph) and its prompt as its only caption."""
    replaced = {int(coco_id_of[i]): i for i in made}
    images = []
    for img in coco["images"]:
        if img["id"] in replaced:
            height, width = made[replaced[img["id"]]][0].shape[:2]
            img = dict(img, width=int(width), height=int(height))
        images.append(img)
    captions = [c for c in coco.get("captions", []) if c["image_id"] not in replaced
                or c["caption"] == todo[replaced[c["image_id"]]]["synthetic_prompt"]]
    # One caption per generated image even when a photograph had the same text twice.
    seen, kept = set(), []
    for cap in captions:
        if cap["image_id"] in replaced:
            if cap["image_id"] in seen:
                continue
            seen.add(cap["image_id"])
        kept.append(cap)
    return dict(coco, images=images, captions=kept,
                annotations=[a for a in coco["annotations"] if a["image_id"] not in replaced])
