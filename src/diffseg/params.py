"""The typed schema of ``params.yaml``: every stage loads its parameters through :func:`load`.

Unknown keys, wrong types and out-of-range values stop the run before any work, with a message that
names the key (``ParamsError``). The schema is an omegaconf structured config; defaults here are the
offline profile's, so a missing key falls back to a documented value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diffseg.errors import UserError

ACTIONS = ("add", "remove", "change")


class ParamsError(UserError, ValueError):
    """A bad ``params.yaml``: the message names the offending key."""


@dataclass
class OfflineSource:
    n_crops: int = 16  # random crops of the bundled photographs
    n_procedural: int = 40  # generated scenes with exact instance masks
    size: int = 256  # longer side of the offline images, in pixels


@dataclass
class CocoSource:
    base_url: str = "http://images.cocodataset.org"
    split: str = "val2017"
    annotations_zip: str = "annotations/annotations_trainval2017.zip"
    annotations_md5: Optional[str] = None
    cache_dir: str = "data/cache/coco"  # outside every DVC output, so a re-run reuses downloads


@dataclass
class Source:
    kind: str = "offline"  # offline | coco
    n_images: int = 64  # coco only: how many images to select
    min_side: int = 64  # smaller images are skipped (recorded in the manifest)
    max_side: int = 320  # larger images are downscaled, annotations with them
    offline: OfflineSource = field(default_factory=OfflineSource)
    coco: CocoSource = field(default_factory=CocoSource)


@dataclass
class Turn:
    prev: str = MISSING  # the folder holding the state this turn starts from


@dataclass
class VLM:
    """A vision-language chat model (Qwen2.5-VL) and how to run it; shared by the planner and the judge."""
    backend: str = "transformers"  # transformers: run the model | replay: answers read from a JSONL transcript
    model: str = "models/twins/qwen2_5_vl"  # hub id or folder (Qwen/Qwen2.5-VL-7B-Instruct at paper scale)
    revision: Optional[str] = None  # pinned hub revision; None for local folders
    replay: Optional[str] = None  # the transcript the replay backend answers from (a stage's transcript.jsonl)
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    batch_size: int = 4  # prompts, with their images, per generate call
    max_new_tokens: int = 512
    max_pixels: int = 1003520  # images are downscaled to at most this many pixels before the model sees them


@dataclass
class PlannerVLM(VLM):
    n_candidates: int = 3  # candidate edits asked for per image, tried in order
    max_history: int = 6  # most recent earlier edits of the image shown to the model
    # What an image gets when the VLM yields no usable plan: none (the failure is recorded) or
    # annotations (the annotations planner's plan, with the VLM's failure kept as the row's reason).
    fallback: str = "none"


@dataclass
class Grounding:
    """Target phrase -> mask: Grounding DINO boxes, then SAM masks from those boxes."""
    segmenter: str = "grounded_sam"  # grounded_sam | annotations (the state's instance masks: an oracle)
    detector: str = "models/twins/grounding_dino"  # hub id or folder (IDEA-Research/grounding-dino-base)
    detector_revision: Optional[str] = None
    sam_type: str = "vit_twin"  # a segment_anything.sam_model_registry key (vit_h at paper scale)
    sam_checkpoint: str = "models/twins/sam/sam_vit_twin.pth"  # a local .pth file (Meta's download)
    device: str = "auto"
    box_threshold: float = 0.35  # Grounding DINO box confidence needed to accept a box
    text_threshold: float = 0.25  # token confidence needed for the box's phrase
    batch_size: int = 4  # (image, phrase) pairs per Grounding DINO forward
    fill_holes: bool = True  # SAM masks of textured objects have pinholes the inpainter would keep
    match_iou: float = 0.5  # an annotated instance counts as the target from this IoU with the mask on


@dataclass
class Propose:
    planner: str = "annotations"  # annotations | vlm
    # Probability that an image receives 0, 1, ..., T edits; 0 keeps never-edited negatives.
    turn_weights: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25, 0.25])
    action_weights: dict[str, float] = field(
        default_factory=lambda: {"add": 0.3, "remove": 0.3, "change": 0.4})
    mask_dilation: int = 3  # pixels; inpainting needs a margin around the object outline
    min_area: float = 0.01  # mask area bounds as a fraction of the image
    max_area: float = 0.45
    add_size: list[float] = field(default_factory=lambda: [0.15, 0.35])  # side of an added object, fraction
    vlm: PlannerVLM = field(default_factory=PlannerVLM)  # planner: vlm only
    grounding: Grounding = field(default_factory=Grounding)  # planner: vlm only


@dataclass
class Generator:
    name: str = MISSING  # class name in classes.json
    family: str = MISSING  # adapter family (see diffseg.edit.families)
    model: str = MISSING  # hub id or local folder
    revision: Optional[str] = None  # pinned hub revision; None for local folders
    variant: Optional[str] = None  # weight file variant, e.g. fp16 for repositories that ship only those
    prior: Optional[str] = None  # second checkpoint of two-stage families (kandinsky22): hub id or folder
    prior_revision: Optional[str] = None
    steps: int = 30
    guidance: float = 7.5
    strength: float = 1.0
    resolution: int = 1024  # native side; the image is resized to it and mapped back
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    scheduler: Optional[str] = None  # a diffusers scheduler class name, or None for the checkpoint's
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the pipeline call


@dataclass
class RayCluster:
    """Where the ``ray`` executor runs: a running cluster, or a local one started for the stage."""
    address: Optional[str] = None  # host:port (or ray://host:port); None: RAY_ADDRESS if set, else start locally
    num_workers: int = 2  # actors; each holds one generator at a time
    num_cpus: float = 1.0  # per actor: what Ray reserves (torch threads follow the driver, for identical bytes)
    num_gpus: float = 0.0  # per actor; 1 gives each actor a GPU of its own


@dataclass
class Edit:
    batch_size: int = 4
    # inprocess: one process, generator after generator | ray: actors on a Ray cluster (same output, byte for byte)
    executor: str = "inprocess"
    ray: RayCluster = field(default_factory=RayCluster)
    device: str = "auto"  # auto | cpu | cuda | mps
    cpu_offload: bool = False  # CUDA only: each model moves to the GPU just for its forward pass
    vae_tiling: bool = False  # decode (and encode) large images and batches in tiles and slices
    generators: list[Generator] = field(default_factory=list)


@dataclass
class Twins:
    out: str = "models/twins"
    families: list[str] = field(default_factory=list)
    clip: bool = False  # also build the CLIP image-encoder twin the univfd baseline probes
    vlm: bool = False  # also build the Qwen2.5-VL, Grounding DINO and SAM twins of the vlm planner and judge


@dataclass
class JudgeVLM(VLM):
    max_new_tokens: int = 128
    min_realism: int = 3  # rubric scores are 1..5; an edit needs at least these to be accepted
    min_instruction: int = 3
    on_failure: str = "reject"  # reject | accept an edit whose judge answer stays unusable after the retry


@dataclass
class Filter:
    judge: str = "heuristics"  # heuristics | vlm (the heuristics first, then Qwen2.5-VL on what passed)
    min_area: float = 0.005
    max_area: float = 0.6
    min_change: float = 2.0  # mean absolute change inside the mask, in 8-bit levels
    black_level: float = 3.0  # a generated region darker than this on average is a black output
    vlm: JudgeVLM = field(default_factory=JudgeVLM)  # judge: vlm only


@dataclass
class Assemble:
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    n_figure: int = 12  # images in the sample grid


@dataclass
class Detector:
    arch: str = MISSING  # 'fcn8s' or any smp architecture (DeepLabV3Plus, Segformer, Unet, ...)
    encoder: str = MISSING  # 'vgg16' for fcn8s; any smp encoder otherwise (resnet18, mit_b0, ...)
    encoder_weights: Optional[str] = None  # 'imagenet' at paper scale; None offline (no download)


@dataclass
class Detect:
    dataset: str = "data/dataset"
    task: str = "attribution"  # binary | attribution (authentic + one class per generator)
    image_size: int = 128  # square training / evaluation size
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    class_weights: Optional[list[float]] = None  # per task class; None = uniform
    ignore_index: int = -100  # a label value excluded from the loss (none by default)
    # ce: cross-entropy; ce_dice: plus the Dice loss, which keeps small edited regions from being
    # drowned by the authentic majority (edits cover a few percent of the pixels).
    loss: str = "ce_dice"
    num_workers: int = 0  # DataLoader workers; 0 reads in the training process
    nproc: int = 1  # training processes (DDP) on this machine, one GPU each; 1 = no launcher, one process
    detectors: dict[str, Detector] = field(default_factory=dict)


@dataclass
class Robustness:
    jpeg: list[int] = field(default_factory=lambda: [90, 70, 50])  # JPEG quality
    resize: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.5])  # scale factor
    blur: list[float] = field(default_factory=lambda: [1.0, 2.0])  # Gaussian sigma, pixels
    noise: list[float] = field(default_factory=lambda: [5.0, 10.0])  # Gaussian std, 8-bit levels


@dataclass
class Crossgen:
    detector: str = "segformer"  # a key of detect.detectors, trained on the binary task
    held_out: list[str] = field(default_factory=list)  # generators left out of training, one stage each


@dataclass
class CNNSpot:
    """CNNSpot (Wang et al., CVPR 2020): a ResNet-50 binary classifier with blur + JPEG augmentation."""
    weights: Optional[str] = None  # torchvision ResNet-50 weights: 'IMAGENET1K_V1' at paper scale, None offline
    image_size: int = 64  # square input side (224 in CNNSpot)
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4  # Adam, as in CNNSpot
    weight_decay: float = 0.0
    flip: bool = True  # random horizontal flip
    blur_jpeg_prob: float = 0.1  # chance of each of blur and JPEG per training image ("Blur+JPEG (0.1)"); 0 = off
    blur_sigma: list[float] = field(default_factory=lambda: [0.0, 3.0])  # Gaussian sigma range, pixels
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 100])  # JPEG quality range


@dataclass
class UnivFD:
    """UnivFD (Ojha et al., CVPR 2023): a linear probe on frozen CLIP image features."""
    clip_model: str = "models/twins/clip"  # hub id or folder; 'openai/clip-vit-large-patch14' at paper scale
    revision: Optional[str] = None  # pinned hub revision; None for local folders
    batch_size: int = 16  # feature extraction batch
    probe_c: float = 1.0  # inverse L2 strength of the logistic-regression probe (sklearn's C)
    max_iter: int = 1000  # probe solver iterations


@dataclass
class Baselines:
    cnnspot: CNNSpot = field(default_factory=CNNSpot)
    univfd: UnivFD = field(default_factory=UnivFD)


@dataclass
class Official:
    """A local copy of the official release (Chaos2629/Diffseg30k), converted by ``diffseg official``."""
    path: str = "data/official_release"
    # Mask pixel value -> class name; 'authentic' required. No default: the release does not document its
    # encoding, and omegaconf would merge a default mapping into the user's instead of replacing it.
    mask_values: dict[int, str] = field(default_factory=dict)
    # Release split folder name -> project split (train | val | test).
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "val": "val", "validation": "val", "test": "test"})


@dataclass
class Params:
    seed: int = 0
    max_item_failure: float = 0.5  # a stage fails when more than this share of items fails
    source: Source = field(default_factory=Source)
    twins: Twins = field(default_factory=Twins)
    turns: dict[str, Turn] = field(default_factory=dict)
    final_state: str = MISSING
    propose: Propose = field(default_factory=Propose)
    edit: Edit = field(default_factory=Edit)
    filter: Filter = field(default_factory=Filter)
    assemble: Assemble = field(default_factory=Assemble)
    detect: Detect = field(default_factory=Detect)
    robustness: Robustness = field(default_factory=Robustness)
    crossgen: Crossgen = field(default_factory=Crossgen)
    baselines: Baselines = field(default_factory=Baselines)
    official: Official = field(default_factory=Official)

    @property
    def turn_names(self) -> list[str]:
        return list(self.turns)

    def generator(self, name: str) -> Generator:
        for gen in self.edit.generators:
            if gen.name == name:
                return gen
        raise ParamsError(f"edit.generators: no generator named {name!r}")

    @property
    def classes(self) -> list[str]:
        """``classes.json``: index 0 is authentic, index k the k-th generator in params order."""
        return ["authentic"] + [g.name for g in self.edit.generators]


def load(path: str | Path = "params.yaml") -> Params:
    """Read, type-check and range-check ``path``; raise :class:`ParamsError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    try:
        raw = OmegaConf.load(path)
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        params: Params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ParamsError(f"{path}: key '{key}': {_first_line(err)}") from None
    _check(params)
    return params


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ParamsError(f"params.yaml: key '{key}': {message}")


def _check(p: Params) -> None:
    """Range and consistency checks that types alone cannot express."""
    _require(p.source.kind in ("offline", "coco"), "source.kind", "must be 'offline' or 'coco'")
    _require(p.source.n_images >= 1, "source.n_images", "must be >= 1")
    _require(16 <= p.source.min_side <= p.source.max_side, "source.min_side",
             "must be >= 16 and <= source.max_side")
    _require(0.0 <= p.max_item_failure <= 1.0, "max_item_failure", "must be within [0, 1]")

    names = list(p.turns)
    _require(len(names) >= 1, "turns", "at least one turn is needed")
    for i, name in enumerate(names, start=1):
        _require(name == f"t{i}", f"turns.{name}", f"turns must be named t1, t2, ... in order (expected t{i})")
        expected_prev = "data/source" if i == 1 else f"data/turns/t{i - 1}/state"
        _require(p.turns[name].prev == expected_prev, f"turns.{name}.prev", f"must be {expected_prev!r}")
    _require(p.final_state == f"data/turns/{names[-1]}/state", "final_state",
             f"must be the last turn's state, 'data/turns/{names[-1]}/state'")

    w = p.propose.turn_weights
    _require(len(w) == len(names) + 1, "propose.turn_weights",
             f"needs one weight per turn count 0..{len(names)} ({len(names) + 1} values), got {len(w)}")
    _weights(w, "propose.turn_weights")
    _require(set(p.propose.action_weights) <= set(ACTIONS), "propose.action_weights",
             f"actions must be among {ACTIONS}")
    _weights(list(p.propose.action_weights.values()), "propose.action_weights")
    _require(p.propose.planner in ("annotations", "vlm"), "propose.planner", "must be 'annotations' or 'vlm'")
    _require(0 <= p.propose.mask_dilation <= 64, "propose.mask_dilation", "must be within [0, 64]")
    _fraction_pair(p.propose.min_area, p.propose.max_area, "propose")
    lo, hi = (p.propose.add_size + [0, 0])[:2]
    _require(len(p.propose.add_size) == 2 and 0 < lo <= hi < 1, "propose.add_size",
             "must be [low, high] with 0 < low <= high < 1")

    _require(p.edit.batch_size >= 1, "edit.batch_size", "must be >= 1")
    _require(p.edit.device in ("auto", "cpu", "cuda", "mps"), "edit.device", "must be auto, cpu, cuda or mps")
    _require(p.edit.executor in ("inprocess", "ray"), "edit.executor", "must be 'inprocess' or 'ray'")
    r = p.edit.ray
    _require(r.address is None or r.address.strip() != "", "edit.ray.address", "must be host:port, or null")
    _require(1 <= r.num_workers <= 4096, "edit.ray.num_workers", "must be within [1, 4096]")
    _require(r.num_cpus > 0, "edit.ray.num_cpus", "must be > 0")
    _require(r.num_gpus >= 0, "edit.ray.num_gpus", "must be >= 0")
    _require(len(p.edit.generators) >= 1, "edit.generators", "at least one generator is needed")
    _require(len(p.edit.generators) <= 255, "edit.generators", "at most 255 generators fit a uint8 label")
    seen = set()
    for i, gen in enumerate(p.edit.generators):
        key = f"edit.generators[{i}]"
        _require(re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", gen.name) is not None and gen.name != "authentic",
                 f"{key}.name", "must be lower-case [a-z0-9_.-] and not 'authentic'")
        _require(gen.name not in seen, f"{key}.name", f"duplicate generator name {gen.name!r}")
        seen.add(gen.name)
        _require(gen.steps >= 1, f"{key}.steps", "must be >= 1")
        _require(0.0 < gen.strength <= 1.0, f"{key}.strength", "must be within (0, 1]")
        _require(gen.resolution >= 64 and gen.resolution % 64 == 0, f"{key}.resolution",
                 "must be a multiple of 64, at least 64")
        _require(gen.dtype in ("auto", "float32", "float16", "bfloat16"), f"{key}.dtype",
                 "must be auto, float32, float16 or bfloat16")
        _require(gen.prior is None or gen.prior.strip() != "", f"{key}.prior", "must be a hub id or a folder")
        _require(gen.prior_revision is None or gen.prior is not None, f"{key}.prior_revision",
                 "is set without a prior")

    _fraction_pair(p.filter.min_area, p.filter.max_area, "filter")
    _require(p.filter.min_change >= 0, "filter.min_change", "must be >= 0")
    _require(0 <= p.filter.black_level < 255, "filter.black_level", "must be within [0, 255)")
    _check_vlm_stages(p)

    _require(set(p.assemble.splits) == {"train", "val", "test"}, "assemble.splits",
             "must name exactly train, val and test")
    _weights(list(p.assemble.splits.values()), "assemble.splits")
    _require(p.assemble.n_figure >= 1, "assemble.n_figure", "must be >= 1")
    _check_detect(p)
    _check_baselines(p)
    _check_official(p)


def _check_vlm(v: VLM, key: str) -> None:
    _require(v.backend in ("transformers", "replay"), f"{key}.backend", "must be 'transformers' or 'replay'")
    _require(v.backend != "replay" or bool(v.replay), f"{key}.replay", "the replay backend needs a JSONL transcript")
    _require(bool(v.model), f"{key}.model", "must name a hub id or a folder")
    _require(v.device in ("auto", "cpu", "cuda", "mps"), f"{key}.device", "must be auto, cpu, cuda or mps")
    _require(v.dtype in ("auto", "float32", "float16", "bfloat16"), f"{key}.dtype",
             "must be auto, float32, float16 or bfloat16")
    for name in ("batch_size", "max_new_tokens"):
        _require(getattr(v, name) >= 1, f"{key}.{name}", "must be >= 1")
    _require(v.max_pixels >= 28 * 28, f"{key}.max_pixels", "must be >= 784 (one 28 x 28 patch)")


def _check_vlm_stages(p: Params) -> None:
    pv, g, j = p.propose.vlm, p.propose.grounding, p.filter.vlm
    _check_vlm(pv, "propose.vlm")
    _require(1 <= pv.n_candidates <= 10, "propose.vlm.n_candidates", "must be within [1, 10]")
    _require(pv.max_history >= 0, "propose.vlm.max_history", "must be >= 0")
    _require(pv.fallback in ("none", "annotations"), "propose.vlm.fallback", "must be 'none' or 'annotations'")
    _require(g.segmenter in ("grounded_sam", "annotations"), "propose.grounding.segmenter",
             "must be 'grounded_sam' or 'annotations'")
    _require(bool(g.detector), "propose.grounding.detector", "must name a hub id or a folder")
    _require(bool(g.sam_type), "propose.grounding.sam_type", "must be a segment_anything.sam_model_registry key")
    _require(bool(g.sam_checkpoint), "propose.grounding.sam_checkpoint", "must name a .pth file")
    _require(g.device in ("auto", "cpu", "cuda", "mps"), "propose.grounding.device", "must be auto, cpu, cuda or mps")
    for name in ("box_threshold", "text_threshold"):
        _require(0.0 <= getattr(g, name) <= 1.0, f"propose.grounding.{name}", "must be within [0, 1]")
    _require(0.0 < g.match_iou <= 1.0, "propose.grounding.match_iou", "must be within (0, 1]")
    _require(g.batch_size >= 1, "propose.grounding.batch_size", "must be >= 1")
    _require(p.filter.judge in ("heuristics", "vlm"), "filter.judge", "must be 'heuristics' or 'vlm'")
    _check_vlm(j, "filter.vlm")
    for name in ("min_realism", "min_instruction"):
        _require(1 <= getattr(j, name) <= 5, f"filter.vlm.{name}", "rubric scores are 1..5")
    _require(j.on_failure in ("reject", "accept"), "filter.vlm.on_failure", "must be 'reject' or 'accept'")


def _check_detect(p: Params) -> None:
    d = p.detect
    _require(d.task in ("binary", "attribution"), "detect.task", "must be 'binary' or 'attribution'")
    _require(d.image_size >= 32 and d.image_size % 32 == 0, "detect.image_size", "must be a multiple of 32, >= 32")
    for key in ("epochs", "batch_size"):
        _require(getattr(d, key) >= 1, f"detect.{key}", "must be >= 1")
    _require(d.lr > 0 and d.weight_decay >= 0, "detect.lr", "lr must be > 0 and weight_decay >= 0")
    _require(d.num_workers >= 0, "detect.num_workers", "must be >= 0")
    _require(d.nproc >= 1 and d.batch_size % d.nproc == 0, "detect.nproc",
             f"must be >= 1 and divide detect.batch_size ({d.batch_size}): the batch is split over the processes")
    _require(d.loss in ("ce", "ce_dice"), "detect.loss", "must be 'ce' or 'ce_dice'")
    n_task = 2 if d.task == "binary" else len(p.classes)
    _require(d.class_weights is None or (len(d.class_weights) == n_task and min(d.class_weights) >= 0),
             "detect.class_weights", f"needs {n_task} non-negative weights for task '{d.task}'")
    _require(len(d.detectors) >= 1, "detect.detectors", "at least one detector is needed")
    for name, det in d.detectors.items():
        _require(re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) is not None, f"detect.detectors.{name}",
                 "names must be lower-case [a-z0-9_-]")
        _require(det.arch != "fcn8s" or det.encoder == "vgg16", f"detect.detectors.{name}.encoder",
                 "fcn8s is defined on VGG-16: use encoder 'vgg16'")
    r = p.robustness
    _require(all(1 <= q <= 100 for q in r.jpeg), "robustness.jpeg", "JPEG qualities must be within [1, 100]")
    _require(all(0.05 <= s <= 4 for s in r.resize), "robustness.resize", "scales must be within [0.05, 4]")
    _require(all(s > 0 for s in r.blur), "robustness.blur", "sigmas must be > 0")
    _require(all(s > 0 for s in r.noise), "robustness.noise", "standard deviations must be > 0")
    _require(p.crossgen.detector in d.detectors, "crossgen.detector", "must be a key of detect.detectors")
    unknown = set(p.crossgen.held_out) - set(p.classes[1:])
    _require(not unknown, "crossgen.held_out", f"unknown generator(s) {sorted(unknown)}")


def _check_baselines(p: Params) -> None:
    c, u = p.baselines.cnnspot, p.baselines.univfd
    _require(c.weights in (None, "IMAGENET1K_V1", "IMAGENET1K_V2"), "baselines.cnnspot.weights",
             "must be null, 'IMAGENET1K_V1' or 'IMAGENET1K_V2' (torchvision ResNet-50 weights)")
    _require(c.image_size >= 32, "baselines.cnnspot.image_size", "must be >= 32")
    for key in ("epochs", "batch_size"):
        _require(getattr(c, key) >= 1, f"baselines.cnnspot.{key}", "must be >= 1")
    _require(c.lr > 0 and c.weight_decay >= 0, "baselines.cnnspot.lr", "lr must be > 0 and weight_decay >= 0")
    _require(0.0 <= c.blur_jpeg_prob <= 1.0, "baselines.cnnspot.blur_jpeg_prob", "must be within [0, 1]")
    lo, hi = (list(c.blur_sigma) + [0, 0])[:2]
    _require(len(c.blur_sigma) == 2 and 0 <= lo <= hi, "baselines.cnnspot.blur_sigma",
             "must be [low, high] with 0 <= low <= high")
    lo, hi = (list(c.jpeg_quality) + [0, 0])[:2]
    _require(len(c.jpeg_quality) == 2 and 1 <= lo <= hi <= 100, "baselines.cnnspot.jpeg_quality",
             "must be [low, high] with 1 <= low <= high <= 100")
    _require(bool(u.clip_model), "baselines.univfd.clip_model", "must name a hub id or a folder")
    _require(u.batch_size >= 1, "baselines.univfd.batch_size", "must be >= 1")
    _require(u.probe_c > 0, "baselines.univfd.probe_c", "must be > 0")
    _require(u.max_iter >= 1, "baselines.univfd.max_iter", "must be >= 1")


def _check_official(p: Params) -> None:
    o = p.official
    for value, name in o.mask_values.items():
        _require(0 <= value <= 65535, f"official.mask_values.{value}", "mask values must be within [0, 65535]")
        _require(re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) is not None, f"official.mask_values.{value}",
                 "class names must be lower-case [a-z0-9_.-]")
    _require(not o.mask_values or "authentic" in o.mask_values.values(), "official.mask_values",
             "one mask value must map to 'authentic'")
    for folder, split in o.splits.items():
        _require(split in ("train", "val", "test"), f"official.splits.{folder}", "must be train, val or test")


def _weights(values: list[float], key: str) -> None:
    _require(all(v >= 0 for v in values) and sum(values) > 0, key, "weights must be >= 0 with a positive sum")


def _fraction_pair(lo: float, hi: float, section: str) -> None:
    _require(0.0 <= lo < hi <= 1.0, f"{section}.min_area", f"need 0 <= min_area < max_area <= 1 (got {lo}, {hi})")
