"""Forensic front-ends (SRM residuals, BayarConv) in front of any detector of the zoo."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from conftest import write_params
from dataset_fixture import CLASSES, build_dataset
from diffseg import params as params_mod
from diffseg import records
from diffseg.detect import evaluate, frontends, train, zoo
from diffseg.seeding import keyed_seed

# RGB-N's kernels as published (pengzhou1108/RGB-N, lib/nets/resnet_fusion.py: c[0], c[1], c[2]), typed here
# again rather than imported, each applied to every colour channel.
KV = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
KB = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
HORIZONTAL = [[0] * 5, [0] * 5, [0, 1, -2, 1, 0], [0] * 5, [0] * 5]
PUBLISHED = torch.tensor([KV, KB, HORIZONTAL], dtype=torch.float32) / torch.tensor([12.0, 4.0, 2.0]).view(3, 1, 1)
ENCODERS = [("fcn8s", "vgg16_bn"), ("Unet", "resnet18")]


def test_srm_kernels_are_the_published_ones():
    kernel = frontends.SRM().kernel
    assert kernel.shape == (3, 3, 5, 5)
    for colour in range(3):
        assert torch.equal(kernel[:, colour], PUBLISHED)
    assert kernel[0, 0, 2, 2].item() == -1.0 and kernel[0, 0, 0, 0].item() == pytest.approx(-1 / 12)


def test_srm_is_not_trained():
    torch.manual_seed(0)
    model = zoo.build("Unet", "resnet18", 2, frontend="rgb+srm")
    assert not any(name.startswith("srm") for name, _ in model.named_parameters())
    assert "srm.kernel" in model.state_dict()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = model(torch.rand(2, 3, 32, 32)).square().mean()
    loss.backward()
    optimizer.step()
    assert torch.equal(model.srm.kernel, frontends.srm_kernel()) and model.srm.kernel.grad is None


def test_srm_residuals_by_hand():
    def srm(levels: torch.Tensor) -> torch.Tensor:  # the residual in grey levels (the module gives units of T)
        return frontends.SRM()(levels) * frontends.SRM_TRUNCATION

    # A constant image has no residual (every kernel sums to 0; 1e-4 grey levels of float rounding at most).
    for level in (0.0, 37.0, 127.5, 186.15, 255.0):
        assert srm(torch.full((1, 3, 9, 11), level)).abs().max().item() <= 1e-4
    # One pixel 1 grey level brighter in R, G and B: each residual is its kernel around that pixel.
    impulse = torch.zeros(1, 3, 11, 11)
    impulse[0, :, 5, 5] = 1.0
    out = srm(impulse)[0]
    assert out[:, 5, 5].tolist() == [-1.0, -1.0, -1.0]
    assert out[:, 5, 6].tolist() == pytest.approx([8 / 12, 2 / 4, 1 / 2])
    assert out[:, 3, 3].tolist() == pytest.approx([-1 / 12, 0.0, 0.0])
    assert out[:, 0, 0].tolist() == [0.0, 0.0, 0.0]
    # Only the grey image (R + G + B) / 3 counts: the same pixel in R alone gives a third of that.
    red = torch.zeros(1, 3, 11, 11)
    red[0, 0, 5, 5] = 1.0
    assert srm(red)[0, :, 5, 5].tolist() == pytest.approx([-1 / 3] * 3)
    # Residuals beyond 3 grey levels are content, truncated.
    assert srm(impulse * 5)[0, :, 5, 5].tolist() == [-3.0, -3.0, -3.0]
    assert srm(impulse * 5)[0, :, 5, 6].tolist() == pytest.approx([3.0, 2.5, 2.5])  # 5 x 8 / 12 = 3.33 is cut
    # ... and the module gives them in units of the truncation, [-1, 1] like the RGB channels
    assert frontends.SRM()(impulse * 5)[0, :, 5, 6].tolist() == pytest.approx([1.0, 2.5 / 3, 2.5 / 3])


def _assert_constrained(kernel: torch.Tensor) -> None:
    centre = kernel[:, :, 2, 2]
    assert torch.equal(centre, torch.full_like(centre, -1.0))
    rest = kernel.sum((-2, -1)) - centre
    assert rest.flatten().tolist() == pytest.approx([1.0] * rest.numel(), abs=1e-6)


def test_bayar_constraint_holds_after_steps():
    torch.manual_seed(0)
    bayar = frontends.BayarConv()
    assert bayar.kernel().shape == (3, 1, 5, 5) and [n for n, _ in bayar.named_parameters()] == ["weight"]
    _assert_constrained(bayar.kernel())
    start = bayar.weight.detach().clone()
    optimizer = torch.optim.SGD(bayar.parameters(), lr=1.0)
    grey, target = torch.rand(2, 1, 16, 16) * 255, torch.rand(2, 3, 16, 16)
    for _ in range(5):
        optimizer.zero_grad()
        (bayar(grey) - target).square().mean().backward()
        optimizer.step()
        _assert_constrained(bayar.kernel())
    assert (bayar.weight - start).abs().max() > 1e-3  # the steps did move the weights
    # A prediction error: a constant image leaves nothing, whatever the learned weights.
    assert bayar(torch.full((1, 1, 8, 8), 90.0)).abs().max().item() <= 1e-4


def test_names_and_channels():
    assert frontends.NAMES == params_mod.FRONTENDS
    assert {n: frontends.channels(n) for n in (None, *frontends.NAMES)} == {
        None: 3, "srm": 3, "bayar": 3, "rgb+srm": 6, "rgb+bayar": 6, "srm+bayar": 6, "rgb+srm+bayar": 9}


@pytest.mark.parametrize("name", ["rgb", "bayar+srm", "SRM", "noise"])
def test_an_unknown_frontend_is_a_clear_error(name):
    known = "known: null, srm, bayar, rgb+srm, rgb+bayar, srm+bayar, rgb+srm+bayar"
    with pytest.raises(ValueError, match=re.escape(f"unknown forensic front-end '{name}'; {known}")):
        zoo.build("Unet", "resnet18", 2, frontend=name)


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 64)


@pytest.mark.parametrize("arch, encoder", ENCODERS)
@pytest.mark.parametrize("name", frontends.NAMES)
def test_each_frontend_builds_trains_and_roundtrips(tmp_path, arch, encoder, name):
    torch.manual_seed(0)
    model = zoo.build(arch, encoder, n_classes=3, frontend=name)
    assert frontends.name_of(model) == name and _first_conv(model).in_channels == frontends.channels(name)
    x, y = torch.rand(2, 3, 32, 64), torch.randint(0, 3, (2, 32, 64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    logits = model.train()(x)
    assert logits.shape == (2, 3, 32, 64)
    loss = nn.functional.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert ("bayar.weight" in moved) == ("bayar" in name) and "srm.kernel" not in moved
    zoo.save(model.eval(), tmp_path / "m", {"arch": arch, "encoder": encoder, "classes": CLASSES})
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert ("bayar.weight" in saved) == ("bayar" in name)
    loaded, config = zoo.load(tmp_path / "m")
    assert config["frontend"] == name and "normalize" not in config
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_widened_first_conv_keeps_the_pretrained_response():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    wide = zoo.widen_first_conv(conv, 9, pretrained=True)
    assert wide.weight.shape == (4, 9, 3, 3) and torch.equal(wide.bias, conv.bias)
    for i in range(9):
        assert torch.equal(wide.weight[:, i], conv.weight[:, i % 3] * (3 / 9))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(wide(x.repeat(1, 3, 1, 1)), conv(x), atol=1e-6)
    fresh = zoo.widen_first_conv(conv, 6, pretrained=False)
    assert fresh.weight.shape == (4, 6, 3, 3) and fresh.bias.tolist() == [0.0] * 4  # VGG's own initialisation


class Recorder(nn.Module):
    """A 1x1 convolution that keeps the last input it saw."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 1)

    def forward(self, x):
        self.seen = x
        return self.conv(x)


def test_only_the_rgb_channels_are_imagenet_normalised(tmp_path, monkeypatch):
    # encoder_weights 'imagenet' without a download: the network is stubbed, the wrapping is the real one.
    monkeypatch.setattr(zoo, "_network", lambda arch, encoder, n, weights, in_channels: Recorder(in_channels))
    torch.manual_seed(0)
    model = zoo.build("Unet", "resnet18", 2, encoder_weights="imagenet", frontend="rgb+srm+bayar").eval()
    assert isinstance(model, frontends.FrontEnd) and isinstance(model.model, zoo.Normalized)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
    seen, mean, std = model.model.model.seen, model.model.mean, model.model.std
    assert seen.shape == (1, 9, 16, 16)
    assert torch.equal(seen[:, :3], (x - mean) / std)
    assert torch.equal(seen[:, 3:6], model.srm(x * 255))
    grey = (x * 255 * torch.tensor(frontends.LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.equal(seen[:, 6:], model.bayar(grey))
    zoo.save(model, tmp_path / "m", {"arch": "Unet", "encoder": "resnet18", "classes": ["authentic", "edited"]})
    config = records.read_json(tmp_path / "m" / "config.json")
    assert (config["normalize"], config["frontend"]) == ("imagenet", "rgb+srm+bayar")
    loaded, _ = zoo.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
    # Residuals alone: nothing to normalise, even with pretrained encoder weights.
    residuals = zoo.build("Unet", "resnet18", 2, encoder_weights="imagenet", frontend="srm+bayar")
    assert not isinstance(residuals.model, zoo.Normalized) and zoo.normalization_of(residuals) is None


def test_a_frontend_detector_trains_with_the_training_stage(workdir):
    """train.run on the tiny dataset: the checkpoint records the front-end and holds the trained BayarConv."""
    build_dataset(workdir / "data" / "dataset")
    detectors = {"forensic": {"arch": "Unet", "encoder": "resnet18", "frontend": "rgb+srm+bayar"}}
    p = params_mod.load(write_params(workdir, {"detect": {"image_size": 64, "epochs": 2, "batch_size": 4,
                                                          "detectors": detectors},
                                               "crossgen": {"held_out": []}}))
    torch.manual_seed(keyed_seed(p.seed, "train", "forensic") % (1 << 32))
    initial = zoo.build("Unet", "resnet18", len(CLASSES), frontend="rgb+srm+bayar").bayar.weight.detach()
    train.run(p, "forensic", workdir / "m", workdir / "log")
    model, config = zoo.load(workdir / "m")
    assert config["frontend"] == "rgb+srm+bayar" and config["normalize"] is None
    assert not torch.equal(model.bayar.weight, initial)
    _assert_constrained(model.bayar.kernel())
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.slow  # two trainings and two evaluations on the tiny dataset (about a minute)
def test_srm_frontend_end_to_end(workdir):
    """The same Unet trained and evaluated by the real stages, once on RGB and once on RGB + SRM residuals:
    the front-end detector goes through train, checkpoint, zoo.load and evaluate like any other. Nine
    training images for three epochs: the printed figures show the run, not which input is better."""
    build_dataset(workdir / "data" / "dataset")
    detectors = {"plain": {"arch": "Unet", "encoder": "resnet18"},
                 "srm": {"arch": "Unet", "encoder": "resnet18", "frontend": "rgb+srm"}}
    p = params_mod.load(write_params(workdir, {"detect": {"image_size": 64, "epochs": 3, "batch_size": 4,
                                                          "task": "binary", "detectors": detectors},
                                               "crossgen": {"held_out": []}}))
    results = {}
    for name in detectors:
        train.run(p, name, workdir / "models" / "detectors" / name, workdir / "log" / name)
        results[name] = evaluate.run(p, name, workdir / f"{name}.json", workdir / f"{name}_c.json",
                                     workdir / "pred" / name)
        kept = records.read_json(workdir / "models" / "detectors" / name / "config.json")
        binary = results[name]["binary"]
        print(f"{name}: kept epoch {kept['kept_epoch']} (val IoU edited {kept['val_iou_edited']}); test IoU edited "
              f"{binary['iou_edited']['value']}, pixel AUC {binary['pixel_auc']['value']}, detection AUC "
              f"{binary['detection_auc']['value']}")
    config = records.read_json(workdir / "models" / "detectors" / "srm" / "config.json")
    assert config["frontend"] == "rgb+srm" and "frontend" not in records.read_json(
        workdir / "models" / "detectors" / "plain" / "config.json")
    assert results["srm"]["test_images"] == results["plain"]["test_images"] == 6
