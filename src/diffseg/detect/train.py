"""``train@<detector>``: train one segmentation detector on the dataset's train split.

Seeded and deterministic on CPU (same params, same weights); on a GPU the device and bf16 mixed
precision are chosen automatically. DVCLive logs per-epoch loss and validation mIoU under
``metrics/train/<detector>`` (shown by ``dvc plots``); the checkpoint is ``model.safetensors`` plus
``config.json`` in ``models/detectors/<detector>``.

Multi-GPU (DDP) training is not wired in yet; a single process uses one device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from diffseg import records
from diffseg.detect import zoo
from diffseg.detect.data import SegmentationSet, task_classes
from diffseg.detect.infer import autocast, pick_device, score_dataset
from diffseg.params import Detect, Params
from diffseg.seeding import keyed_seed


def make_loss(cfg: Detect, device: str):
    """Cross-entropy (with optional class weights), plus Dice for ``loss: ce_dice``."""
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=device) if cfg.class_weights else None
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=cfg.ignore_index)
    if cfg.loss == "ce":
        return ce
    from segmentation_models_pytorch.losses import DiceLoss

    ignore = cfg.ignore_index if cfg.ignore_index >= 0 else None
    dice = DiceLoss(mode="multiclass", ignore_index=ignore)
    return lambda logits, target: ce(logits, target) + dice(logits, target)


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, cfg: Detect, classes: list[str],
        seed: int, device: str, live=None) -> list[dict]:
    """Train ``model`` in place; return one record per epoch (loss, validation mIoU)."""
    torch.manual_seed(seed % (1 << 32))
    # warn_only: a few CUDA kernels have no deterministic variant; CPU runs are exact.
    torch.use_deterministic_algorithms(True, warn_only=True)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(seed % (1 << 32)))
    criterion = make_loss(cfg, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.to(device)
    history = []
    for epoch in tqdm(range(cfg.epochs), desc="epochs", unit="epoch"):
        model.train()
        losses = []
        for x, y, _ in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = criterion(model(x.to(device)).float(), y.to(device))
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val_set is not None and len(val_set):
            record["val_miou"] = score_dataset(model, val_set, classes, device, cfg.batch_size)["task"]["miou"] or 0.0
        history.append(record)
        if live is not None:
            for key, value in record.items():
                if key != "epoch":
                    live.log_metric(f"train/{key}" if key == "loss" else f"val/{key[4:]}", value)
            live.next_step()
    return history


def run(params: Params, name: str, out_dir: Path, log_dir: Path) -> dict:
    from dvclive import Live

    cfg, spec = params.detect, params.detect.detectors[name]
    dataset_classes = records.read_json(Path(cfg.dataset) / "classes.json")
    classes = task_classes(dataset_classes, cfg.task)
    train_set = SegmentationSet(Path(cfg.dataset), ["train"], cfg.task, cfg.image_size)
    val_set = SegmentationSet(Path(cfg.dataset), ["val"], cfg.task, cfg.image_size)
    seed = keyed_seed(params.seed, "train", name)
    torch.manual_seed(seed % (1 << 32))
    model = zoo.build(spec.arch, spec.encoder, len(classes), spec.encoder_weights)
    device = pick_device()
    print(f"train@{name}: {spec.arch}/{spec.encoder} on {device}, {len(train_set)} train / {len(val_set)} val "
          f"images, task {cfg.task} ({len(classes)} classes)")
    out_dir = records.fresh_dir(out_dir)
    with Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        history = fit(model, train_set, val_set, cfg, classes, seed, device, live)
    zoo.save(model, out_dir, {"arch": spec.arch, "encoder": spec.encoder, "task": cfg.task, "classes": classes,
                              "image_size": cfg.image_size, "name": name, "epochs": cfg.epochs,
                              "train_images": len(train_set)})
    print(f"train@{name}: final loss {history[-1]['loss']:.4f}, val mIoU {history[-1].get('val_miou')}")
    return {"history": history}
