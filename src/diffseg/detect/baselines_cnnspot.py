"""CNNSpot (Wang et al., CVPR 2020, arXiv:1912.11035): ResNet-50, one logit, blur + JPEG augmentation.

As in the paper: torchvision's ResNet-50 (ImageNet weights at paper scale, ``baselines.cnnspot.weights``)
with its last layer replaced by a single "edited" logit, binary cross-entropy, Adam at 1e-4, and each
training image blurred (sigma uniform in ``blur_sigma``) and JPEG-compressed (quality uniform in
``jpeg_quality``), each with probability ``blur_jpeg_prob``, then randomly flipped.

One deliberate difference: CNNSpot random-crops 224 px from full-size images; here every image is
resized to ``image_size`` like the segmentation detectors' input, because an edit in DiffSeg30k is local
and a crop can miss it, which would make the image-level label wrong for that crop.

Augmentation draws come from a generator keyed by (seed, epoch, image id), so training is deterministic
on CPU regardless of batch order. Checkpoint: ``model.safetensors`` + ``config.json`` (see :func:`load`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from diffseg import records
from diffseg.detect import distortions, zoo
from diffseg.detect.imageset import ImageSet
from diffseg.detect.data import prepare
from diffseg.params import CNNSpot, Params
from diffseg.runtime import autocast, pick_device
from diffseg.seeding import keyed_rng, keyed_seed

# torchvision's ImageNet normalisation, which the ResNet-50 weights were trained with.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def build(weights: str | None) -> nn.Module:
    """ResNet-50 with one output logit; ``weights`` names torchvision ResNet-50 weights or is None."""
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=ResNet50_Weights[weights] if weights else None)
    model.fc = nn.Linear(model.fc.in_features, 1)
    return model


def augment(image: np.ndarray, rng: np.random.Generator, cfg: CNNSpot) -> np.ndarray:
    """CNNSpot's training-time augmentation of one uint8 RGB image."""
    if rng.random() < cfg.blur_jpeg_prob:
        image = distortions.blur(image, float(rng.uniform(*cfg.blur_sigma)))
    if rng.random() < cfg.blur_jpeg_prob:
        image = distortions.jpeg(image, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    if cfg.flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


class Inputs(Dataset):
    """Network inputs of an :class:`ImageSet`: augmented when ``cfg`` is given (training), else clean."""

    def __init__(self, images: ImageSet, size: int, cfg: CNNSpot | None = None, seed: int = 0):
        self.images, self.size, self.cfg, self.seed = images, size, cfg, seed
        self.epoch = 0  # set by the training loop: augmentation differs per epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, edited, image_id = self.images[index]
        if self.cfg is not None:
            image = augment(image, keyed_rng(self.seed, "cnnspot-augment", self.epoch, image_id), self.cfg)
        x, _ = prepare(image, None, self.size)
        return (x - MEAN) / STD, torch.tensor(float(edited))


@torch.inference_mode()
def scores(model: nn.Module, inputs: Dataset, device: str, batch_size: int) -> np.ndarray:
    """P(edited) per image."""
    model.eval()
    out = []
    for x, _ in DataLoader(inputs, batch_size=batch_size, shuffle=False):
        with autocast(device):
            logits = model(x.to(device))
        out.append(torch.sigmoid(logits.float()).squeeze(1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def fit_and_score(params: Params, train: ImageSet, test: ImageSet, model_dir: Path) -> tuple[np.ndarray, dict]:
    cfg, device = params.baselines.cnnspot, pick_device(params.detect.device)
    seed = keyed_seed(params.seed, "baseline", "cnnspot")
    torch.manual_seed(seed % (1 << 32))
    # warn_only: a few CUDA kernels have no deterministic variant; CPU runs are exact.
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build(cfg.weights).to(device)
    inputs = Inputs(train, cfg.image_size, cfg, seed)
    # drop_last keeps BatchNorm away from a final batch of one image.
    loader = DataLoader(inputs, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train) > cfg.batch_size,
                        generator=torch.Generator().manual_seed(seed % (1 << 32)))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    criterion = nn.BCEWithLogitsLoss()
    print(f"baseline@cnnspot: ResNet-50 ({cfg.weights or 'random init'}) on {device}, {len(train)} train images "
          f"at {cfg.image_size} px, {cfg.epochs} epoch(s)")
    losses = []
    for epoch in tqdm(range(cfg.epochs), desc="epochs", unit="epoch"):
        inputs.epoch = epoch
        model.train()
        batch_losses = []
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = criterion(model(x.to(device)).float().squeeze(1), y.to(device))
            loss.backward()
            optimizer.step()
            batch_losses.append(float(loss.detach()))
        losses.append(round(float(np.mean(batch_losses)), 6))
    zoo.save(model, model_dir, {"baseline": "cnnspot", "arch": "resnet50", "weights": cfg.weights,
                                "image_size": cfg.image_size, "epochs": cfg.epochs, "train_images": len(train),
                                "classes": ["authentic", "edited"]})
    test_scores = scores(model, Inputs(test, cfg.image_size), device, cfg.batch_size)
    return test_scores, {"method": "CNNSpot (ResNet-50, blur+JPEG augmentation)", "train_loss": losses}


def load(folder: Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The CNNSpot classifier saved in ``folder`` and its config, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = records.read_json(folder / "config.json")
    model = build(None)  # the weights come from the checkpoint
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), config
