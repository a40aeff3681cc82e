"""Detectors from transformers' segmentation models: SegFormer, UperNet, Mask2Former and DPT.

Params ``arch: transformers`` with ``model`` (a hub id or local folder, loaded by ``from_pretrained``) or
``config`` (a transformers config with ``model_type``, built from random weights: the offline route).
Either way ``num_labels`` and the label names come from the task's classes, ``num_channels`` from the
input channels (on the backbone config too, where the model has one), so a pretrained checkpoint's head is
re-initialised for the task (``ignore_mismatched_sizes=True``).

:class:`HFSegmenter` makes every model look like the other routes: [0, 1] images in, (B, classes, H, W)
logits out at the input size. SegFormer predicts at 1/4 of the input, DPT at twice it, UperNet at it; the
logits are resized bilinearly. Mask2Former predicts class and mask queries; its semantic map is
``softmax(class)[..., :-1] x sigmoid(masks)`` summed over the queries (its own semantic inference), and the
detector returns the log of that map, so that the softmax every caller takes is the map normalised over
classes, and the project's pixel loss (cross-entropy, plus Dice) trains it. That loss is this project's
choice: Mask2Former's own training loss matches queries to segments (Hungarian matching), which is not
used here.

A pretrained model expects its image processor's normalisation (ImageNet mean and std for SegFormer,
UperNet and Mask2Former, 0.5 and 0.5 for DPT): :class:`HFSegmenter` holds the processor's mean and std as
buffers (0 and 1, no change, for a random model; channels beyond the first three are left as they are),
so they are saved with the weights. A checkpoint's ``config.json`` keeps the whole transformers config
(``transformers``), and :func:`from_checkpoint` rebuilds the module from it with no hub access.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffseg.errors import UserError
from diffseg.params import HF_MODEL_TYPES
from diffseg.runtime import load_hint

UNIVERSAL = ("mask2former",)  # model types whose output is class and mask queries, not per-pixel logits
_EPS = 1e-6  # floor of Mask2Former's semantic map before its log: a class no query covers stays finite


class HFSegmenter(nn.Module):
    """A transformers segmentation model with the input normalisation and output of every detector here."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.universal = net.config.model_type in UNIVERSAL
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(pixel_values=(x - self.mean) / self.std)
        if not self.universal:
            return _resize(out.logits, x)
        classes = out.class_queries_logits.softmax(-1)[..., :-1]  # the last class is "no object"
        semantic = torch.einsum("bqc,bqhw->bchw", classes, out.masks_queries_logits.sigmoid())
        return _resize(semantic, x).clamp_min(_EPS).log()


def _resize(maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if maps.shape[-2:] == like.shape[-2:]:
        return maps
    return nn.functional.interpolate(maps, size=like.shape[-2:], mode="bilinear", align_corners=False)


def build(model: str | None, overrides: dict[str, Any], classes: list[str], in_channels: int = 3,
          rgb: bool = True) -> HFSegmenter:
    """A fresh detector: ``model`` from ``from_pretrained`` with ``overrides`` on its config, or, for ``model``
    None, random weights from ``overrides`` (which then name the ``model_type``). ``rgb``: the first three
    input channels are the image, which a pretrained model normalises as its processor says (a front-end
    without the RGB image passes residuals only, left as they are)."""
    labels = {"id2label": dict(enumerate(classes)),
              "label2id": {name: i for i, name in enumerate(classes)}}
    if model is None:
        config = _with_channels(_config(overrides, labels), in_channels)
        return HFSegmenter(_model_class(config).from_config(config), *_identity(in_channels))
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(model, **overrides, **labels)
    except OSError as err:
        raise UserError(load_hint("arch transformers", model, err)) from None
    if config.model_type not in HF_MODEL_TYPES:
        raise UserError(f"{model} is a {config.model_type!r} model; the transformers route builds "
                        f"{', '.join(HF_MODEL_TYPES)}")
    # The head is sized for the checkpoint's own labels (ADE20k's 150 classes, ...): it starts anew.
    stats = _processor_stats(model, in_channels) if rgb else _identity(in_channels)
    config = _with_channels(config, in_channels)
    net = _model_class(config).from_pretrained(model, config=config, ignore_mismatched_sizes=True)
    return HFSegmenter(net, *stats)


def from_checkpoint(config: dict[str, Any]) -> HFSegmenter:
    """The module of a saved detector from its ``config.json`` entry ``transformers``; weights not loaded."""
    import transformers

    hf_config = transformers.CONFIG_MAPPING[config["model_type"]].from_dict(config)
    channels = _channels(hf_config)
    return HFSegmenter(_model_class(hf_config).from_config(hf_config), *_identity(channels))


def checkpoint_config(model: HFSegmenter) -> dict[str, Any]:
    """What :func:`from_checkpoint` needs: the full transformers config as a plain dict."""
    return model.net.config.to_dict()


def _model_class(config):
    """Mask2Former has no semantic-segmentation class: its universal one gives class and mask queries."""
    import transformers

    if config.model_type == "mask2former":
        return transformers.AutoModelForUniversalSegmentation
    return transformers.AutoModelForSemanticSegmentation


def _config(overrides: dict[str, Any], labels: dict[str, Any]):
    import transformers

    fields = dict(overrides)
    model_type = fields.pop("model_type")
    try:
        return transformers.AutoConfig.for_model(model_type, **fields, **labels)
    except (TypeError, ValueError) as err:
        raise UserError(f"transformers config {overrides}: {err}") from None


def _with_channels(config, in_channels: int):
    """``config`` taking ``in_channels`` input channels, on its backbone too (UperNet, Mask2Former)."""
    config.num_channels = in_channels
    if getattr(config, "backbone_config", None) is not None:
        config.backbone_config.num_channels = in_channels
    return config


def _channels(config) -> int:
    backbone = getattr(config, "backbone_config", None)
    return (backbone if backbone is not None else config).num_channels


def _identity(in_channels: int) -> tuple[list[float], list[float]]:
    return [0.0] * in_channels, [1.0] * in_channels


def _processor_stats(model: str, in_channels: int) -> tuple[list[float], list[float]]:
    """The image processor's mean and std for [0, 1] input, padded with (0, 1) for extra channels."""
    import transformers

    try:
        processor = transformers.AutoImageProcessor.from_pretrained(model)
    except OSError as err:
        raise UserError(f"{model}: no image processor config (preprocessor_config.json), so the input "
                        f"normalisation its weights expect is unknown: {str(err).splitlines()[0]}") from None
    mean, std = list(processor.image_mean), list(processor.image_std)
    if max(mean) > 1:  # given for 0..255 pixels (some MaskFormer-family processors)
        mean, std = [m / 255 for m in mean], [s / 255 for s in std]
    pad = in_channels - len(mean)
    return mean + [0.0] * pad, std + [1.0] * pad
