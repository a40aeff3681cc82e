"""Forensic front-ends: noise residuals made from the image, fed to a detector's encoder with or instead of it.

Manipulation detectors such as RGB-N (Zhou, Han, Morariu and Davis, CVPR 2018, arXiv:1805.04953) and MVSS-Net
(Chen, Dong, Wang and others, ICCV 2021, arXiv:2104.06832) look at what a high-pass filter leaves of the image
(the noise residual) beside the RGB pixels: an edit that looks right may still carry another camera's, codec's or
decoder's noise. A front-end is named in params (``detect.detectors.<name>.frontend``) by its parts joined with
'+' in the order rgb, srm, bayar (:data:`NAMES`); their channels are concatenated in that order and are the
encoder's input, whose width :func:`channels` gives (``in_channels`` of the network).

- ``rgb``: the image itself (3 channels), ImageNet-normalised by ``zoo.Normalized`` when the encoder is pretrained.
- ``srm``: :class:`SRM`, three fixed SRM high-pass residuals (3 channels).
- ``bayar``: :class:`BayarConv`, three learned, constrained prediction-error filters (3 channels).

Residuals are taken of the image in grey levels (0..255), the unit SRM residuals and their truncation are
defined in (Fridrich and Kodovsky), whatever scaling the RGB channels get: the input contract is [0, 1]
(``diffseg.detect.data.prepare``), so the front-end multiplies by 255 itself and never sees the ImageNet
normalisation, whose per-channel std would weigh R, G and B unequally in the residuals.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

PARTS = {"rgb": 3, "srm": 3, "bayar": 3}  # part -> channels it adds
# Every non-empty selection in PARTS order except 'rgb' alone, which is the plain detector (frontend null).
NAMES = tuple("+".join(parts) for n in range(1, len(PARTS) + 1)
              for parts in itertools.combinations(PARTS, n) if parts != ("rgb",))

# RGB-N's three SRM kernels, in its order (pengzhou1108/RGB-N, lib/nets/resnet_fusion.py): the 5x5 "KV"
# (SQUARE 5x5) residual / 12, the 3x3 "KB" (SQUARE 3x3) residual / 4 and the second-order horizontal residual / 2,
# each divided by its central coefficient and zero-padded to 5x5 (Fridrich and Kodovsky, "Rich models for
# steganalysis of digital images", IEEE TIFS 7(3), 2012).
SRM_FILTERS = (
    ([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], 12),
    ([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]], 4),
    ([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], 2),
)
# SRM truncates residuals at T (T = 2 in Fridrich and Kodovsky): beyond a few grey levels a residual is content
# (edges, texture), not noise. 3 grey levels is this project's choice. The truncated residual is then divided by
# T, into [-1, 1], the scale of the RGB channels: left in grey levels it swamped the [0, 1] image at the first
# convolution, and DeepLabV3+ with rgb+srm on the offline profile fell from IoU 0.547 to 0.363.
SRM_TRUNCATION = 3.0
# ITU-R BT.601 luma, the grey image MVSS-Net's public code feeds its BayarConv (dong03/MVSS-Net, rgb2gray).
LUMA = (0.299, 0.587, 0.114)


def parts_of(name: str | None) -> tuple[str, ...]:
    """The parts of front-end ``name`` (None: the plain RGB detector)."""
    if name is None:
        return ("rgb",)
    if name not in NAMES:
        raise ValueError(f"unknown forensic front-end {name!r}; known: null, {', '.join(NAMES)}")
    return tuple(name.split("+"))


def channels(name: str | None) -> int:
    """The number of channels front-end ``name`` gives the encoder (3 for None)."""
    return sum(PARTS[part] for part in parts_of(name))


def srm_kernel() -> torch.Tensor:
    """RGB-N's SRM kernel, (3 residuals, 3 colour channels, 5, 5): each filter on R, G and B, summed."""
    filters = torch.tensor([[[v / scale for v in row] for row in f] for f, scale in SRM_FILTERS], dtype=torch.float32)
    return filters[:, None].repeat(1, 3, 1, 1)


class SRM(nn.Module):
    """Three fixed SRM residuals of the grey image (R + G + B) / 3, truncated at +-3 grey levels, in units of 3.

    RGB-N's kernel applies each filter to R, G and B and sums, i.e. filters R + G + B; it is kept as published
    (buffer ``kernel``, not a parameter: never trained) and its output divided by 3, which makes it the residual
    of the unweighted grey image in grey levels, where the truncation threshold means something. One residual
    per filter rather than per filter and colour channel: the colour channels' noise is strongly correlated
    (demosaicing interpolates two of the three at every pixel), so per-channel residuals would mostly add
    channels. Borders are reflected, not zero-padded, so the image edge does not read as a strong residual.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", srm_kernel())

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        """``levels``: (N, 3, H, W) RGB in grey levels (0..255); returns (N, 3, H, W) residuals in [-1, 1]
        (grey levels / :data:`SRM_TRUNCATION`)."""
        residual = F.conv2d(F.pad(levels, (2, 2, 2, 2), mode="reflect"), self.kernel) / 3
        return residual.clamp(-SRM_TRUNCATION, SRM_TRUNCATION) / SRM_TRUNCATION


class BayarConv(nn.Module):
    """Bayar and Stamm's constrained convolution (IH&MMSec 2016; IEEE TIFS 13(11), 2018): a learned prediction error.

    Each 5x5 filter has its centre weight fixed to -1 and the other 24 weights normalised to sum to 1, so it
    subtracts the pixel from a learned prediction of it from its neighbours and cannot learn image content.
    Bayar and Stamm re-project the weights after every optimizer step; here, as in MVSS-Net's public code, the
    projection is part of every forward pass (:meth:`kernel`), so the constraint holds for every kernel the network
    applies, after any step and after loading a checkpoint. Unlike MVSS-Net's code the projected values are not
    written back into the parameter: evaluation passes never alter the weights, so they apply bit-identical kernels.
    Input: the grey (BT.601 luma) image in grey levels, as MVSS-Net feeds it (one input channel, three filters);
    the off-centre weights start uniform in [0, 1), as there. Borders are reflected.
    """

    def __init__(self, out_channels: int = 3, size: int = 5):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.rand(out_channels, 1, size * size - 1))  # the 24 free off-centre weights

    def kernel(self) -> torch.Tensor:
        """The constrained (out, 1, size, size) kernel: centre -1, the other weights summing to 1 per filter."""
        free = self.weight / self.weight.sum(-1, keepdim=True)
        centre = free.new_full((*free.shape[:-1], 1), -1.0)
        half = self.size * self.size // 2
        return torch.cat([free[..., :half], centre, free[..., half:]], -1).view(*free.shape[:-1], self.size, self.size)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        pad = self.size // 2
        return F.conv2d(F.pad(grey, (pad, pad, pad, pad), mode="reflect"), self.kernel())


class FrontEnd(nn.Module):
    """``model(cat[rgb, srm, bayar])`` for the parts of front-end ``name``; the input is RGB in [0, 1].

    ``model`` is the network (wrapped in ``zoo.Normalized`` when pretrained, which normalises the first three
    channels, the RGB ones, and passes the residuals through). State dict: ``model.*``, ``srm.kernel``,
    ``bayar.weight``.
    """

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.name, parts = name, parts_of(name)
        self.model = model
        self.rgb = "rgb" in parts
        self.srm = SRM() if "srm" in parts else None
        self.bayar = BayarConv() if "bayar" in parts else None
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = x * 255
        inputs = [x] if self.rgb else []
        if self.srm is not None:
            inputs.append(self.srm(levels))
        if self.bayar is not None:
            inputs.append(self.bayar((levels * self.luma).sum(1, keepdim=True)))
        return self.model(torch.cat(inputs, 1))


def attach(model: nn.Module, name: str | None) -> nn.Module:
    """``model`` behind front-end ``name``; unchanged for None."""
    return model if name is None else FrontEnd(model, name)


def name_of(model: nn.Module) -> str | None:
    """The front-end ``model`` has (what ``config.json`` records), or None."""
    return model.name if isinstance(model, FrontEnd) else None
