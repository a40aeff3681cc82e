"""The typed schema of ``params.yaml``: every stage loads its parameters through :func:`load`.

Unknown keys, wrong types and out-of-range values stop the run before any work, with a message that
names the key (``ParamsError``). The schema is an omegaconf structured config. Each section checks its own
ranges in a ``check`` method next to its fields; :meth:`Params.check` adds the rules that span sections.

The defaults here are only what a key left out of the file falls back to, not a profile: the profiles are
``params.yaml`` (offline, a copy of ``configs/offline.yaml``) and ``configs/paper.yaml``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diffseg.errors import UserError

ACTIONS = ("add", "remove", "change")
# Every device and dtype field accepts exactly these; indexed devices (cuda:1) are not supported.
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
RETRY_INFIX = "_retry"  # t2_retry1: the first retry round of turn t2
_NAME = r"[a-z0-9][a-z0-9_.-]*"  # generator and class names: they become file names and classes.json entries


class ParamsError(UserError, ValueError):
    """A bad ``params.yaml``: the message names the offending key."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ParamsError(f"key '{key}': {message}")


def _one_of(value: Any, choices: Sequence[str], key: str) -> None:
    quoted = [repr(c) for c in choices]
    _require(value in choices, key, f"must be {', '.join(quoted[:-1])} or {quoted[-1]}, got {value!r}")


def _at_least(value: float, low: float, key: str) -> None:
    _require(value >= low, key, f"must be >= {low}, got {value!r}")


def _within(value: float, low: float, high: float, key: str) -> None:
    _require(low <= value <= high, key, f"must be within [{low}, {high}], got {value!r}")


def _named(value: Optional[str], key: str, what: str) -> None:
    _require(bool(value), key, f"must name {what}")


def _weights(values: list[float], key: str) -> None:
    _require(all(v >= 0 for v in values) and sum(values) > 0, key,
             f"weights must be >= 0 with a positive sum, got {values}")


def _area_bounds(lo: float, hi: float, key: str) -> None:
    _require(0.0 <= lo < hi <= 1.0, f"{key}.min_area", f"need 0 <= min_area < max_area <= 1 (got {lo}, {hi})")


def _pair(values: list[float]) -> tuple[float, float]:
    """``[low, high]`` padded, so a list of the wrong length reaches the range message, not an IndexError."""
    lo, hi = (list(values) + [0, 0])[:2]
    return lo, hi


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
    # A COCO copy on disk (<local_dir>/<split>/, <local_dir>/annotations/), read in place: nothing is downloaded
    # or cached and base_url / cache_dir are unused. None downloads.
    local_dir: Optional[str] = None


@dataclass
class FolderSource:
    path: Optional[str] = None  # a folder of images (subfolders included), no annotations


@dataclass
class Source:
    kind: str = "offline"  # offline | coco | folder
    n_images: int = 64  # coco: how many images to select; folder: at most this many
    min_side: int = 64  # smaller images are skipped (recorded in the manifest)
    max_side: int = 320  # larger images are downscaled, annotations with them
    offline: OfflineSource = field(default_factory=OfflineSource)
    coco: CocoSource = field(default_factory=CocoSource)
    folder: FolderSource = field(default_factory=FolderSource)

    def check(self, key: str) -> None:
        _one_of(self.kind, ("offline", "coco", "folder"), f"{key}.kind")
        _at_least(self.n_images, 1, f"{key}.n_images")
        _require(16 <= self.min_side <= self.max_side, f"{key}.min_side",
                 f"must be >= 16 and <= {key}.max_side ({self.max_side}), got {self.min_side}")
        _require(self.coco.local_dir is None or bool(self.coco.local_dir), f"{key}.coco.local_dir",
                 "must name a folder, or be null to download")
        if self.kind == "folder":
            _named(self.folder.path, f"{key}.folder.path", "the folder of images (source.kind is folder)")


SYNTHETIC_LABELS = ("authentic", "generator")
SYNTHETIC_KEY = "synthetic"  # the one entry params `synthesize` may hold: stage synthesize@synthetic, data/synthetic


@dataclass
class Synthesize:
    """Base images generated from their COCO captions by the generators' text-to-image pipelines."""

    share: float = 0.0  # share of the source images replaced by a generation from their caption; 0 replaces none
    generators: list[str] = field(default_factory=list)  # names from edit.generators; each image draws one by its id
    # What the never-edited pixels of a generated image are labelled: authentic (0) or generator (its class id).
    label: str = "authentic"
    device: str = "auto"  # one of DEVICES

    def check(self, key: str, generators: Sequence[str]) -> None:
        _within(self.share, 0.0, 1.0, f"{key}.share")
        _require(self.share == 0 or len(self.generators) >= 1, f"{key}.generators",
                 "must name at least one generator from edit.generators when share > 0")
        for i, name in enumerate(self.generators):
            _require(name in generators, f"{key}.generators[{i}]",
                     f"{name!r} is not in edit.generators ({', '.join(generators)})")
        _require(len(set(self.generators)) == len(self.generators), f"{key}.generators",
                 f"names a generator twice: {list(self.generators)}")
        _one_of(self.label, SYNTHETIC_LABELS, f"{key}.label")
        _one_of(self.device, DEVICES, f"{key}.device")


@dataclass
class Turn:
    prev: str = MISSING  # the folder holding the state this turn starts from
    # A retry round (entry t<k>_retry<n>): names the turn t<k> it retries. It re-plans and re-edits only the images
    # whose last attempt in t<k> was rejected or failed; None: an ordinary turn (docs/planning.md, retry rounds).
    retry: Optional[str] = None


@dataclass
class VLM:
    """A vision-language chat model (Qwen2.5-VL) and how to run it; shared by the planner and the judge."""
    # transformers: run the model | replay: answers read from a JSONL transcript | openai: ask a served model
    # (vLLM, SGLang, TGI, ...) through the OpenAI chat completions API at ``endpoint``
    backend: str = "transformers"
    model: str = "models/twins/qwen2_5_vl"  # hub id or folder (Qwen/Qwen2.5-VL-7B-Instruct at paper scale)
    revision: Optional[str] = None  # pinned hub revision; None for local folders
    replay: Optional[str] = None  # the transcript the replay backend answers from (a stage's transcript.jsonl)
    device: str = "auto"  # one of DEVICES
    dtype: str = "auto"  # one of DTYPES
    batch_size: int = 4  # prompts, with their images, per generate call
    max_new_tokens: int = 512
    max_pixels: int = 1003520  # images are downscaled to at most this many pixels before the model sees them
    endpoint: Optional[str] = None  # backend openai: the server's base URL, e.g. http://localhost:8000
    concurrency: int = 4  # backend openai: requests in flight (at most batch_size: the stage asks a batch at a time)
    timeout_s: float = 300.0  # backend openai: seconds one request may take before it is tried again
    retries: int = 3  # backend openai: further tries after a connection error, a timeout, HTTP 429 or 5xx
    api_key_env: Optional[str] = None  # backend openai: environment variable holding the API key; None: no key

    def check(self, key: str) -> None:
        _one_of(self.backend, ("transformers", "replay", "openai"), f"{key}.backend")
        _require(self.backend != "replay" or bool(self.replay), f"{key}.replay",
                 "the replay backend needs a JSONL transcript")
        _require(self.backend != "openai" or bool(self.endpoint), f"{key}.endpoint",
                 "the openai backend needs the server's base URL (e.g. http://localhost:8000)")
        _require(self.endpoint is None or re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.endpoint) is not None,
                 f"{key}.endpoint", f"must be an http:// or https:// URL, got {self.endpoint!r}")
        _within(self.concurrency, 1, 1024, f"{key}.concurrency")
        _require(self.backend != "openai" or self.concurrency <= self.batch_size, f"{key}.concurrency",
                 f"must be <= batch_size ({self.batch_size}): a stage asks batch_size requests at a time, "
                 f"got {self.concurrency}")
        _require(math.isfinite(self.timeout_s) and self.timeout_s > 0, f"{key}.timeout_s",
                 f"must be a positive number of seconds, got {self.timeout_s!r}")
        _within(self.retries, 0, 20, f"{key}.retries")
        _require(self.api_key_env is None or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env) is not None,
                 f"{key}.api_key_env", f"must name an environment variable (e.g. OPENAI_API_KEY), got "
                 f"{self.api_key_env!r}")
        _named(self.model, f"{key}.model", "a hub id or a folder")
        _one_of(self.device, DEVICES, f"{key}.device")
        _one_of(self.dtype, DTYPES, f"{key}.dtype")
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        _at_least(self.max_new_tokens, 1, f"{key}.max_new_tokens")
        _require(self.max_pixels >= 28 * 28, f"{key}.max_pixels",
                 f"must be >= 784 (one 28 x 28 patch), got {self.max_pixels}")


@dataclass
class PlannerVLM(VLM):
    n_candidates: int = 3  # candidate edits asked for per image, tried in order
    max_history: int = 6  # most recent earlier edits of the image shown to the model
    # What an image gets when the VLM yields no usable plan: none (the failure is recorded) or
    # annotations (the annotations planner's plan, with the VLM's failure kept as the row's reason).
    fallback: str = "none"

    def check(self, key: str) -> None:
        super().check(key)
        _within(self.n_candidates, 1, 10, f"{key}.n_candidates")
        _at_least(self.max_history, 0, f"{key}.max_history")
        _one_of(self.fallback, ("none", "annotations"), f"{key}.fallback")


@dataclass
class Grounding:
    """Target phrase -> mask: Grounding DINO boxes, then SAM masks from those boxes."""
    segmenter: str = "grounded_sam"  # grounded_sam | annotations (the state's instance masks: an oracle)
    detector: str = "models/twins/grounding_dino"  # hub id or folder (IDEA-Research/grounding-dino-base)
    detector_revision: Optional[str] = None
    sam_type: str = "vit_twin"  # a segment_anything.sam_model_registry key (vit_h at paper scale)
    sam_checkpoint: str = "models/twins/sam/sam_vit_twin.pth"  # a local .pth file (Meta's download)
    device: str = "auto"  # one of DEVICES
    box_threshold: float = 0.35  # Grounding DINO box confidence needed to accept a box
    text_threshold: float = 0.25  # token confidence needed for the box's phrase
    batch_size: int = 4  # (image, phrase) pairs per Grounding DINO forward
    fill_holes: bool = True  # SAM masks of textured objects have pinholes the inpainter would keep
    match_iou: float = 0.5  # an annotated instance counts as the target from this IoU with the mask on

    def check(self, key: str) -> None:
        _one_of(self.segmenter, ("grounded_sam", "annotations"), f"{key}.segmenter")
        _named(self.detector, f"{key}.detector", "a hub id or a folder")
        _require(bool(self.sam_type), f"{key}.sam_type", "must be a segment_anything.sam_model_registry key")
        _named(self.sam_checkpoint, f"{key}.sam_checkpoint", "a .pth file")
        _one_of(self.device, DEVICES, f"{key}.device")
        _within(self.box_threshold, 0, 1, f"{key}.box_threshold")
        _within(self.text_threshold, 0, 1, f"{key}.text_threshold")
        _require(0.0 < self.match_iou <= 1.0, f"{key}.match_iou", f"must be within (0, 1], got {self.match_iou}")
        _at_least(self.batch_size, 1, f"{key}.batch_size")


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

    def check(self, key: str, n_turns: int) -> None:
        w = self.turn_weights
        _require(len(w) == n_turns + 1, f"{key}.turn_weights",
                 f"needs one weight per turn count 0..{n_turns} ({n_turns + 1} values), got {len(w)}")
        _weights(w, f"{key}.turn_weights")
        _require(set(self.action_weights) <= set(ACTIONS), f"{key}.action_weights",
                 f"actions must be among {ACTIONS}, got {sorted(self.action_weights)}")
        _weights(list(self.action_weights.values()), f"{key}.action_weights")
        _one_of(self.planner, ("annotations", "vlm"), f"{key}.planner")
        _within(self.mask_dilation, 0, 64, f"{key}.mask_dilation")
        _area_bounds(self.min_area, self.max_area, key)
        lo, hi = _pair(self.add_size)
        _require(len(self.add_size) == 2 and 0 < lo <= hi < 1, f"{key}.add_size",
                 f"must be [low, high] with 0 < low <= high < 1, got {self.add_size}")
        self.vlm.check(f"{key}.vlm")
        self.grounding.check(f"{key}.grounding")


@dataclass
class Lora:
    """LoRA weights loaded on top of a generator's checkpoint by diffusers' ``load_lora_weights``."""
    path: str = MISSING  # hub id, folder or weights file
    # The weights file inside ``path`` (a hub repository or folder); None: diffusers picks one, which a hub id
    # offline cannot do.
    weight_name: Optional[str] = None
    scale: float = 1.0  # the adapter's weight (``set_adapters``); 1 = the LoRA as trained
    revision: Optional[str] = None  # pinned hub revision; None for local folders

    def check(self, key: str) -> None:
        _named(self.path, f"{key}.path", "a hub id, a folder or a weights file")
        _require(self.weight_name is None or self.weight_name.strip() != "", f"{key}.weight_name",
                 "must be a file name, or null")
        _require(math.isfinite(self.scale) and self.scale != 0, f"{key}.scale",
                 f"must be a finite number other than 0 (0 switches the LoRA off: remove the lora entry "
                 f"instead), got {self.scale}")


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
    dtype: str = "auto"  # one of DTYPES
    scheduler: Optional[str] = None  # a diffusers scheduler class name, or None for the checkpoint's
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the pipeline call
    lora: Optional[Lora] = None  # LoRA weights on top of ``model`` (families whose pipeline loads them)

    def check(self, key: str) -> None:
        _require(re.fullmatch(_NAME, self.name) is not None and self.name != "authentic", f"{key}.name",
                 f"must be lower-case [a-z0-9_.-] and not 'authentic', got {self.name!r}")
        _at_least(self.steps, 1, f"{key}.steps")
        _require(0.0 < self.strength <= 1.0, f"{key}.strength", f"must be within (0, 1], got {self.strength}")
        _require(self.resolution >= 64 and self.resolution % 64 == 0, f"{key}.resolution",
                 f"must be a multiple of 64, at least 64, got {self.resolution}")
        _one_of(self.dtype, DTYPES, f"{key}.dtype")
        _require(self.prior is None or self.prior.strip() != "", f"{key}.prior", "must be a hub id or a folder")
        _require(self.prior_revision is None or self.prior is not None, f"{key}.prior_revision",
                 "is set without a prior")
        if self.lora is not None:
            self.lora.check(f"{key}.lora")


@dataclass
class RayCluster:
    """Where the ``ray`` executor runs: a running cluster, or a local one started for the stage."""
    address: Optional[str] = None  # host:port (or ray://host:port); None: RAY_ADDRESS if set, else start locally
    num_workers: int = 2  # actors; each holds one generator at a time
    num_cpus: float = 1.0  # per actor: what Ray reserves (torch threads follow the driver, for identical bytes)
    num_gpus: float = 0.0  # per actor; 1 gives each actor a GPU of its own

    def check(self, key: str) -> None:
        _require(self.address is None or self.address.strip() != "", f"{key}.address", "must be host:port, or null")
        _within(self.num_workers, 1, 4096, f"{key}.num_workers")
        _require(self.num_cpus > 0, f"{key}.num_cpus", f"must be > 0, got {self.num_cpus}")
        _at_least(self.num_gpus, 0, f"{key}.num_gpus")


OUTPUT_RESOLUTIONS = ("source", "generator")


@dataclass
class Edit:
    batch_size: int = 4
    # inprocess: one process, generator after generator | ray: actors on a Ray cluster (same output, byte for byte)
    executor: str = "inprocess"
    ray: RayCluster = field(default_factory=RayCluster)
    device: str = "auto"  # one of DEVICES
    cpu_offload: bool = False  # CUDA only: each model moves to the GPU just for its forward pass
    vae_tiling: bool = False  # decode (and encode) large images and batches in tiles and slices
    # manual: batch_size, cpu_offload and vae_tiling as set | auto: per generator the largest batch (up to batch_size),
    # cheapest offload and tiling whose estimated peak fits the free GPU memory, with out-of-memory fallback
    memory: str = "manual"
    memory_margin: float = 0.1  # auto: fraction of the free GPU memory the plan leaves unused
    # source: each edit is mapped back to the image's size | generator: the whole state moves to the generator's
    # native size and is composited there (docs/generators.md, Output resolution)
    output_resolution: str = "source"
    generators: list[Generator] = field(default_factory=list)

    def check(self, key: str) -> None:
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        _one_of(self.device, DEVICES, f"{key}.device")
        _one_of(self.executor, ("inprocess", "ray"), f"{key}.executor")
        _one_of(self.output_resolution, OUTPUT_RESOLUTIONS, f"{key}.output_resolution")
        _one_of(self.memory, ("manual", "auto"), f"{key}.memory")
        _require(0.0 <= self.memory_margin < 1.0, f"{key}.memory_margin",
                 f"must be within [0, 1), got {self.memory_margin}")
        self.ray.check(f"{key}.ray")
        _require(len(self.generators) >= 1, f"{key}.generators", "at least one generator is needed")
        _require(len(self.generators) <= 255, f"{key}.generators",
                 f"at most 255 generators fit a uint8 label, got {len(self.generators)}")
        seen = set()
        for i, gen in enumerate(self.generators):
            gen.check(f"{key}.generators[{i}]")
            _require(gen.name not in seen, f"{key}.generators[{i}].name", f"duplicate generator name {gen.name!r}")
            seen.add(gen.name)


@dataclass
class Twins:
    out: str = "models/twins"
    families: list[str] = field(default_factory=list)
    clip: bool = False  # also build the CLIP image-encoder twin the univfd baseline probes
    vlm: bool = False  # also build the Qwen2.5-VL, Grounding DINO and SAM twins of the vlm planner and judge
    loras: list[str] = field(default_factory=list)  # families whose twin also gets a tiny random LoRA (<family>_lora)

    def check(self, key: str) -> None:
        missing = [f for f in self.loras if f not in self.families]
        _require(not missing, f"{key}.loras", f"{missing} have no twin to adapt: list them in {key}.families too")


@dataclass
class JudgeVLM(VLM):
    max_new_tokens: int = 128
    min_realism: int = 3  # rubric scores are 1..5; an edit needs at least these to be accepted
    min_instruction: int = 3
    on_failure: str = "reject"  # reject | accept an edit whose judge answer stays unusable after the retry

    def check(self, key: str) -> None:
        super().check(key)
        for name in ("min_realism", "min_instruction"):
            value = getattr(self, name)
            _require(1 <= value <= 5, f"{key}.{name}", f"rubric scores are 1..5, got {value}")
        _one_of(self.on_failure, ("reject", "accept"), f"{key}.on_failure")


@dataclass
class Filter:
    judge: str = "heuristics"  # heuristics | vlm (the heuristics first, then Qwen2.5-VL on what passed)
    min_area: float = 0.005
    max_area: float = 0.6
    min_change: float = 2.0  # mean absolute change inside the mask, in 8-bit levels
    black_level: float = 3.0  # a generated region darker than this on average is a black output
    vlm: JudgeVLM = field(default_factory=JudgeVLM)  # judge: vlm only

    def check(self, key: str) -> None:
        _area_bounds(self.min_area, self.max_area, key)
        _at_least(self.min_change, 0, f"{key}.min_change")
        _require(0 <= self.black_level < 255, f"{key}.black_level",
                 f"must be within [0, 255), got {self.black_level}")
        _one_of(self.judge, ("heuristics", "vlm"), f"{key}.judge")
        self.vlm.check(f"{key}.vlm")


@dataclass
class Assemble:
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    n_figure: int = 12  # images in the sample grid
    cues: bool = False  # also write cues.json: resampling factors and JPEG-grid blockiness inside vs outside edits

    def check(self, key: str) -> None:
        _require(set(self.splits) == {"train", "val", "test"}, f"{key}.splits",
                 f"must name exactly train, val and test, got {sorted(self.splits)}")
        _weights(list(self.splits.values()), f"{key}.splits")
        _at_least(self.n_figure, 1, f"{key}.n_figure")


FCN_ENCODERS = ("vgg16", "vgg16_bn")  # FCN-8s backbones: VGG-16 as FCN-8s defines it, and its BatchNorm variant
# segmentation-models-pytorch's architectures (smp.MODEL_ARCHITECTURES_MAPPING; it matches names in lower case).
SMP_ARCHS = ("unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "deeplabv3", "deeplabv3plus", "pan",
             "upernet", "segformer", "dpt")
TRANSFORMERS = "transformers"  # the arch of the transformers route (diffseg.detect.hf_models)
# transformers model types the transformers route builds (config.model_type, or the type of the model's checkpoint).
HF_MODEL_TYPES = ("segformer", "upernet", "mask2former", "dpt")
# target: 'package.module:function', the function that builds a user's detector (diffseg.detect.user_models).
_TARGET = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*"
TASKS = ("binary", "attribution")
# Forensic front-ends (diffseg.detect.frontends.NAMES): rgb, SRM residuals and BayarConv, joined in this order.
FRONTENDS = ("srm", "bayar", "rgb+srm", "rgb+bayar", "srm+bayar", "rgb+srm+bayar")
SCHEDULES = ("cosine", "constant")
NO_IGNORE = -100  # torch's own "no ignored label" value; accepted as a synonym of null


@dataclass
class Detector:
    # 'fcn8s', any smp architecture (DeepLabV3Plus, Segformer, Unet, ...) or 'transformers'; null with target.
    arch: Optional[str] = None
    encoder: Optional[str] = None  # 'vgg16' or 'vgg16_bn' for fcn8s; any smp encoder otherwise (resnet18, mit_b0, ...)
    # 'imagenet' at paper scale; None offline (no download). When set, the model normalises its [0, 1]
    # input with the ImageNet mean and std itself (diffseg.detect.zoo.Normalized).
    encoder_weights: Optional[str] = None
    # arch transformers: a hub id or local folder of pretrained weights (nvidia/mit-b2, ...); null = random init.
    model: Optional[str] = None
    # arch transformers: the transformers config; with model null it needs model_type (a tiny model offline),
    # with model set its entries override the checkpoint's config.
    config: dict[str, Any] = field(default_factory=dict)
    target: Optional[str] = None  # 'package.module:function' building a user's nn.Module; instead of arch
    kwargs: dict[str, Any] = field(default_factory=dict)  # target's keyword arguments (n_classes, in_channels added)
    task: Optional[str] = None  # binary | attribution; None = detect.task
    # This detector's own training length and learning rate; None = detect.epochs / detect.lr. Architectures
    # differ in both (a transformer from a random start wants more epochs and a larger step than a CNN).
    epochs: Optional[int] = None
    lr: Optional[float] = None
    # The encoder's input: null = the RGB image; else one of FRONTENDS, noise residuals with or without it.
    frontend: Optional[str] = None

    @property
    def summary(self) -> str:
        """What builds it, for log lines: 'fcn8s/vgg16_bn', 'transformers nvidia/mit-b0', 'detectors.x:build'."""
        if self.target:
            return self.target
        if self.arch == TRANSFORMERS:
            return f"{TRANSFORMERS} {self.model or self.config.get('model_type')}"
        return f"{self.arch}/{self.encoder}"

    def check(self, key: str) -> None:
        _require(self.arch is None or self.target is None, key,
                 f"set arch or target, not both (arch {self.arch!r}, target {self.target!r})")
        _require(self.arch is not None or self.target is not None, f"{key}.arch",
                 "must name the architecture ('fcn8s', an smp architecture or 'transformers'), or set target")
        if self.target is not None:
            self._check_target(key)
        elif self.arch == TRANSFORMERS:
            self._check_transformers(key)
        else:
            self._check_smp(key)
        _require(self.task is None or self.task in TASKS, f"{key}.task",
                 f"must be null, 'binary' or 'attribution', got {self.task!r}")
        _require(self.epochs is None or self.epochs >= 1, f"{key}.epochs", f"must be null or >= 1, got {self.epochs}")
        _require(self.lr is None or self.lr > 0, f"{key}.lr", f"must be null or > 0, got {self.lr}")
        _require(self.frontend is None or self.frontend in FRONTENDS, f"{key}.frontend",
                 f"must be null or one of {', '.join(FRONTENDS)}, got {self.frontend!r}")

    def _only(self, key: str, route: str, allowed: Sequence[str]) -> None:
        """Fields of the other routes stay unset, so a typo'd route does not silently ignore them."""
        for name in ("encoder", "encoder_weights", "model", "config", "kwargs"):
            _require(name in allowed or not getattr(self, name), f"{key}.{name}", f"is not used by {route}: drop it")

    def _check_smp(self, key: str) -> None:
        _require(self.arch == "fcn8s" or self.arch.lower() in SMP_ARCHS, f"{key}.arch",
                 f"must be 'fcn8s', 'transformers' or an smp architecture ({', '.join(SMP_ARCHS)}; any case), "
                 f"got {self.arch!r}")
        _named(self.encoder, f"{key}.encoder", f"the encoder of {self.arch}")
        _require(self.arch != "fcn8s" or self.encoder in FCN_ENCODERS, f"{key}.encoder",
                 f"fcn8s is defined on VGG-16: use encoder 'vgg16' or 'vgg16_bn', got {self.encoder!r}")
        self._only(key, f"arch {self.arch}", ("encoder", "encoder_weights"))

    def _check_transformers(self, key: str) -> None:
        self._only(key, "arch transformers", ("model", "config"))
        model_type = self.config.get("model_type")
        if self.model is None:
            _require(model_type in HF_MODEL_TYPES, f"{key}.config.model_type",
                     f"arch transformers needs model (a hub id or folder) or config.model_type, one of "
                     f"{', '.join(HF_MODEL_TYPES)}; got {model_type!r}")
        else:
            _require(model_type is None, f"{key}.config.model_type",
                     f"the type comes from the checkpoint {self.model!r}: drop it")
        for name in ("num_labels", "id2label", "label2id", "num_channels"):
            _require(name not in self.config, f"{key}.config.{name}",
                     "is set from the task's classes and the input channels: drop it")

    def _check_target(self, key: str) -> None:
        _require(re.fullmatch(_TARGET, self.target) is not None, f"{key}.target",
                 f"must be 'package.module:function' (e.g. 'detectors.mynet:build'), got {self.target!r}")
        self._only(key, "target", ("kwargs",))
        for name in ("n_classes", "in_channels"):
            _require(name not in self.kwargs, f"{key}.kwargs.{name}",
                     "is passed by the trainer (the task's class count, the input channels): drop it")


@dataclass
class Detect:
    dataset: str = "data/dataset"
    task: str = "attribution"  # binary | attribution (authentic + one class per generator)
    image_size: int = 128  # square training / evaluation size
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flip: bool = False  # training images mirrored left-right at random (keyed per epoch and image)
    class_weights: Optional[list[float]] = None  # per task class; None = uniform
    # A label value that counts nowhere (loss, validation); null (or -100) = none. Labels are uint8, so
    # 255 is the usable value: it is above every class id and the binary task keeps it as it is.
    ignore_index: Optional[int] = 255
    # Learning rate per optimizer step: linear warmup over warmup_epochs, then cosine: cosine decay to 0
    # at the end of the last epoch | constant: lr after the warmup.
    schedule: str = "cosine"
    warmup_epochs: int = 1
    # ce: cross-entropy; ce_dice: plus the Dice loss, which keeps small edited regions from being
    # drowned by the authentic majority (edits cover a few percent of the pixels).
    loss: str = "ce_dice"
    num_workers: int = 0  # DataLoader workers; 0 reads in the training process
    nproc: int = 1  # training processes (DDP) on this machine, one GPU each; 1 = no launcher, one process
    # One of DEVICES. auto takes the GPU when there is one; cpu keeps training and evaluation off it.
    device: str = "auto"
    detectors: dict[str, Detector] = field(default_factory=dict)

    def training(self, name: str) -> "Detect":
        """These settings with detector ``name``'s own epochs and learning rate where it sets them."""
        spec = self.detectors[name]
        return replace(self, epochs=spec.epochs or self.epochs, lr=spec.lr or self.lr)

    def check(self, key: str, n_classes: int) -> None:
        """``n_classes``: authentic plus the generators, the attribution task's class count."""
        _one_of(self.task, ("binary", "attribution"), f"{key}.task")
        _require(self.image_size >= 32 and self.image_size % 32 == 0, f"{key}.image_size",
                 f"must be a multiple of 32, >= 32, got {self.image_size}")
        _at_least(self.epochs, 1, f"{key}.epochs")
        _one_of(self.schedule, SCHEDULES, f"{key}.schedule")
        _require(0 <= self.warmup_epochs < self.epochs, f"{key}.warmup_epochs",
                 f"must be >= 0 and < {key}.epochs ({self.epochs}), got {self.warmup_epochs}")
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        _require(self.lr > 0 and self.weight_decay >= 0, f"{key}.lr",
                 f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        _at_least(self.num_workers, 0, f"{key}.num_workers")
        _require(self.nproc >= 1 and self.batch_size % self.nproc == 0, f"{key}.nproc",
                 f"must be >= 1 and divide {key}.batch_size ({self.batch_size}): the batch is split over "
                 f"the processes, got {self.nproc}")
        _one_of(self.device, DEVICES, f"{key}.device")
        _one_of(self.loss, ("ce", "ce_dice"), f"{key}.loss")
        n_task = 2 if self.task == "binary" else n_classes
        cw = self.class_weights
        _require(cw is None or (len(cw) == n_task and min(cw) >= 0), f"{key}.class_weights",
                 f"needs {n_task} non-negative weights for task '{self.task}', got {cw}")
        # Class ids 0..n_classes-1 occur in the dataset's labels, whatever the task.
        ig = self.ignore_index
        _require(ig is None or ig == NO_IGNORE or n_classes <= ig <= 255, f"{key}.ignore_index",
                 f"must be null, {NO_IGNORE} or within [{n_classes}, 255] (labels are uint8 and class ids "
                 f"0..{n_classes - 1} are in use), got {ig}")
        _require(len(self.detectors) >= 1, f"{key}.detectors", "at least one detector is needed")
        for name, det in self.detectors.items():
            _require(re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) is not None, f"{key}.detectors.{name}",
                     "names must be lower-case [a-z0-9_-]")
            det.check(f"{key}.detectors.{name}")
            _require(self.warmup_epochs < (det.epochs or self.epochs), f"{key}.warmup_epochs",
                     f"must be < the epochs of detector '{name}' ({det.epochs}), got {self.warmup_epochs}")
            # class_weights are per class of detect.task: a detector of the other task has other classes.
            _require(cw is None or det.task in (None, self.task), f"{key}.detectors.{name}.task",
                     f"is {det.task!r} but {key}.class_weights are per class of {key}.task ({self.task!r}); "
                     f"drop the override or set {key}.class_weights to null")


@dataclass
class Robustness:
    jpeg: list[int] = field(default_factory=lambda: [90, 70, 50])  # JPEG quality
    resize: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.5])  # scale factor
    blur: list[float] = field(default_factory=lambda: [1.0, 2.0])  # Gaussian sigma, pixels
    noise: list[float] = field(default_factory=lambda: [5.0, 10.0])  # Gaussian std, 8-bit levels

    def check(self, key: str) -> None:
        _require(all(1 <= q <= 100 for q in self.jpeg), f"{key}.jpeg",
                 f"JPEG qualities must be within [1, 100], got {self.jpeg}")
        _require(all(0.05 <= s <= 4 for s in self.resize), f"{key}.resize",
                 f"scales must be within [0.05, 4], got {self.resize}")
        _require(all(s > 0 for s in self.blur), f"{key}.blur", f"sigmas must be > 0, got {self.blur}")
        _require(all(s > 0 for s in self.noise), f"{key}.noise",
                 f"standard deviations must be > 0, got {self.noise}")


@dataclass
class Crossgen:
    detector: str = "segformer"  # a key of detect.detectors, trained on the binary task
    held_out: list[str] = field(default_factory=list)  # generators left out of training, one stage each
    # Generators never used for training (the paper's protocol): every image they touched is kept out of the
    # train and val data of train@ and of every crossgen@ stage. Each needs its crossgen@ stage (held_out).
    unseen: list[str] = field(default_factory=list)

    def check(self, key: str, detectors: Sequence[str], generators: Sequence[str]) -> None:
        _require(self.detector in detectors, f"{key}.detector",
                 f"must be a key of detect.detectors, got {self.detector!r}")
        unknown = set(self.held_out) - set(generators)
        _require(not unknown, f"{key}.held_out", f"unknown generator(s) {sorted(unknown)}")
        unknown = set(self.unseen) - set(generators)
        _require(not unknown, f"{key}.unseen", f"unknown generator(s) {sorted(unknown)}")
        untested = [g for g in self.unseen if g not in self.held_out]
        _require(not untested, f"{key}.unseen", f"{untested} must also be in {key}.held_out, which gives each "
                 f"generator its crossgen@ stage")
        _require(bool(set(generators) - set(self.unseen)), f"{key}.unseen", "leaves no generator to train on")


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

    def check(self, key: str) -> None:
        _require(self.weights in (None, "IMAGENET1K_V1", "IMAGENET1K_V2"), f"{key}.weights",
                 f"must be null, 'IMAGENET1K_V1' or 'IMAGENET1K_V2' (torchvision ResNet-50 weights), "
                 f"got {self.weights!r}")
        _at_least(self.image_size, 32, f"{key}.image_size")
        _at_least(self.epochs, 1, f"{key}.epochs")
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        _require(self.lr > 0 and self.weight_decay >= 0, f"{key}.lr",
                 f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        _within(self.blur_jpeg_prob, 0, 1, f"{key}.blur_jpeg_prob")
        lo, hi = _pair(self.blur_sigma)
        _require(len(self.blur_sigma) == 2 and 0 <= lo <= hi, f"{key}.blur_sigma",
                 f"must be [low, high] with 0 <= low <= high, got {self.blur_sigma}")
        lo, hi = _pair(self.jpeg_quality)
        _require(len(self.jpeg_quality) == 2 and 1 <= lo <= hi <= 100, f"{key}.jpeg_quality",
                 f"must be [low, high] with 1 <= low <= high <= 100, got {self.jpeg_quality}")


@dataclass
class UnivFD:
    """UnivFD (Ojha et al., CVPR 2023): a linear probe on frozen CLIP image features."""
    clip_model: str = "models/twins/clip"  # hub id or folder; 'openai/clip-vit-large-patch14' at paper scale
    revision: Optional[str] = None  # pinned hub revision; None for local folders
    batch_size: int = 16  # feature extraction batch
    probe_c: float = 1.0  # inverse L2 strength of the logistic-regression probe (sklearn's C)
    max_iter: int = 1000  # probe solver iterations

    def check(self, key: str) -> None:
        _named(self.clip_model, f"{key}.clip_model", "a hub id or a folder")
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        _require(self.probe_c > 0, f"{key}.probe_c", f"must be > 0, got {self.probe_c}")
        _at_least(self.max_iter, 1, f"{key}.max_iter")


@dataclass
class Baselines:
    cnnspot: CNNSpot = field(default_factory=CNNSpot)
    univfd: UnivFD = field(default_factory=UnivFD)

    def check(self, key: str) -> None:
        self.cnnspot.check(f"{key}.cnnspot")
        self.univfd.check(f"{key}.univfd")


@dataclass
class Official:
    """A local copy of the official release (Chaos2629/Diffseg30k), converted by ``diffseg official``."""
    path: str = "data/official_release"
    # Mask pixel value -> class name; 'authentic' required. No default: the release does not document its
    # encoding, and omegaconf would merge a default mapping into the user's instead of replacing it.
    mask_values: dict[int, str] = field(default_factory=dict)
    # Release split name -> project split (train | val | test): a folder, a zip's stem or a Parquet shard's
    # prefix. train_copy/ is the folder inside the release's train.zip; cross_test the mirror's one split.
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "val": "val", "validation": "val", "test": "test",
                                 "train_copy": "train", "cross_test": "test"})

    def check(self, key: str) -> None:
        for value, name in self.mask_values.items():
            _within(value, 0, 65535, f"{key}.mask_values.{value}")
            _require(re.fullmatch(_NAME, name) is not None, f"{key}.mask_values.{value}",
                     f"class names must be lower-case [a-z0-9_.-], got {name!r}")
        _require(not self.mask_values or "authentic" in self.mask_values.values(), f"{key}.mask_values",
                 "one mask value must map to 'authentic'")
        for folder, split in self.splits.items():
            _one_of(split, ("train", "val", "test"), f"{key}.splits.{folder}")


@dataclass(frozen=True)
class HubRef:
    """A field naming a checkpoint (hub id or local folder) and the field beside it that pins its hub revision."""
    path: tuple[str | int, ...]  # the id's key path, e.g. ('edit', 'generators', 0, 'model')
    revision_field: str  # the pin's name in the same section: revision, prior_revision or detector_revision
    model: str
    revision: Optional[str]
    stage: str  # the stage that loads it: propose, edit, filter or baseline
    loaded: bool  # whether that stage loads it with these params (a replay VLM answers from a transcript)

    @property
    def key(self) -> str:
        return _dotted(self.path)

    @property
    def revision_path(self) -> tuple[str | int, ...]:
        return self.path[:-1] + (self.revision_field,)

    @property
    def revision_key(self) -> str:
        return _dotted(self.revision_path)


def _dotted(path: tuple[str | int, ...]) -> str:
    """``('edit', 'generators', 0, 'model')`` as the messages spell keys: ``edit.generators[0].model``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


@dataclass
class Params:
    seed: int = 0
    max_item_failure: float = 0.5  # a stage fails when more than this share of items fails
    # False: propose, edit and filter refuse to load a hub id whose revision is null (`diffseg pin --write`
    # fills them in), so a run cannot drift with the hub. Local folders never need a pin.
    allow_unpinned: bool = True
    source: Source = field(default_factory=Source)
    twins: Twins = field(default_factory=Twins)
    # {} (no synthesize stage) or one entry, ``synthetic``: dvc.yaml's foreach makes a stage only for an entry.
    synthesize: dict[str, Synthesize] = field(default_factory=dict)
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
        """Every entry of ``turns`` (turns and retry rounds): the keys of the per-turn stages."""
        return list(self.turns)

    @property
    def base_turns(self) -> list[str]:
        """The turns proper, t1, t2, ... (retry rounds left out)."""
        return [name for name, entry in self.turns.items() if entry.retry is None]

    @property
    def retries(self) -> bool:
        """Whether any turn has retry rounds (then the history records each edit's attempt number)."""
        return any(entry.retry is not None for entry in self.turns.values())

    def turn_of(self, name: str) -> tuple[str, int, int]:
        """(turn, 1-based turn index, attempt) of a ``turns`` entry: ``t2_retry1`` is attempt 2 of t2, index 2."""
        turn = self.turns[name].retry or name
        attempt = 1 + int(name.rsplit(RETRY_INFIX, 1)[1]) if self.turns[name].retry else 1
        return turn, self.base_turns.index(turn) + 1, attempt

    def max_attempts(self, turn: str) -> int:
        """How many attempts ``turn`` gets: 1 plus its retry rounds."""
        return 1 + sum(entry.retry == turn for entry in self.turns.values())

    def generator(self, name: str) -> Generator:
        for gen in self.edit.generators:
            if gen.name == name:
                return gen
        raise ParamsError(f"edit.generators: no generator named {name!r}")

    def hub_refs(self) -> list[HubRef]:
        """Every checkpoint field that has a revision beside it, in file order; local folders included."""
        vlm_planner, vlm_judge = self.propose.planner == "vlm", self.filter.judge == "vlm"
        plan, ground, judge = self.propose.vlm, self.propose.grounding, self.filter.vlm
        refs = [HubRef(("propose", "vlm", "model"), "revision", plan.model, plan.revision, "propose",
                       vlm_planner and plan.backend == "transformers"),
                HubRef(("propose", "grounding", "detector"), "detector_revision", ground.detector,
                       ground.detector_revision, "propose", vlm_planner and ground.segmenter == "grounded_sam")]
        for i, gen in enumerate(self.edit.generators):
            refs.append(HubRef(("edit", "generators", i, "model"), "revision", gen.model, gen.revision, "edit", True))
            if gen.prior is not None:
                refs.append(HubRef(("edit", "generators", i, "prior"), "prior_revision", gen.prior,
                                   gen.prior_revision, "edit", True))
            if gen.lora is not None:
                refs.append(HubRef(("edit", "generators", i, "lora", "path"), "revision", gen.lora.path,
                                   gen.lora.revision, "edit", True))
        clip = self.baselines.univfd
        return refs + [
            HubRef(("filter", "vlm", "model"), "revision", judge.model, judge.revision, "filter",
                   vlm_judge and judge.backend == "transformers"),
            HubRef(("baselines", "univfd", "clip_model"), "revision", clip.clip_model, clip.revision, "baseline", True)]

    @property
    def classes(self) -> list[str]:
        """``classes.json``: index 0 is authentic, index k the k-th generator in params order."""
        return ["authentic"] + [g.name for g in self.edit.generators]

    def check(self) -> None:
        """Every section's ranges, plus the rules that tie sections together (turn chain, class counts)."""
        self.source.check("source")
        self.twins.check("twins")
        self._check_synthesize()
        _within(self.max_item_failure, 0, 1, "max_item_failure")
        self._check_turns()
        self.propose.check("propose", n_turns=len(self.base_turns))
        self.edit.check("edit")
        self.filter.check("filter")
        self.assemble.check("assemble")
        self.detect.check("detect", n_classes=len(self.classes))
        self.robustness.check("robustness")
        self.crossgen.check("crossgen", detectors=list(self.detect.detectors), generators=self.classes[1:])
        self.baselines.check("baselines")
        self.official.check("official")

    @property
    def base_state(self) -> str:
        """The state the first turn starts from: the source, or the source with its synthetic base images."""
        return f"data/{SYNTHETIC_KEY}" if self.synthesize else "data/source"

    def _check_synthesize(self) -> None:
        extra = sorted(set(self.synthesize) - {SYNTHETIC_KEY})
        _require(not extra, f"synthesize.{extra[0] if extra else ''}",
                 f"the only entry is {SYNTHETIC_KEY!r} (the stage synthesize@{SYNTHETIC_KEY} writes "
                 f"data/{SYNTHETIC_KEY}); leave synthesize {{}} for none")
        for key, entry in self.synthesize.items():
            entry.check(f"synthesize.{key}", [g.name for g in self.edit.generators])
            _require(self.source.kind != "folder", "synthesize",
                     "needs the captions of a COCO-format source; source.kind folder has none: leave synthesize {}")

    def _check_turns(self) -> None:
        # dvc.yaml's foreach chains each entry to the folder of the entry before it, so names and folders are fixed:
        # t1, its retry rounds t1_retry1, t1_retry2, ..., then t2, and so on.
        names = list(self.turns)
        _require(len(names) >= 1, "turns", "at least one turn is needed")
        base, rounds = 0, 0
        for pos, name in enumerate(names):
            retry = self.turns[name].retry
            if retry is None:
                base, rounds = base + 1, 0
                _require(name == f"t{base}", f"turns.{name}",
                         f"turns must be named t1, t2, ... in order, each followed by its retry rounds (expected "
                         f"t{base})")
            else:
                rounds += 1
                _require(base >= 1 and retry == f"t{base}", f"turns.{name}.retry",
                         f"a retry round follows the turn it retries (or that turn's earlier rounds): expected "
                         f"{f't{base}' if base else 'a turn before it'}, got {retry!r}")
                _require(name == f"t{base}{RETRY_INFIX}{rounds}", f"turns.{name}",
                         f"retry round {rounds} of t{base} must be named 't{base}{RETRY_INFIX}{rounds}'")
            expected_prev = self.base_state if pos == 0 else f"data/turns/{names[pos - 1]}/state"
            why = ""
            if pos == 0:
                why = (" (synthesize has an entry, whose output the first turn edits)" if self.synthesize else
                       " (synthesize is {}: no stage writes data/synthetic)")
            _require(self.turns[name].prev == expected_prev, f"turns.{name}.prev",
                     f"must be {expected_prev!r}{why}, got {self.turns[name].prev!r}")
        _require(self.final_state == f"data/turns/{names[-1]}/state", "final_state",
                 f"must be the last turn's state, 'data/turns/{names[-1]}/state', got {self.final_state!r}")


def load(path: str | Path = "params.yaml") -> Params:
    """Read, type-check and range-check ``path``; raise :class:`ParamsError` naming the file and the key."""
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
    try:
        params.check()
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return params


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
