"""The detector zoo: FCN-8s (VGG-16, as in the paper) and every segmentation-models-pytorch model.

A detector is named in params by ``arch`` and ``encoder``: ``fcn8s`` builds :class:`FCN8s`; any other
``arch`` is passed to ``smp.create_model`` (DeepLabV3Plus, Segformer, Unet, UPerNet, ... with any smp
encoder), so a newer detector is a one-line params change. Checkpoints are ``model.safetensors`` plus
``config.json`` (what was built and for which classes), loaded back by :func:`load`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffseg import records


class FCN8s(nn.Module):
    """FCN-8s (Long, Shelhamer and Darrell, CVPR 2015, arXiv:1411.4038) on torchvision's VGG-16.

    Scores from pool3, pool4 and the fully convolutional head are fused at strides 8, 16 and 32.
    Bilinear upsampling replaces the original learned deconvolutions (a common, equivalent-in-practice
    simplification that keeps arbitrary input sizes exact).
    """

    def __init__(self, n_classes: int, pretrained: bool = False):
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16

        features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1 if pretrained else None).features
        self.to_pool3, self.to_pool4, self.to_pool5 = features[:17], features[17:24], features[24:]
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


def build(arch: str, encoder: str, n_classes: int, encoder_weights: str | None = None) -> nn.Module:
    """A fresh detector; ``encoder_weights`` is e.g. 'imagenet' at paper scale, None offline."""
    if arch == "fcn8s":
        if encoder != "vgg16":
            raise ValueError(f"fcn8s is defined on VGG-16 (encoder 'vgg16'), got {encoder!r}")
        return FCN8s(n_classes, pretrained=encoder_weights is not None)
    import segmentation_models_pytorch as smp

    return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, classes=n_classes)


def save(model: nn.Module, folder: Path, config: dict) -> None:
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
    # Weights come from the checkpoint, so no pretrained download is needed to rebuild the module.
    model = build(config["arch"], config["encoder"], len(config["classes"]), encoder_weights=None)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), config
