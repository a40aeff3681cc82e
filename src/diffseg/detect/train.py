"""``train@<detector>``: train one segmentation detector on the dataset's train split.

Seeded and deterministic on CPU (same params, same weights); on a GPU the device and bf16 mixed
precision are chosen automatically. DVCLive logs per-epoch loss and validation mIoU under
``metrics/train/<detector>`` (shown by ``dvc plots``); the checkpoint is ``model.safetensors`` plus
``config.json`` in ``models/detectors/<detector>``.

``detect.nproc: N > 1`` trains data-parallel (DDP) in N processes on this machine: one GPU each
(NCCL), or CPU processes (gloo). ``detect.batch_size`` stays the *global* batch, split evenly over
the processes, so the learning-rate schedule does not depend on N; only rank 0 writes the checkpoint
and the logs. See ``diffseg.detect.distributed`` for the launch.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from diffseg import records
from diffseg.detect import distributed, zoo
from diffseg.detect.data import SegmentationSet, task_classes
from diffseg.detect.distributed import World
from diffseg.detect.infer import score_dataset
from diffseg.detect.metrics import Accumulator
from diffseg.params import Detect, Params
from diffseg.runtime import autocast, pick_device
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


def make_loader(train_set: Dataset, cfg: Detect, seed: int, world: World | None):
    """The shuffling training loader, and its DistributedSampler when several processes share the work."""
    generator = torch.Generator().manual_seed(seed % (1 << 32))
    if world is None:
        return DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
                          num_workers=cfg.num_workers, generator=generator), None
    # DistributedSampler deals one keyed permutation per epoch round-robin, so global batch k holds the
    # same images for every number of processes (and a one-process world sees the whole permutation).
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=seed % (1 << 32), drop_last=True)
    per_rank = cfg.batch_size // world.size
    return DataLoader(train_set, batch_size=per_rank, sampler=sampler, drop_last=len(sampler) > per_rank,
                      num_workers=cfg.num_workers, generator=generator), sampler


def wrap(model: torch.nn.Module, device: str, world: World | None) -> torch.nn.Module:
    """The module the optimiser steps: ``model`` itself, or a DDP wrapper that averages gradients."""
    if world is None:
        return model
    if device == "cuda":
        # Batch statistics over the global batch, as in one process. CPU has no SyncBatchNorm, so CPU
        # processes normalise by their own share of the batch. The root is not a norm layer, so the
        # conversion swaps children in place and ``model`` stays the module that gets saved.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
    return DistributedDataParallel(model)


def validate(model: torch.nn.Module, val_set: Dataset, classes: list[str], device: str, batch_size: int,
             world: World | None) -> float:
    """Validation mIoU; several processes score a shard each and add up their confusion matrices."""
    if world is None:
        return score_dataset(model, val_set, classes, device, batch_size)["task"]["miou"] or 0.0
    distributed.share_buffers(model)
    shard = Subset(val_set, range(world.rank, len(val_set), world.size))
    total = Accumulator(classes)
    total.matrix = distributed.sum_all(torch.from_numpy(score_dataset(model, shard, classes, device,
                                                                      batch_size)["_matrix"])).numpy()
    return total.summary()["miou"] or 0.0


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, cfg: Detect, classes: list[str],
        seed: int, device: str, live=None, world: World | None = None) -> list[dict]:
    """Train ``model`` in place; return one record per epoch (loss, validation mIoU).

    ``world`` is None for one plain process, else this process's place among the DDP processes.
    """
    torch.manual_seed(seed % (1 << 32))
    # warn_only: a few CUDA kernels have no deterministic variant; CPU runs are exact.
    torch.use_deterministic_algorithms(True, warn_only=True)
    loader, sampler = make_loader(train_set, cfg, seed, world)
    criterion = make_loss(cfg, device)
    model.to(device)
    net = wrap(model, device, world)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    main = world is None or world.main
    for epoch in tqdm(range(cfg.epochs), desc="epochs", unit="epoch", disable=not main):
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        losses = []
        for x, y, _ in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = criterion(net(x.to(device)).float(), y.to(device))
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if world is None:
            record = {"epoch": epoch, "loss": float(np.mean(losses))}
        else:
            total, steps = distributed.sum_all(torch.tensor([sum(losses), len(losses)], dtype=torch.float64))
            record = {"epoch": epoch, "loss": float(total / steps)}
        if val_set is not None and len(val_set):
            record["val_miou"] = validate(model, val_set, classes, device, cfg.batch_size, world)
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
    device = pick_device(params.detect.device)
    world = distributed.setup(device) if distributed.launched() else None
    main = world is None or world.main
    if main:
        print(f"train@{name}: {spec.arch}/{spec.encoder} on {device}"
              f"{f' x {world.size} processes' if world else ''}, {len(train_set)} train / {len(val_set)} val "
              f"images, task {cfg.task} ({len(classes)} classes)")
        out_dir = records.fresh_dir(out_dir)
    logger = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None, report=None) if main else contextlib.nullcontext()
    with logger as live:
        history = fit(model, train_set, val_set, cfg, classes, seed, device, live, world)
    if main:
        zoo.save(model, out_dir, {"arch": spec.arch, "encoder": spec.encoder, "task": cfg.task, "classes": classes,
                                  "image_size": cfg.image_size, "name": name, "epochs": cfg.epochs,
                                  "train_images": len(train_set)})
        print(f"train@{name}: final loss {history[-1]['loss']:.4f}, val mIoU {history[-1].get('val_miou')}")
    if world is not None:
        distributed.teardown()
    return {"history": history}
