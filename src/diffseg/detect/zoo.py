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

A detector with a forensic front-end (``frontend``, :mod:`diffseg.detect.frontends`: SRM residuals, BayarConv)
is ``FrontEnd(Normalized(network))``: the front-end sees the [0, 1] image and makes the encoder's input
channels (the network is built with that many ``in_channels``), ``Normalized`` normalises only the RGB ones.
:func:`_wrap` is the one place both wrappers are put on, for :func:`build` and :func:`load` alike;
``config.json`` records ``"frontend"`` and the weights include the BayarConv's.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffseg import records
from diffseg.detect import frontends, hf_models, user_models
from diffseg.params import TRANSFORMERS, Detector

FCN_ENCODERS = ("vgg16", "vgg16_bn")
# torchvision's ImageNet statistics, the input normalisation of every ImageNet-pretrained encoder here.
NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


class Normalized(nn.Module):
    """``model((x - mean) / std)``: the input normalisation a pretrained encoder expects, inside the model.

    Only the first ``len(mean)`` channels (the RGB image) are normalised; further channels (a front-end's
    residuals) pass through unchanged. ``mean`` and ``std`` are per-channel buffers, so they move with
    ``.to(device)`` and are part of the state dict (keys ``mean``, ``std``; the wrapped model's keys start with
    ``model.``).
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = self.mean.shape[1]
        return self.model(torch.cat([(x[:, :rgb] - self.mean) / self.std, x[:, rgb:]], 1))


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
    stays at predicting one class everywhere, the BatchNorm one trains. ``in_channels`` other than 3 widens
    the first convolution (:func:`widen_first_conv`).
    """

    def __init__(self, n_classes: int, pretrained: bool = False, batch_norm: bool = False, in_channels: int = 3):
        super().__init__()
        from torchvision.models import VGG16_BN_Weights, VGG16_Weights, vgg16, vgg16_bn

        if batch_norm:
            features = vgg16_bn(weights=VGG16_BN_Weights.IMAGENET1K_V1 if pretrained else None).features
        else:
            features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1 if pretrained else None).features
        if in_channels != 3:
            features[0] = widen_first_conv(features[0], in_channels, pretrained)
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


def _up(score: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(score, size=like.shape[-2:], mode="bilinear", align_corners=False)


def widen_first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """VGG's first ``conv`` taking ``in_channels`` inputs. Pretrained, by smp's rule for ``in_channels`` > 3
    (``patch_first_conv``): input channel i gets the kernel of channel i mod 3, all scaled by 3 / in_channels (the
    response to an input repeated over the channels stays the pretrained one). Otherwise VGG's own initialisation
    (torchvision: Kaiming normal over fan-out, zero bias)."""
    wide = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    with torch.no_grad():
        if pretrained:
            old = conv.in_channels
            wide.weight.copy_(conv.weight[:, [i % old for i in range(in_channels)]] * (old / in_channels))
            wide.bias.copy_(conv.bias)
        else:
            nn.init.kaiming_normal_(wide.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(wide.bias)
    return wide


def build(arch: str, encoder: str, n_classes: int, encoder_weights: str | None = None,
          frontend: str | None = None) -> nn.Module:
    """A fresh FCN-8s or smp detector; ``encoder_weights`` is e.g. 'imagenet' at paper scale (the model then
    normalises its [0, 1] input itself, see :class:`Normalized`), None offline; ``frontend`` one of
    ``frontends.NAMES`` or None (RGB only)."""
    network = _network(arch, encoder, n_classes, encoder_weights, frontends.channels(frontend))
    return _wrap(network, normalization(encoder_weights) if _takes_rgb(frontend) else None, frontend)


def build_detector(name: str, spec: Detector, classes: list[str]) -> nn.Module:
    """A fresh detector ``name`` of params ``spec`` for the task's ``classes``, by its route, behind its
    front-end (``spec.frontend``), which sets the network's input channels."""
    if spec.target is None and spec.arch != TRANSFORMERS:
        return build(spec.arch, spec.encoder, len(classes), spec.encoder_weights, spec.frontend)
    in_channels = frontends.channels(spec.frontend)
    if spec.target is not None:
        network = user_models.build(name, spec.target, spec.kwargs, len(classes), in_channels)
    else:
        network = hf_models.build(spec.model, spec.config, classes, in_channels, rgb=_takes_rgb(spec.frontend))
    return frontends.attach(network, spec.frontend)


def _takes_rgb(frontend: str | None) -> bool:
    """Whether the encoder's first three channels are the RGB image (ImageNet statistics apply to those only)."""
    return "rgb" in frontends.parts_of(frontend)


def describe(spec: Detector, model: nn.Module) -> dict:
    """The ``config.json`` entries :func:`load` rebuilds ``model`` from (besides ``classes``; :func:`save` adds
    ``normalize`` and ``frontend``, from which the input channels follow)."""
    if spec.target is not None:
        return {"arch": "target", "encoder": None, "target": spec.target, "kwargs": spec.kwargs}
    if spec.arch == TRANSFORMERS:
        network = model.model if isinstance(model, frontends.FrontEnd) else model
        return {"arch": TRANSFORMERS, "encoder": spec.model or spec.config["model_type"], "model": spec.model,
                "transformers": hf_models.checkpoint_config(network)}
    return {"arch": spec.arch, "encoder": spec.encoder}


def _wrap(network: nn.Module, normalization_name: str | None, frontend: str | None) -> nn.Module:
    """The detector around the bare ``network``: the front-end outside, seeing the [0, 1] image, and the
    normalisation of the RGB channels inside it, next to the network. Used by :func:`build` and :func:`load`."""
    return frontends.attach(normalize(network, normalization_name), frontend)


def _network(arch: str, encoder: str, n_classes: int, encoder_weights: str | None, in_channels: int = 3) -> nn.Module:
    """The bare segmentation network, taking normalised input with ``in_channels`` channels."""
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
    if isinstance(model, frontends.FrontEnd):
        model = model.model
    if not isinstance(model, Normalized):
        return None
    for name, (mean, std) in NORMALIZATIONS.items():
        if torch.allclose(model.mean.flatten().cpu(), torch.tensor(mean)) and \
                torch.allclose(model.std.flatten().cpu(), torch.tensor(std)):
            return name
    raise ValueError("the model normalises its input with statistics that have no name in zoo.NORMALIZATIONS")


def save(model: nn.Module, folder: Path, config: dict) -> None:
    """``model.safetensors`` and ``config.json``; a normalising model's config gets its ``normalize``, one with a
    front-end its ``frontend`` (other configs are written as given)."""
    if normalization_of(model) is not None:
        config = {**config, "normalize": normalization_of(model)}
    if frontends.name_of(model) is not None:
        config = {**config, "frontend": frontends.name_of(model)}
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
    # to rebuild the module; checkpoints from before the normalisation wrapper or the front-ends have no
    # "normalize" or "frontend" key.
    frontend = config.get("frontend")
    in_channels = frontends.channels(frontend)
    if config["arch"] == "target":
        network = user_models.build(config.get("name", str(folder)), config["target"], config["kwargs"],
                                    len(config["classes"]), in_channels)
        model = frontends.attach(network, frontend)
    elif config["arch"] == TRANSFORMERS:
        model = frontends.attach(hf_models.from_checkpoint(config["transformers"]), frontend)
    else:
        network = _network(config["arch"], config["encoder"], len(config["classes"]), None, in_channels)
        model = _wrap(network, config.get("normalize"), frontend)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), config
