"""The detector zoo: FCN-8s (on VGG-16, as Long et al. define it), every segmentation-models-pytorch model,
transformers' segmentation models and a user's own model by import path.

A detector is named in params (``detect.detectors.<d>``, :class:`diffseg.params.Detector`) by one of four
routes, dispatched by :func:`build_detector`: ``arch: fcn8s`` builds :class:`FCN8s` (encoder ``vgg16``,
or ``vgg16_bn`` with BatchNorm); ``arch: transformers`` a transformers model (``diffseg.detect.hf_models``);
``target: package.module:function`` a user's model (``diffseg.detect.user_models``); any other ``arch`` is
passed to ``smp.create_model`` (DeepLabV3Plus, Segformer, Unet, UPerNet, ... with any smp encoder), so a
newer detector is a one-line params change. Every route takes ``in_channels`` (3 unless a front-end adds
channels). Checkpoints are ``model.safetensors`` plus ``config.json`` (what was built and for which
classes: :func:`describe`), loaded back by :func:`load` with no hub access; ``arch`` there is
``transformers`` (with the whole transformers config under ``transformers``) or ``target`` (with
``target`` and ``kwargs``) for the two newer routes.

Every caller feeds images in [0, 1] (``diffseg.detect.data.prepare``). A pretrained encoder expects
ImageNet-normalised input, so a model built with ``encoder_weights`` is wrapped in :class:`Normalized`,
which holds the mean and std as buffers: they are saved with the weights, ``config.json`` records
``"normalize": "imagenet"``, and :func:`load` rebuilds the same wrapper. Randomly initialised models
(the offline profile) learn from [0, 1] directly and stay unwrapped (``"normalize": null``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffseg import records
from diffseg.detect import hf_models, user_models
from diffseg.params import TRANSFORMERS, Detector

FCN_ENCODERS = ("vgg16", "vgg16_bn")
# torchvision's ImageNet statistics, the input normalisation of every ImageNet-pretrained encoder here.
NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


class Normalized(nn.Module):
    """``model((x - mean) / std)``: the input normalisation a pretrained encoder expects, inside the model.

    ``mean`` and ``std`` are per-channel buffers, so they move with ``.to(device)`` and are part of the
    state dict (keys ``mean``, ``std``; the wrapped model's keys start with ``model.``).
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def normalize(model: nn.Module, name: str | None) -> nn.Module:
    """``model`` wrapped in :class:`Normalized` with the statistics called ``name``; unchanged for None."""
    if name is None:
        return model
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown input normalisation {name!r}; known: {sorted(NORMALIZATIONS)}")
    return Normalized(model, *NORMALIZATIONS[name])


def normalization(encoder_weights: str | None) -> str | None:
    """The input normalisation a model with these encoder weights gets: 'imagenet' for any pretrained one."""
    return None if encoder_weights is None else "imagenet"


class FCN8s(nn.Module):
    """FCN-8s (Long, Shelhamer and Darrell, CVPR 2015, arXiv:1411.4038) on torchvision's VGG-16.

    Scores from pool3, pool4 and the fully convolutional head are fused at strides 8, 16 and 32.
    Bilinear upsampling replaces the original learned deconvolutions (a common, equivalent-in-practice
    simplification that keeps arbitrary input sizes exact). ``batch_norm`` takes VGG-16 with BatchNorm
    after every convolution (torchvision's ``vgg16_bn``): from random initialisation the plain VGG-16
    stays at predicting one class everywhere, the BatchNorm one trains.
    """

    def __init__(self, n_classes: int, pretrained: bool = False, batch_norm: bool = False, in_channels: int = 3):
        super().__init__()
        from torchvision.models import VGG16_BN_Weights, VGG16_Weights, vgg16, vgg16_bn

        if batch_norm:
            features = vgg16_bn(weights=VGG16_BN_Weights.IMAGENET1K_V1 if pretrained else None).features
        else:
            features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1 if pretrained else None).features
        if in_channels != 3:
            features[0] = _first_conv(features[0], in_channels)
        # Cut after the 3rd and 4th max-pooling (indices 16 and 23 in vgg16, 23 and 33 in vgg16_bn).
        pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        p3, p4 = pools[2] + 1, pools[3] + 1
        self.to_pool3, self.to_pool4, self.to_pool5 = features[:p3], features[p3:p4], features[p4:]
        self.head = nn.Sequential(
            nn.Conv2d(512, 1024, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(1024, n_classes, 1))
        self.score_pool4 = nn.Conv2d(512, n_classes, 1)
        self.score_pool3 = nn.Conv2d(256, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.head(self.to_pool5(pool4))
        score = _up(score, pool4) + self.score_pool4(pool4)
        score = _up(score, pool3) + self.score_pool3(pool3)
        return nn.functional.interpolate(score, size=size, mode="bilinear", align_corners=False)


def _first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` taking ``in_channels`` inputs: its RGB weights kept, the extra channels' weights zero, so a
    pretrained VGG-16 starts where it was and learns what the extra channels add."""
    wider = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :min(3, in_channels)] = conv.weight[:, :min(3, in_channels)]
        wider.bias.copy_(conv.bias)
    return wider


def _up(score: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(score, size=like.shape[-2:], mode="bilinear", align_corners=False)


def build(arch: str, encoder: str, n_classes: int, encoder_weights: str | None = None,
          in_channels: int = 3) -> nn.Module:
    """A fresh FCN-8s or smp detector; ``encoder_weights`` is e.g. 'imagenet' at paper scale (the model then
    normalises its [0, 1] input itself, see :class:`Normalized`), None offline."""
    return normalize(_network(arch, encoder, n_classes, encoder_weights, in_channels), normalization(encoder_weights))


def build_detector(name: str, spec: Detector, classes: list[str], in_channels: int = 3) -> nn.Module:
    """A fresh detector ``name`` of params ``spec`` for the task's ``classes``, by its route."""
    if spec.target is not None:
        return user_models.build(name, spec.target, spec.kwargs, len(classes), in_channels)
    if spec.arch == TRANSFORMERS:
        return hf_models.build(spec.model, spec.config, classes, in_channels)
    return build(spec.arch, spec.encoder, len(classes), spec.encoder_weights, in_channels)


def describe(spec: Detector, model: nn.Module, in_channels: int = 3) -> dict:
    """The ``config.json`` entries :func:`load` rebuilds ``model`` from (besides ``classes``); ``in_channels``
    only where it is not 3, so RGB checkpoints keep the bytes they had before the key existed."""
    channels = {} if in_channels == 3 else {"in_channels": in_channels}
    if spec.target is not None:
        return {"arch": "target", "encoder": None, "target": spec.target, "kwargs": spec.kwargs, **channels}
    if spec.arch == TRANSFORMERS:
        return {"arch": TRANSFORMERS, "encoder": spec.model or spec.config["model_type"], "model": spec.model,
                "transformers": hf_models.checkpoint_config(model), **channels}
    return {"arch": spec.arch, "encoder": spec.encoder, **channels}


def _network(arch: str, encoder: str, n_classes: int, encoder_weights: str | None, in_channels: int) -> nn.Module:
    """The bare segmentation network, taking normalised input."""
    if arch == "fcn8s":
        if encoder not in FCN_ENCODERS:
            raise ValueError(f"fcn8s is defined on VGG-16 (encoder 'vgg16' or 'vgg16_bn'), got {encoder!r}")
        return FCN8s(n_classes, pretrained=encoder_weights is not None, batch_norm=encoder == "vgg16_bn",
                     in_channels=in_channels)
    import segmentation_models_pytorch as smp

    return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=n_classes,
                            in_channels=in_channels)


def normalization_of(model: nn.Module) -> str | None:
    """The name of the input normalisation ``model`` applies (what ``config.json`` records), or None."""
    if not isinstance(model, Normalized):
        return None
    for name, (mean, std) in NORMALIZATIONS.items():
        if torch.allclose(model.mean.flatten().cpu(), torch.tensor(mean)) and \
                torch.allclose(model.std.flatten().cpu(), torch.tensor(std)):
            return name
    raise ValueError("the model normalises its input with statistics that have no name in zoo.NORMALIZATIONS")


def save(model: nn.Module, folder: Path, config: dict) -> None:
    """``model.safetensors`` and ``config.json``; a :class:`Normalized` model's config gets its ``normalize``."""
    if isinstance(model, Normalized):
        config = {**config, "normalize": normalization_of(model)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with records.atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    records.write_json(folder / "config.json", config)


def load(folder: Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The detector saved in ``folder`` and its config, in eval mode."""
    folder = Path(folder)
    config = records.read_json(folder / "config.json")
    # Weights (and normalisation buffers) come from the checkpoint, so no pretrained download is needed
    # to rebuild the module; checkpoints from before the normalisation wrapper have no "normalize" key, and
    # those from before in_channels none of that.
    in_channels = config.get("in_channels", 3)
    if config["arch"] == "target":
        model = user_models.build(config.get("name", str(folder)), config["target"], config["kwargs"],
                                  len(config["classes"]), in_channels)
    elif config["arch"] == TRANSFORMERS:
        model = hf_models.from_checkpoint(config["transformers"])
    else:
        model = normalize(_network(config["arch"], config["encoder"], len(config["classes"]), None, in_channels),
                          config.get("normalize"))
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), config
