"""Target phrase -> mask: Grounded-SAM, or the state's own instance masks.

* ``grounded_sam``: Grounding DINO (``GroundingDinoForObjectDetection`` + its processor, both
  ``from_pretrained``) finds the phrase's best box; SAM (``segment_anything``, loaded by
  ``sam_model_registry[sam_type](checkpoint=...)``, Meta's own loader) turns the box into a mask. Both
  load once per stage. Grounding DINO runs ``batch_size`` (image, phrase) pairs per forward; SAM encodes
  each image once and decodes all of that image's boxes in one call.
* ``annotations``: the annotated instance whose category the phrase names. It is an oracle where the
  annotations are right (COCO's are hand-drawn): the annotation-quality table's reference, and a way
  to plan with a VLM but keep COCO's masks.

:func:`refine` is the post-processing every mask gets (hole filling, dilation); the planner applies the
area bounds after it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from diffseg import masks
from diffseg.errors import UserError
from diffseg.params import Grounding
from diffseg.runtime import is_local, load_hint, pick_device, release_memory
from diffseg.sam_twin import register_sam_twin

FULL_IMAGE = 0.98  # a mask covering this share of the image is the whole image, not an object


@dataclass
class Job:
    """Find ``phrase`` in ``image``; ``instances`` (annotations with a 'name') serve the oracle."""

    key: str  # the image id: jobs on one image share one SAM encoding
    image: np.ndarray  # HxWx3 uint8
    phrase: str
    instances: list[dict]


@dataclass
class Segment:
    mask: np.ndarray | None  # boolean HxW, None when nothing was found
    score: float = -1.0  # the detector's box confidence (1.0 for the oracle), -1 when none
    reason: str = ""  # why there is no mask


def names_phrase(name: str, phrase: str) -> bool:
    """Does ``phrase`` name category ``name`` ('the two dogs' names 'dog'; 'hotdog' does not)?"""
    return re.search(rf"\b{re.escape(name.lower())}(e?s)?\b", phrase.lower()) is not None


def named_instances(phrase: str, instances: list[dict]) -> list[dict]:
    """The instances whose category the phrase names, longest category name first ('sports ball' over 'ball')."""
    hits = [a for a in instances if names_phrase(a["name"], phrase)]
    longest = max((len(a["name"]) for a in hits), default=0)
    return [a for a in hits if len(a["name"]) == longest]


def refine(raw: np.ndarray, cfg: Grounding, dilation: int) -> np.ndarray:
    """The mask the generator gets: holes filled (``fill_holes``), then dilated by ``dilation`` pixels."""
    mask = ndimage.binary_fill_holes(raw) if cfg.fill_holes else raw.copy()
    return masks.dilate(mask, dilation)


def mask_problem(raw: np.ndarray, phrase: str) -> str:
    """What makes a segmenter's mask unusable before any bounds: empty, or the whole image."""
    if not raw.any():
        return f"segmenter returned an empty mask for '{phrase}'"
    if raw.mean() >= FULL_IMAGE:
        return f"segmenter mask for '{phrase}' covers the whole image ({raw.mean():.0%})"
    return ""


def create(cfg: Grounding):
    return AnnotationSegmenter() if cfg.segmenter == "annotations" else GroundedSAM(cfg)


class AnnotationSegmenter:
    """The largest annotated instance of the category the phrase names."""

    def load(self) -> None:
        """Nothing to load: masks come with the jobs."""

    def unload(self) -> None:
        """Nothing to release."""

    def segment(self, jobs: list[Job]) -> list[Segment]:
        out = []
        for job in jobs:
            hits = named_instances(job.phrase, job.instances)
            if not hits:
                out.append(Segment(None, reason=f"no annotated instance is a '{job.phrase}'"))
                continue
            best = max(hits, key=lambda a: (float(a.get("area", 0.0)), -int(a["id"])))
            out.append(Segment(masks.rle_decode(best["segmentation"]), 1.0))
        return out


class GroundedSAM:
    """Grounding DINO boxes, SAM masks."""

    def __init__(self, cfg: Grounding):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.processor = self.detector = self.predictor = None

    def load(self) -> None:
        import transformers
        from segment_anything import SamPredictor, sam_model_registry
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        transformers.utils.logging.disable_progress_bar()
        cfg = self.cfg
        if is_local(cfg.detector) and not Path(cfg.detector, "config.json").is_file():
            raise UserError(f"propose.grounding.detector: no model folder at '{cfg.detector}' (config.json "
                            f"missing; the offline twin is built by the twins stage with twins.vlm: true)")
        try:
            self.processor = AutoProcessor.from_pretrained(cfg.detector, revision=cfg.detector_revision)
            self.detector = GroundingDinoForObjectDetection.from_pretrained(cfg.detector,
                                                                            revision=cfg.detector_revision)
        except (OSError, ValueError) as err:
            raise UserError(load_hint("propose.grounding.detector", cfg.detector, err)) from None
        self.detector.to(self.device).eval()
        register_sam_twin()
        if cfg.sam_type not in sam_model_registry:
            raise UserError(f"propose.grounding.sam_type: '{cfg.sam_type}' is not one of "
                            f"{sorted(sam_model_registry)}")
        if not Path(cfg.sam_checkpoint).is_file():
            raise UserError(f"propose.grounding.sam_checkpoint: no file at '{cfg.sam_checkpoint}' (the real "
                            f"checkpoints are Meta's downloads, e.g. https://dl.fbaipublicfiles.com/"
                            f"segment_anything/sam_vit_h_4b8939.pth; offline, the twins stage writes the twin)")
        try:
            sam = sam_model_registry[cfg.sam_type](checkpoint=cfg.sam_checkpoint)
        except (RuntimeError, OSError) as err:  # a checkpoint of another architecture fails in load_state_dict
            raise UserError(f"propose.grounding.sam_checkpoint: '{cfg.sam_checkpoint}' does not load as "
                            f"'{cfg.sam_type}': {str(err).strip().splitlines()[0][:200]}") from None
        self.predictor = SamPredictor(sam.to(self.device).eval())

    def unload(self) -> None:
        self.processor = self.detector = self.predictor = None
        release_memory()

    def segment(self, jobs: list[Job]) -> list[Segment]:
        boxes = self._boxes(jobs)
        out: list[Segment | None] = [None] * len(jobs)
        by_image: dict[str, list[int]] = {}
        for i, (box, score, reason) in enumerate(boxes):
            if box is None:
                out[i] = Segment(None, reason=reason)
            else:
                by_image.setdefault(jobs[i].key, []).append(i)
        for members in by_image.values():
            found = self._masks(jobs[members[0]].image, [boxes[i][0] for i in members])
            for i, mask in zip(members, found):
                out[i] = Segment(mask, boxes[i][1])
        return out

    def _boxes(self, jobs: list[Job]) -> list[tuple[list[float] | None, float, str]]:
        """The highest-scoring box per job above the thresholds, in image pixels (x0, y0, x1, y1)."""
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(jobs), self.cfg.batch_size):
            chunk = jobs[start:start + self.cfg.batch_size]
            # Grounding DINO reads lower-case phrases ended by a period, one query per image.
            texts = [job.phrase.lower().strip().rstrip(".") + "." for job in chunk]
            inputs = self.processor(images=[Image.fromarray(j.image) for j in chunk], text=texts, padding=True,
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.detector(**inputs)
            results = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.cfg.box_threshold,
                text_threshold=self.cfg.text_threshold, target_sizes=[j.image.shape[:2] for j in chunk])
            for job, result in zip(chunk, results):
                if len(result["scores"]) == 0:
                    out.append((None, -1.0, f"grounding found no '{job.phrase}' above box_threshold "
                                            f"{self.cfg.box_threshold}"))
                    continue
                best = int(torch.argmax(result["scores"]))
                out.append(([float(v) for v in result["boxes"][best]], float(result["scores"][best]), ""))
        return out

    def _masks(self, image: np.ndarray, boxes: list[list[float]]) -> list[np.ndarray]:
        """One SAM image encoding, every box decoded in one call (single-mask output per box)."""
        import torch

        self.predictor.set_image(image)
        height, width = image.shape[:2]
        clipped = [[min(max(b[0], 0), width), min(max(b[1], 0), height), min(max(b[2], 0), width),
                    min(max(b[3], 0), height)] for b in boxes]
        tensor = self.predictor.transform.apply_boxes_torch(torch.tensor(clipped, dtype=torch.float32,
                                                                         device=self.device), (height, width))
        with torch.inference_mode():
            found, _, _ = self.predictor.predict_torch(point_coords=None, point_labels=None, boxes=tensor,
                                                       multimask_output=False)
        self.predictor.reset_image()
        return [m[0].cpu().numpy().astype(bool) for m in found]
