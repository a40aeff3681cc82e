"""The params schema: the repository's params.yaml loads; bad files stop with the key named."""
from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, repo_params, schema_keys, write_params
from diffseg import params


def test_repository_params_load():
    p = params.load(ROOT / "params.yaml")
    assert p.turn_names == ["t1", "t2", "t3"]
    assert p.classes[0] == "authentic" and len(p.classes) == len(p.edit.generators) + 1
    assert p.final_state == "data/turns/t3/state"
    assert p.detect.device == "auto"


def test_offline_profile_passes_every_check():
    p = params.load(ROOT / "configs" / "offline.yaml")
    assert p == params.load(ROOT / "params.yaml")
    p.check()  # raises on any out-of-range value
    assert p.source.kind == "offline" and p.detect.device == "auto"
    assert (p.edit.output_resolution, p.assemble.cues) == ("source", False)  # the offline outputs stay as they were


def test_paper_profile_loads_with_the_eight_generators_and_the_unseen_lora_sdxl():
    p = params.load(ROOT / "configs" / "paper.yaml")
    assert p.classes == ["authentic", "sd2", "sdxl", "flux", "sd3", "glide", "kolors", "hunyuan", "kandinsky",
                         "sdxl_lora"]
    lora_sdxl, sdxl = p.generator("sdxl_lora"), p.generator("sdxl")
    assert (lora_sdxl.family, lora_sdxl.model) == (sdxl.family, sdxl.model) and sdxl.lora is None
    assert lora_sdxl.lora == params.Lora(path="stabilityai/stable-diffusion-xl-base-1.0",
                                         weight_name="sd_xl_offset_example-lora_1.0.safetensors", scale=1.0)
    # The paper's protocol for the LoRA SDXL, leave-one-out over all eight others (GLIDE included).
    assert p.crossgen.unseen == ["sdxl_lora"] and p.crossgen.held_out == p.classes[1:]
    assert p.source.kind == "coco" and not p.twins.families and not p.twins.clip
    # every paper detector starts from pretrained weights: ImageNet encoders, or a transformers checkpoint
    assert {n: d.encoder_weights or d.model for n, d in p.detect.detectors.items()} == {
        "fcn8s": "imagenet", "deeplabv3plus": "imagenet", "segformer": "imagenet",
        "upernet": "openmmlab/upernet-convnext-small", "deeplabv3plus_srm": "imagenet"}
    assert p.detect.device == "auto"
    # choice: the release's images keep their generators' sizes; its shortcut cues are measured
    assert (p.edit.output_resolution, p.assemble.cues) == ("generator", True)


@pytest.mark.parametrize("override, key", [
    ({"filter": {"min_chnage": 1.0}}, "filter.min_chnage"),  # unknown key (typo)
    ({"seed": "zero"}, "seed"),  # wrong type
    ({"edit": {"batch_size": 0}}, "edit.batch_size"),  # out of range
    ({"edit": {"executor": "dask"}}, "edit.executor"),
    ({"edit": {"output_resolution": "native"}}, "edit.output_resolution"),
    ({"assemble": {"cues": "sometimes"}}, "assemble.cues"),  # wrong type
    ({"edit": {"ray": {"num_workers": 0}}}, "edit.ray.num_workers"),
    ({"edit": {"ray": {"num_gpus": -1}}}, "edit.ray.num_gpus"),
    ({"propose": {"turn_weights": [0.5, 0.5]}}, "propose.turn_weights"),  # length must be turns + 1
    ({"turns": {"t1": {"prev": "data/source"}, "t3": {"prev": "data/turns/t1/state"}}}, "turns.t3"),
    ({"final_state": "data/turns/t2/state"}, "final_state"),
    ({"source": {"kind": "flickr"}}, "source.kind"),
    ({"source": {"coco": {"local_dir": ""}}}, "source.coco.local_dir"),
    ({"edit": {"generators": [{"name": "sd2", "family": "sd2", "model": "m", "resolution": 100}]}},
     "edit.generators[0].resolution"),
])
def test_bad_params_name_the_key(tmp_path, override, key):
    path = write_params(tmp_path, override)
    with pytest.raises(params.ParamsError) as err:
        params.load(path)
    assert key in str(err.value)


@functools.cache
def _repo_params() -> dict:
    return repo_params()


def _params_with(folder, key, value):
    """The repository's params.yaml with the dotted ``key`` (list items as ``[i]``) set to ``value``."""
    data = copy.deepcopy(_repo_params())
    *parents, last = re.findall(r"[^.\[\]]+", key)
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# One case per family of range checks: the value set, and the message it must produce (key included).
RANGE_CASES = [
    # choices
    ("source.kind", "flickr", "key 'source.kind': must be 'offline', 'coco' or 'folder', got 'flickr'"),
    ("source.kind", "folder", "key 'source.folder.path': must name the folder of images (source.kind is folder)"),
    ("detect.device", "gpu", "key 'detect.device': must be 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'"),
    ("edit.device", "cuda:1", "key 'edit.device': must be 'auto', 'cpu', 'cuda' or 'mps', got 'cuda:1'"),
    ("propose.vlm.dtype", "fp8",
     "key 'propose.vlm.dtype': must be 'auto', 'float32', 'float16' or 'bfloat16', got 'fp8'"),
    ("edit.generators[2].dtype", "half",
     "key 'edit.generators[2].dtype': must be 'auto', 'float32', 'float16' or 'bfloat16', got 'half'"),
    ("detect.loss", "dice", "key 'detect.loss': must be 'ce' or 'ce_dice', got 'dice'"),
    ("detect.schedule", "linear", "key 'detect.schedule': must be 'cosine' or 'constant', got 'linear'"),
    ("filter.vlm.on_failure", "maybe", "key 'filter.vlm.on_failure': must be 'reject' or 'accept', got 'maybe'"),
    ("official.splits.validation", "dev", "key 'official.splits.validation': must be 'train', 'val' or 'test'"),
    ("baselines.cnnspot.weights", "imagenet", "key 'baselines.cnnspot.weights': must be null, 'IMAGENET1K_V1'"),
    # lower bounds
    ("detect.epochs", 0, "key 'detect.epochs': must be >= 1, got 0"),
    ("detect.warmup_epochs", -1, "key 'detect.warmup_epochs': must be >= 0 and < detect.epochs (10), got -1"),
    ("detect.warmup_epochs", 10, "key 'detect.warmup_epochs': must be >= 0 and < detect.epochs (10), got 10"),
    # the dataset's labels use class ids 0..7 (authentic + 7 generators) and are uint8
    ("detect.ignore_index", 7, "key 'detect.ignore_index': must be null, -100 or within [8, 255] (labels are "
                               "uint8 and class ids 0..7 are in use), got 7"),
    ("detect.ignore_index", 256, "key 'detect.ignore_index': must be null, -100 or within [8, 255]"),
    ("detect.ignore_index", -1, "key 'detect.ignore_index': must be null, -100 or within [8, 255]"),
    ("source.n_images", 0, "key 'source.n_images': must be >= 1, got 0"),
    ("edit.ray.num_gpus", -1, "key 'edit.ray.num_gpus': must be >= 0, got -1"),
    ("edit.generators[0].steps", 0, "key 'edit.generators[0].steps': must be >= 1, got 0"),
    ("detect.num_workers", -1, "key 'detect.num_workers': must be >= 0, got -1"),
    ("propose.vlm.max_history", -1, "key 'propose.vlm.max_history': must be >= 0, got -1"),
    ("baselines.cnnspot.image_size", 16, "key 'baselines.cnnspot.image_size': must be >= 32, got 16"),
    ("baselines.univfd.max_iter", 0, "key 'baselines.univfd.max_iter': must be >= 1, got 0"),
    ("filter.vlm.max_pixels", 100, "key 'filter.vlm.max_pixels': must be >= 784 (one 28 x 28 patch), got 100"),
    ("source.min_side", 8, "key 'source.min_side': must be >= 16 and <= source.max_side (128), got 8"),
    # closed and half-open intervals
    ("max_item_failure", 1.5, "key 'max_item_failure': must be within [0, 1], got 1.5"),
    ("edit.ray.num_workers", 0, "key 'edit.ray.num_workers': must be within [1, 4096], got 0"),
    ("propose.mask_dilation", 65, "key 'propose.mask_dilation': must be within [0, 64], got 65"),
    ("propose.vlm.n_candidates", 0, "key 'propose.vlm.n_candidates': must be within [1, 10], got 0"),
    ("propose.grounding.box_threshold", 2.0, "key 'propose.grounding.box_threshold': must be within [0, 1], got 2.0"),
    ("propose.grounding.match_iou", 0.0, "key 'propose.grounding.match_iou': must be within (0, 1], got 0.0"),
    ("edit.generators[1].strength", 1.5, "key 'edit.generators[1].strength': must be within (0, 1], got 1.5"),
    ("filter.black_level", 255.0, "key 'filter.black_level': must be within [0, 255), got 255.0"),
    ("filter.vlm.min_realism", 6, "key 'filter.vlm.min_realism': rubric scores are 1..5, got 6"),
    ("baselines.cnnspot.blur_jpeg_prob", 1.5, "key 'baselines.cnnspot.blur_jpeg_prob': must be within [0, 1], got 1.5"),
    ("official.mask_values", {0: "authentic", 70000: "edited"},
     "key 'official.mask_values.70000': must be within [0, 65535], got 70000"),
    ("edit.ray.num_cpus", 0, "key 'edit.ray.num_cpus': must be > 0, got 0"),
    ("baselines.univfd.probe_c", 0, "key 'baselines.univfd.probe_c': must be > 0, got 0"),
    ("detect.lr", 0, "key 'detect.lr': lr must be > 0 and weight_decay >= 0, got 0.0 and 0.0001"),
    # multiples
    ("detect.image_size", 100, "key 'detect.image_size': must be a multiple of 32, >= 32, got 100"),
    ("edit.generators[0].resolution", 100,
     "key 'edit.generators[0].resolution': must be a multiple of 64, at least 64, got 100"),
    ("detect.nproc", 3, "key 'detect.nproc': must be >= 1 and divide detect.batch_size (4)"),
    # area bounds and [low, high] pairs
    ("propose.min_area", 0.5, "key 'propose.min_area': need 0 <= min_area < max_area <= 1 (got 0.5, 0.45)"),
    ("filter.max_area", 1.5, "key 'filter.min_area': need 0 <= min_area < max_area <= 1 (got 0.005, 1.5)"),
    ("propose.add_size", [0.4, 0.2], "key 'propose.add_size': must be [low, high] with 0 < low <= high < 1"),
    ("baselines.cnnspot.blur_sigma", [1.0], "key 'baselines.cnnspot.blur_sigma': must be [low, high] with 0 <="),
    ("baselines.cnnspot.jpeg_quality", [0, 100],
     "key 'baselines.cnnspot.jpeg_quality': must be [low, high] with 1 <= low <= high <= 100"),
    # weights
    ("propose.turn_weights", [0.2, 0.3], "key 'propose.turn_weights': needs one weight per turn count 0..3 (4 values)"),
    ("propose.turn_weights", [0, 0, 0, 0], "key 'propose.turn_weights': weights must be >= 0 with a positive sum"),
    ("propose.action_weights", {"add": 1.0, "move": 1.0}, "key 'propose.action_weights': actions must be among"),
    # a split too many: one left out would come back from the schema's default mapping when omegaconf merges
    ("assemble.splits", {"train": 0.7, "val": 0.1, "test": 0.1, "dev": 0.1},
     "key 'assemble.splits': must name exactly train, val and test"),
    ("assemble.splits", {"train": -1, "val": 1, "test": 1}, "key 'assemble.splits': weights must be >= 0"),
    ("detect.class_weights", [1.0, 2.0], "key 'detect.class_weights': needs 8 non-negative weights for task"),
    # lists of levels
    ("robustness.jpeg", [90, 0], "key 'robustness.jpeg': JPEG qualities must be within [1, 100], got [90, 0]"),
    ("robustness.resize", [5.0], "key 'robustness.resize': scales must be within [0.05, 4]"),
    ("robustness.blur", [0.0], "key 'robustness.blur': sigmas must be > 0"),
    ("robustness.noise", [-1.0], "key 'robustness.noise': standard deviations must be > 0"),
    # names and references
    ("edit.generators[0].name", "SD2", "key 'edit.generators[0].name': must be lower-case [a-z0-9_.-] and not"),
    ("edit.generators[1].name", "sd2", "key 'edit.generators[1].name': duplicate generator name 'sd2'"),
    ("edit.generators", [], "key 'edit.generators': at least one generator is needed"),
    ("edit.generators[0].prior_revision", "abc", "key 'edit.generators[0].prior_revision': is set without a prior"),
    ("edit.ray.address", " ", "key 'edit.ray.address': must be host:port, or null"),
    ("edit.memory", "fit", "key 'edit.memory': must be 'manual' or 'auto', got 'fit'"),
    ("edit.memory_margin", 1.0, "key 'edit.memory_margin': must be within [0, 1), got 1.0"),
    ("edit.memory_margin", -0.1, "key 'edit.memory_margin': must be within [0, 1), got -0.1"),
    ("propose.vlm.backend", "replay", "key 'propose.vlm.replay': the replay backend needs a JSONL transcript"),
    ("propose.grounding.detector", "", "key 'propose.grounding.detector': must name a hub id or a folder"),
    ("baselines.univfd.clip_model", "", "key 'baselines.univfd.clip_model': must name a hub id or a folder"),
    ("detect.detectors", {"Big": {"arch": "Unet", "encoder": "resnet18"}},
     "key 'detect.detectors.Big': names must be lower-case [a-z0-9_-]"),
    ("detect.detectors.fcn8s.encoder", "resnet18",
     "key 'detect.detectors.fcn8s.encoder': fcn8s is defined on VGG-16: use encoder 'vgg16' or 'vgg16_bn', "
     "got 'resnet18'"),
    ("detect.detectors.fcn8s.encoder", "vgg19_bn",
     "key 'detect.detectors.fcn8s.encoder': fcn8s is defined on VGG-16: use encoder 'vgg16' or 'vgg16_bn'"),
    ("detect.detectors.segformer.task", "segmentation",
     "key 'detect.detectors.segformer.task': must be null, 'binary' or 'attribution', got 'segmentation'"),
    ("detect.detectors.segformer.epochs", 0, "key 'detect.detectors.segformer.epochs': must be null or >= 1, got 0"),
    ("detect.detectors.segformer.lr", -0.1, "key 'detect.detectors.segformer.lr': must be null or > 0, got -0.1"),
    ("detect.detectors.segformer.frontend", "rgb",
     "key 'detect.detectors.segformer.frontend': must be null or one of srm, bayar, rgb+srm, rgb+bayar, srm+bayar, "
     "rgb+srm+bayar, got 'rgb'"),
    ("detect.detectors.fcn8s.frontend", "srm+rgb", "key 'detect.detectors.fcn8s.frontend': must be null or one of "),
    ("detect.detectors.fcn8s.epochs", 1,
     "key 'detect.warmup_epochs': must be < the epochs of detector 'fcn8s' (1), got 1"),
    ("crossgen.detector", "unet", "key 'crossgen.detector': must be a key of detect.detectors, got 'unet'"),
    # the detector routes: smp / fcn8s, transformers, target
    ("detect.detectors.extra", {"arch": "Unett", "encoder": "resnet18"},
     "key 'detect.detectors.extra.arch': must be 'fcn8s', 'transformers' or an smp architecture (unet, "),
    ("detect.detectors.extra", {"encoder": "resnet18"},
     "key 'detect.detectors.extra.arch': must name the architecture ('fcn8s', an smp architecture or "
     "'transformers'), or set target"),
    ("detect.detectors.extra", {"arch": "Unet"}, "key 'detect.detectors.extra.encoder': must name the encoder of Unet"),
    ("detect.detectors.extra", {"arch": "Unet", "encoder": "resnet18", "model": "nvidia/mit-b0"},
     "key 'detect.detectors.extra.model': is not used by arch Unet: drop it"),
    ("detect.detectors.extra", {"arch": "transformers"},
     "key 'detect.detectors.extra.config.model_type': arch transformers needs model (a hub id or folder) or "
     "config.model_type, one of segformer, upernet, mask2former, dpt; got None"),
    ("detect.detectors.extra", {"arch": "transformers", "config": {"model_type": "beit"}},
     "key 'detect.detectors.extra.config.model_type': arch transformers needs model"),
    ("detect.detectors.extra", {"arch": "transformers", "model": "nvidia/mit-b0", "config": {"model_type": "dpt"}},
     "key 'detect.detectors.extra.config.model_type': the type comes from the checkpoint 'nvidia/mit-b0': drop it"),
    ("detect.detectors.extra", {"arch": "transformers", "config": {"model_type": "segformer", "num_labels": 5}},
     "key 'detect.detectors.extra.config.num_labels': is set from the task's classes and the input channels"),
    ("detect.detectors.extra", {"arch": "transformers", "encoder": "mit_b0", "model": "nvidia/mit-b0"},
     "key 'detect.detectors.extra.encoder': is not used by arch transformers: drop it"),
    ("detect.detectors.extra", {"target": "detectors.mynet.build"},
     "key 'detect.detectors.extra.target': must be 'package.module:function' (e.g. 'detectors.mynet:build'), "
     "got 'detectors.mynet.build'"),
    ("detect.detectors.extra", {"target": "detectors.mynet:build:x"}, "key 'detect.detectors.extra.target': must be"),
    ("detect.detectors.extra", {"target": "detectors.mynet:build", "arch": "Unet", "encoder": "resnet18"},
     "key 'detect.detectors.extra': set arch or target, not both (arch 'Unet', target 'detectors.mynet:build')"),
    ("detect.detectors.extra", {"target": "detectors.mynet:build", "config": {"model_type": "segformer"}},
     "key 'detect.detectors.extra.config': is not used by target: drop it"),
    ("detect.detectors.extra", {"target": "detectors.mynet:build", "kwargs": {"n_classes": 3}},
     "key 'detect.detectors.extra.kwargs.n_classes': is passed by the trainer"),
    ("detect.detectors.extra", {"arch": "Unet", "encoder": "resnet18", "kwargs": {"width": 8}},
     "key 'detect.detectors.extra.kwargs': is not used by arch Unet: drop it"),
    ("crossgen.held_out", ["dalle"], "key 'crossgen.held_out': unknown generator(s) ['dalle']"),
    ("crossgen.unseen", ["dalle"], "key 'crossgen.unseen': unknown generator(s) ['dalle']"),
    ("crossgen.unseen", ["sdxl"], "key 'crossgen.unseen': ['sdxl'] must also be in crossgen.held_out, which "
                                  "gives each generator its crossgen@ stage"),
    ("crossgen", {"detector": "segformer", "held_out": ["sd2", "sdxl", "flux", "sd3", "kandinsky", "hunyuan",
                                                         "kolors"],
                  "unseen": ["sd2", "sdxl", "flux", "sd3", "kandinsky", "hunyuan", "kolors"]},
     "key 'crossgen.unseen': leaves no generator to train on"),
    ("twins.loras", ["sdxl", "glide"], "key 'twins.loras': ['glide'] have no twin to adapt: list them in "
                                       "twins.families too"),
    ("official.mask_values", {0: "background"}, "key 'official.mask_values': one mask value must map to 'authentic'"),
    # the turn chain
    ("turns.t2.prev", "data/source", "key 'turns.t2.prev': must be 'data/turns/t1/state', got 'data/source'"),
    ("final_state", "data/turns/t2/state", "key 'final_state': must be the last turn's state, 'data/turns/t3/state'"),
]


@pytest.mark.parametrize("key, value, message", RANGE_CASES, ids=[f"{k}={v!r}" for k, v, _ in RANGE_CASES])
def test_out_of_range_values_stop_with_the_key(tmp_path, key, value, message):
    path = _params_with(tmp_path, key, value)
    with pytest.raises(params.ParamsError) as err:
        params.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


DEVICE_KEYS = [k for k in schema_keys(params.Params) if k.rsplit(".", 1)[-1] == "device"]
DTYPE_KEYS = [k for k in schema_keys(params.Params) if k.rsplit(".", 1)[-1] == "dtype"]


def test_every_device_and_dtype_field_is_found():
    assert set(DEVICE_KEYS) == {"edit.device", "propose.vlm.device", "propose.grounding.device",
                                "filter.vlm.device", "detect.device"}
    assert set(DTYPE_KEYS) == {"edit.generators[0].dtype", "propose.vlm.dtype", "filter.vlm.dtype"}


@pytest.fixture(scope="module")
def loaded() -> params.Params:
    return params.load(ROOT / "params.yaml")


def _accepts(p: params.Params, key: str, value) -> None:
    p = copy.deepcopy(p)
    *parents, last = re.findall(r"[^.\[\]]+", key)
    node = p
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else getattr(node, part)
    setattr(node, last, value)
    p.check()


@pytest.mark.parametrize("key", DEVICE_KEYS)
def test_device_fields_take_the_one_device_list(tmp_path, loaded, key):
    for device in params.DEVICES:
        _accepts(loaded, key, device)
    with pytest.raises(params.ParamsError) as err:
        params.load(_params_with(tmp_path, key, "gpu"))
    assert f"key '{key}': must be 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'" in str(err.value)


@pytest.mark.parametrize("key", DTYPE_KEYS)
def test_dtype_fields_take_the_one_dtype_list(tmp_path, loaded, key):
    for dtype in params.DTYPES:
        _accepts(loaded, key, dtype)
    with pytest.raises(params.ParamsError) as err:
        params.load(_params_with(tmp_path, key, "int8"))
    assert f"key '{key}': must be 'auto', 'float32', 'float16' or 'bfloat16', got 'int8'" in str(err.value)


def test_detect_training_keys_take_their_documented_values(loaded):
    defaults = params.Detect()
    assert (defaults.schedule, defaults.warmup_epochs, defaults.ignore_index) == ("cosine", 1, 255)
    assert params.Detector(arch="Unet", encoder="resnet18").task is None
    for key, value in [("detect.ignore_index", None), ("detect.ignore_index", -100), ("detect.ignore_index", 8),
                       ("detect.ignore_index", 255), ("detect.schedule", "constant"), ("detect.warmup_epochs", 0),
                       ("detect.warmup_epochs", 9)]:
        _accepts(loaded, key, value)
    for name, field, value in [("fcn8s", "encoder", "vgg16_bn"), ("segformer", "task", "binary"),
                               ("segformer", "task", "attribution"), ("fcn8s", "task", None)]:
        p = copy.deepcopy(loaded)
        setattr(p.detect.detectors[name], field, value)
        p.check()


def test_every_detector_route_is_accepted(tmp_path):
    routes = {"upper": {"arch": "UPerNet", "encoder": "resnet18"},
              "hub": {"arch": "transformers", "model": "nvidia/mit-b2", "config": {"drop_path_rate": 0.2}},
              "tiny": {"arch": "transformers", "config": {"model_type": "upernet", "hidden_size": 16,
                                                           "backbone_config": {"model_type": "convnext",
                                                                               "depths": [1, 1, 1, 1]}}},
              "mine": {"target": "detectors.mynet:build", "kwargs": {"width": 8, "depths": [1, 2]}}}
    p = params.load(_params_with(tmp_path, "detect.detectors", {**_repo_params()["detect"]["detectors"], **routes}))
    specs = p.detect.detectors
    assert specs["tiny"].config["backbone_config"] == {"model_type": "convnext", "depths": [1, 1, 1, 1]}
    assert (specs["mine"].arch, specs["mine"].kwargs) == (None, {"width": 8, "depths": [1, 2]})
    assert [specs[n].summary for n in ("fcn8s", "upper", "hub", "tiny", "mine")] == [
        "fcn8s/vgg16_bn", "UPerNet/resnet18", "transformers nvidia/mit-b2", "transformers upernet",
        "detectors.mynet:build"]


def test_smp_architecture_list_is_smps_own():
    import segmentation_models_pytorch as smp

    assert params.SMP_ARCHS == tuple(smp.MODEL_ARCHITECTURES_MAPPING)


def test_class_weights_refuse_a_detector_of_the_other_task(tmp_path):
    override = {"detect": {"task": "binary", "class_weights": [1.0, 4.0],
                           "detectors": {"segformer": {"task": "attribution"}}}}
    with pytest.raises(params.ParamsError) as err:
        params.load(write_params(tmp_path, override))
    assert ("key 'detect.detectors.segformer.task': is 'attribution' but detect.class_weights are per class of "
            "detect.task ('binary')") in str(err.value)
    override["detect"]["detectors"]["segformer"]["task"] = "binary"  # the same task as detect.task: fine
    assert params.load(write_params(tmp_path, override)).detect.detectors["segformer"].task == "binary"


def test_cli_stops_before_work_on_bad_params(tmp_path):
    write_params(tmp_path, {"filter": {"min_chnage": 1.0}})
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2
    assert "filter.min_chnage" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "data").exists()


def test_cli_names_the_key_of_an_out_of_range_value(tmp_path):
    write_params(tmp_path, {"detect": {"device": "gpu"}})
    run = subprocess.run([sys.executable, "-m", "diffseg.cli", "source"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        "diffseg source: params.yaml: key 'detect.device': must be 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'"]
    assert not (tmp_path / "data").exists()


def test_a_detector_trains_with_its_own_epochs_and_lr(loaded):
    detect = copy.deepcopy(loaded.detect)
    detect.detectors["fcn8s"].epochs, detect.detectors["fcn8s"].lr = 25, 0.003
    own = detect.training("fcn8s")
    assert (own.epochs, own.lr, own.batch_size) == (25, 0.003, detect.batch_size)
    other = detect.training("deeplabv3plus")
    assert (other.epochs, other.lr) == (detect.epochs, detect.lr)
