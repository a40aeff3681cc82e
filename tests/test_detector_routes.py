"""The detector routes beside fcn8s and smp: transformers' segmentation models (from a tiny config, and from a
pretrained folder through from_pretrained) and a user's model by import path (``target``); a front-end on
every route. This module also defines the user model that the target tests import by path."""
from __future__ import annotations

import dataclasses

import json
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file
from torch import nn

from conftest import ROOT, write_params
from dataset_fixture import CLASSES, build_dataset
from diffseg import params as params_mod
from diffseg.detect import hf_models, train, user_models, zoo
from diffseg.detect.data import SegmentationSet
from diffseg.errors import UserError
from diffseg.params import Detect, Detector

STAGES = ["stage1", "stage2", "stage3", "stage4"]
SWIN = {"model_type": "swin", "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 4,
        "out_features": STAGES}
# Tiny configs of every model kind the route builds, as a params entry's `config` spells them.
TINY = {
    "segformer": {"model_type": "segformer", "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1],
                  "num_attention_heads": [1, 1, 1, 1], "decoder_hidden_size": 16},
    "upernet-convnext": {"model_type": "upernet", "hidden_size": 16, "auxiliary_channels": 8,
                         "backbone_config": {"model_type": "convnext", "depths": [1, 1, 1, 1],
                                             "hidden_sizes": [8, 16, 24, 32], "out_features": STAGES}},
    "upernet-swin": {"model_type": "upernet", "hidden_size": 16, "auxiliary_channels": 8, "backbone_config": SWIN},
    "upernet-dinov2": {"model_type": "upernet", "hidden_size": 16, "auxiliary_channels": 8,
                       "backbone_config": {"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 4,
                                           "num_attention_heads": 2, "intermediate_size": 32, "patch_size": 8,
                                           "image_size": 32, "out_features": STAGES,
                                           "reshape_hidden_states": True}},
    # GroupNorm(32, ...) in its pixel decoder: feature sizes are multiples of 32.
    "mask2former": {"model_type": "mask2former", "num_queries": 8, "hidden_dim": 32, "feature_size": 32,
                    "mask_feature_size": 32, "encoder_feedforward_dim": 32, "dim_feedforward": 32,
                    "encoder_layers": 1, "decoder_layers": 2, "num_attention_heads": 2, "backbone_config": SWIN},
    "dpt": {"model_type": "dpt", "hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2,
            "intermediate_size": 32, "image_size": 32, "patch_size": 8, "neck_hidden_sizes": [8, 16, 24, 32],
            "fusion_hidden_size": 16, "backbone_out_indices": [0, 1, 2, 3]},
}


class TinyNet(nn.Module):
    """A user's detector: two convolutions, logits at the input size."""

    def __init__(self, n_classes: int, in_channels: int, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build(n_classes: int, in_channels: int, width: int = 4) -> nn.Module:
    """What ``target: test_detector_routes:build`` calls."""
    return TinyNet(n_classes, in_channels, width)


def build_half(n_classes: int, in_channels: int) -> nn.Module:
    """Logits at half the input size: refused."""
    return nn.Conv2d(in_channels, n_classes, 2, stride=2)


def build_list(n_classes: int, in_channels: int) -> list:
    return [n_classes, in_channels]


def build_fixed(n_classes: int) -> nn.Module:
    return TinyNet(n_classes, 3, 4)


def _batch(in_channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of 32 px: random images with a bright square of class 1 or 2."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, in_channels, 32, 32, generator=g) * 0.4
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    for i in range(2):
        y[i, 4 + 8 * i:20 + 8 * i, 8:24] = 1 + i
        x[i, :, 4 + 8 * i:20 + 8 * i, 8:24] = 0.8 + 0.1 * i
    return x, y


def _spec(kind: str) -> Detector:
    spec = Detector(arch="transformers", config=TINY[kind])
    spec.check("detect.detectors.tiny")
    return spec


@pytest.mark.parametrize("kind", list(TINY))
def test_transformers_model_trains_and_reloads(tmp_path, kind):
    torch.manual_seed(0)
    spec = _spec(kind)
    model = zoo.build_detector("tiny", spec, CLASSES)
    x, y = _batch()
    criterion = train.make_loss(Detect(), "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(4):
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out.shape == (2, len(CLASSES), 32, 32)  # logits at the input size, whatever the model's stride
    assert losses[-1] < losses[0]

    model.eval()
    zoo.save(model, tmp_path / "m", {**zoo.describe(spec, model), "classes": CLASSES})
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (saved["arch"], saved["encoder"], saved["model"]) == ("transformers", TINY[kind]["model_type"], None)
    assert saved["transformers"]["id2label"] == {"0": "authentic", "1": "sd2", "2": "sdxl"}
    loaded, config = zoo.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert config["classes"] == CLASSES and "in_channels" not in config


def test_mask2former_semantic_map_is_the_normalised_query_mixture():
    torch.manual_seed(0)
    model = zoo.build_detector("tiny", _spec("mask2former"), CLASSES).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        raw = model.net(pixel_values=x)
        probs = model(x).softmax(1)
    classes = raw.class_queries_logits.softmax(-1)[..., :-1]  # without "no object"
    semantic = torch.einsum("bqc,bqhw->bchw", classes, raw.masks_queries_logits.sigmoid())
    semantic = nn.functional.interpolate(semantic, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(probs, semantic / semantic.sum(1, keepdim=True), atol=1e-6)


def test_pretrained_folder_loads_its_weights_and_a_new_head(tmp_path):
    """The paper-scale line (from_pretrained of a hub id) on a local folder: an ADE20k-sized head is replaced."""
    config = transformers.AutoConfig.for_model(**TINY["segformer"], num_labels=150)
    torch.manual_seed(1)
    pretrained = transformers.AutoModelForSemanticSegmentation.from_config(config)
    pretrained.save_pretrained(tmp_path / "ckpt")
    transformers.SegformerImageProcessor().save_pretrained(tmp_path / "ckpt")
    spec = Detector(arch="transformers", model=str(tmp_path / "ckpt"))

    model = zoo.build_detector("hub", spec, ["authentic", "edited"])

    state, source = model.net.state_dict(), pretrained.state_dict()
    encoder = [k for k in source if k.startswith("segformer.")]
    assert len(encoder) > 50 and all(torch.equal(state[k], source[k]) for k in encoder)
    assert state["decode_head.classifier.weight"].shape == (2, 16, 1, 1)
    assert model.net.config.id2label == {0: "authentic", 1: "edited"}
    assert model.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert model.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    # Saved and loaded without the folder: the config and the normalisation travel with the checkpoint.
    zoo.save(model.eval(), tmp_path / "m", {**zoo.describe(spec, model), "classes": ["authentic", "edited"]})
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    loaded, _ = zoo.load(tmp_path / "m")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_pretrained_errors_name_the_model(tmp_path):
    with pytest.raises(UserError, match="cannot load 'nvidia/mit-b0'.*huggingface-cli download nvidia/mit-b0"):
        zoo.build_detector("hub", Detector(arch="transformers", model="nvidia/mit-b0"), CLASSES)
    config = transformers.AutoConfig.for_model(**TINY["segformer"])
    transformers.AutoModelForSemanticSegmentation.from_config(config).save_pretrained(tmp_path / "bare")
    with pytest.raises(UserError, match=r"no image processor config \(preprocessor_config.json\)"):
        zoo.build_detector("hub", Detector(arch="transformers", model=str(tmp_path / "bare")), CLASSES)


@pytest.mark.parametrize("spec", [
    Detector(arch="fcn8s", encoder="vgg16_bn"), Detector(arch="Unet", encoder="resnet18"),
    Detector(arch="transformers", config=TINY["segformer"]),
    Detector(arch="transformers", config=TINY["upernet-convnext"]),
    Detector(target="test_detector_routes:build", kwargs={"width": 4})], ids=lambda s: s.summary)
def test_every_route_takes_a_frontend(tmp_path, spec):
    # rgb+srm feeds the network six channels: a route that ignored them would fail at the first forward
    spec = dataclasses.replace(spec, frontend="rgb+srm")
    torch.manual_seed(0)
    model = zoo.build_detector("six", spec, CLASSES).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3, 64, 64)
    zoo.save(model, tmp_path / "m", {**zoo.describe(spec, model), "classes": CLASSES})
    loaded, config = zoo.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    assert config["frontend"] == "rgb+srm"


# --- a user's model by import path ------------------------------------------------------------------------

def test_user_model_trains_with_the_real_loop_and_reloads(workdir):
    build_dataset(workdir / "data" / "dataset")
    detectors = {"mine": {"target": "test_detector_routes:build", "kwargs": {"width": 6}, "task": "binary"}}
    p = params_mod.load(write_params(workdir, {"detect": {"dataset": "data/dataset", "image_size": 64, "epochs": 3,
                                                          "batch_size": 4, "lr": 0.01, "detectors": detectors},
                                               "crossgen": {"held_out": []}}))
    spec, cfg = p.detect.detectors["mine"], p.detect.training("mine")
    classes = ["authentic", "edited"]
    torch.manual_seed(0)
    model = zoo.build_detector("mine", spec, classes)
    assert isinstance(model, TinyNet) and model.body[0].out_channels == 6
    initial = model.body[0].weight.detach().clone()
    train_set = SegmentationSet(workdir / "data" / "dataset", ["train"], "binary", 64)
    val_set = SegmentationSet(workdir / "data" / "dataset", ["val"], "binary", 64)

    history = train.fit(model, train_set, val_set, cfg, classes, 0, "cpu")

    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    assert not torch.equal(model.body[0].weight, initial)
    zoo.save(model, workdir / "m", {**zoo.describe(spec, model), "classes": classes, "name": "mine"})
    loaded, config = zoo.load(workdir / "m")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert (config["arch"], config["target"], config["kwargs"]) == ("target", "test_detector_routes:build",
                                                                    {"width": 6})

    # The stage itself: train@mine writes a checkpoint zoo.load rebuilds through the same import path.
    train.run(p, "mine", workdir / "models" / "detectors" / "mine", workdir / "log")
    loaded, config = zoo.load(workdir / "models" / "detectors" / "mine")
    reference = build(2, 3, width=6)
    reference.load_state_dict(load_file(str(workdir / "models" / "detectors" / "mine" / "model.safetensors")))
    with torch.no_grad():
        assert torch.equal(loaded(x), reference.eval()(x))
    assert (config["task"], config["target"], config["encoder"]) == ("binary", "test_detector_routes:build", None)


@pytest.mark.parametrize("target, kwargs, message", [
    ("no_such_package.models:build", {},
     "detector 'mine' (target 'no_such_package.models:build'): cannot import 'no_such_package.models' (No module "
     "named 'no_such_package'); code in the repository's detectors/ folder is imported as detectors.<module>"),
    ("test_detector_routes:missing", {},
     "detector 'mine' (target 'test_detector_routes:missing'): module 'test_detector_routes' has no function "
     "'missing'"),
    ("test_detector_routes:build", {"depth": 3},
     "detector 'mine' (target 'test_detector_routes:build'): cannot be called with ['depth', 'in_channels', "
     "'n_classes']: got an unexpected keyword argument 'depth'"),
    ("test_detector_routes:build_fixed", {},
     "detector 'mine' (target 'test_detector_routes:build_fixed'): cannot be called with ['in_channels', "
     "'n_classes']: got an unexpected keyword argument 'in_channels'"),
    ("test_detector_routes:build_list", {},
     "detector 'mine' (target 'test_detector_routes:build_list'): returned a list, not a torch.nn.Module"),
    ("test_detector_routes:build_half", {},
     "detector 'mine' (target 'test_detector_routes:build_half'): must return logits of shape (B, classes, H, W) "
     "at the input size; a (1, 3, 64, 64) input gave shape (1, 3, 32, 32), expected (1, 3, 64, 64)"),
])
def test_user_model_errors_name_the_detector(target, kwargs, message):
    with pytest.raises(UserError) as err:
        zoo.build_detector("mine", Detector(target=target, kwargs=kwargs), CLASSES)
    assert str(err.value) == message


def test_detectors_folder_resolves_from_the_working_directory(workdir, monkeypatch):
    """The repository root is the working directory of every stage: detectors.<module> resolves there."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(ROOT))])
    (workdir / "detectors").mkdir()
    (workdir / "detectors" / "__init__.py").write_text("")
    (workdir / "detectors" / "probe_net.py").write_text(
        "from torch import nn\n\n\ndef build(n_classes, in_channels, width=2):\n"
        "    return nn.Conv2d(in_channels, n_classes, 3, padding=width - 1)\n")
    for name in ("detectors.probe_net", "detectors"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    model = user_models.build("probe", "detectors.probe_net:build", {"width": 2}, 2)

    assert (model.in_channels, model.out_channels, model.padding) == (3, 2, (1, 1))
    assert sys.modules["detectors"].__file__ == str(workdir / "detectors" / "__init__.py")
    for name in ("detectors.probe_net", "detectors"):
        sys.modules.pop(name)


def test_hf_checkpoint_config_round_trips_through_json():
    spec = _spec("upernet-swin")
    model = zoo.build_detector("tiny", spec, CLASSES)
    config = json.loads(json.dumps(hf_models.checkpoint_config(model)))
    rebuilt = hf_models.from_checkpoint(config)
    assert rebuilt.net.config.backbone_config.embed_dim == 8
    assert rebuilt.net.config.to_dict() == model.net.config.to_dict()
