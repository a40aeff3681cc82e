"""``train@<detector>``: train one segmentation detector on the dataset's train split.

Seeded and deterministic on CPU (same params, same weights); on a GPU the device and bf16 mixed
precision are chosen automatically. The detector's task is ``detect.detectors.<d>.task``, or
``detect.task`` when that is null.

After every epoch the model is scored on the val split: the pooled edited-class IoU of the binary view
(TP / (TP + FP + FN) over all val pixels, edited where P(edited) = 1 - p(authentic) >= 0.5) and the
task mIoU. The checkpoint holds the weights of the epoch with the best val IoU (ties: the earlier
epoch), not the last one; ``config.json`` records ``kept_epoch`` and its ``val_iou_edited``. DVCLive
logs train/loss, train/lr, val/miou and val/iou_edited per epoch under ``metrics/train/<detector>``
(shown by ``dvc plots``); the checkpoint is ``model.safetensors`` plus ``config.json`` in
``models/detectors/<detector>``. Pixels labelled ``detect.ignore_index`` count in neither the loss
nor the validation scores.

The generators of ``crossgen.unseen`` are never used for training: every image they touched is left
out of the train and val splits here (and in every ``crossgen`` stage), so the cross-generator test can
score them as unseen.

The learning rate follows ``detect.schedule`` per optimizer step (finer than per epoch, so short
runs of a few epochs still get a smooth curve): a linear warmup over the first
``detect.warmup_epochs`` epochs (from lr / warmup_steps up to lr), then ``cosine``: half a cosine
from lr down to 0 at the end of the last epoch, or ``constant``: lr.

``detect.nproc: N > 1`` trains data-parallel (DDP) in N processes on this machine: one GPU each
(NCCL), or CPU processes (gloo). ``detect.batch_size`` stays the *global* batch, split evenly over
the processes, so the learning-rate schedule does not depend on N; only rank 0 writes the checkpoint
and the logs. See ``diffseg.detect.distributed`` for the launch.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from diffseg import records
from diffseg.detect import distributed, zoo
from diffseg.detect.checkpoint import EpochJournal, fingerprint
from diffseg.detect.data import IGNORE, NO_IGNORE, SegmentationSet, ignored_label, seen_only, task_classes
from diffseg.detect.distributed import World
from diffseg.detect.infer import probabilities
from diffseg.detect.metrics import Accumulator, attribution_pred, binary_view, confusion, edited_counts
from diffseg.params import Detect, Params
from diffseg.runtime import autocast, pick_device
from diffseg.seeding import keyed_seed


def make_loss(cfg: Detect, device: str):
    """Cross-entropy (with optional class weights), plus Dice for ``loss: ce_dice``; both skip ignored pixels."""
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=device) if cfg.class_weights else None
    ignore = ignored_label(cfg.ignore_index)
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=NO_IGNORE if ignore is None else ignore)
    if cfg.loss == "ce":
        return ce
    from segmentation_models_pytorch.losses import DiceLoss

    dice = DiceLoss(mode="multiclass", ignore_index=ignore)
    return lambda logits, target: ce(logits, target) + dice(logits, target)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The multiplier of ``detect.lr`` at optimizer step ``step`` (counted from 0) of ``total_steps``.

    Warmup rises linearly, reaching 1 at the last warmup step; ``cosine`` then falls as half a cosine,
    1 at the first step after the warmup and 0 one step past the last (so no step is wasted at lr 0).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Detect, steps_per_epoch: int) -> LambdaLR:
    """Per-step schedule of ``cfg`` for ``cfg.epochs`` epochs of ``steps_per_epoch`` optimizer steps."""
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    return LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, cfg.schedule))


def best_epoch(val_ious: list[float | None]) -> int | None:
    """Index of the highest val IoU, the earliest among equals; None when no epoch has one."""
    best = None
    for epoch, value in enumerate(val_ious):
        if value is not None and (best is None or value > val_ious[best]):
            best = epoch
    return best


def kept_epoch(history: list[dict]) -> int:
    """The epoch whose weights are kept: the best on val, or the last when val never scored one."""
    best = best_epoch([record.get("val_iou_edited") for record in history])
    return len(history) - 1 if best is None else best


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


def val_counts(model: torch.nn.Module, val_set: Dataset, n_classes: int, device: str, batch_size: int,
               ignore: int | None) -> np.ndarray:
    """The task confusion matrix (flattened, n_classes^2) followed by the edited class's TP, FP, FN.

    Pixels of the working size, ``ignore`` pixels left out. The task prediction is
    :func:`~diffseg.detect.metrics.attribution_pred` (for two classes: the binary view), so the task
    and the edited-class numbers read the same P(edited) map.
    """
    model.eval()
    matrix = np.zeros((n_classes, n_classes), np.int64)
    edited = np.zeros(3, np.int64)
    for x, y, _ in DataLoader(val_set, batch_size=batch_size, shuffle=False):
        for truth, probs in zip(y.numpy(), probabilities(model, x, device)):
            valid = truth != ignore if ignore is not None else np.ones(truth.shape, bool)
            truth = truth[valid]
            _, pred_edited = binary_view(probs)
            edited += edited_counts(truth > 0, pred_edited[valid])
            matrix += confusion(truth, attribution_pred(probs)[valid], n_classes)
    return np.concatenate([matrix.ravel(), edited])


def val_scores(counts: np.ndarray, classes: list[str]) -> dict:
    """``val_miou`` (task) and ``val_iou_edited`` from :func:`val_counts`' vector.

    The edited IoU is None when val holds no edited pixel: it would be 0 or undefined whatever the
    model, so it cannot choose an epoch.
    """
    n = len(classes)
    total = Accumulator(classes)
    total.matrix = counts[:n * n].reshape(n, n)
    tp, fp, fn = (int(v) for v in counts[n * n:])
    return {"val_miou": total.summary()["miou"] or 0.0,
            "val_iou_edited": tp / (tp + fp + fn) if tp + fn else None}


def validate(model: torch.nn.Module, val_set: Dataset, classes: list[str], device: str, batch_size: int,
             world: World | None, ignore: int | None = IGNORE) -> dict:
    """Val scores (:func:`val_scores`); several processes score a shard each and add up their counts."""
    if world is None:
        return val_scores(val_counts(model, val_set, len(classes), device, batch_size, ignore), classes)
    distributed.share_buffers(model)
    shard = Subset(val_set, range(world.rank, len(val_set), world.size))
    counts = val_counts(model, shard, len(classes), device, batch_size, ignore)
    return val_scores(distributed.sum_all(torch.from_numpy(counts)).numpy(), classes)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model``'s weights and buffers, safe from later optimizer steps."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# DVCLive metric name of each per-epoch record key.
LOGGED = {"loss": "train/loss", "lr": "train/lr", "val_miou": "val/miou", "val_iou_edited": "val/iou_edited"}


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, cfg: Detect, classes: list[str],
        seed: int, device: str, live=None, world: World | None = None,
        journal: EpochJournal | None = None) -> list[dict]:
    """Train ``model`` in place and leave it holding the kept epoch's weights (:func:`kept_epoch`).

    Returns one record per epoch: loss, lr (of the epoch's last step) and, with a non-empty
    ``val_set``, val_miou and val_iou_edited. Without val the last epoch is kept. ``world`` is None
    for one plain process, else this process's place among the DDP processes (every process sees the
    same summed val counts, so all keep the same epoch). With a ``journal`` the state after every epoch
    is saved there, and a saved state is resumed from (the epochs it holds are logged to ``live`` again).
    """
    torch.manual_seed(seed % (1 << 32))
    # warn_only: a few CUDA kernels have no deterministic variant; CPU runs are exact.
    torch.use_deterministic_algorithms(True, warn_only=True)
    loader, sampler = make_loader(train_set, cfg, seed, world)
    criterion = make_loss(cfg, device)
    ignore = ignored_label(cfg.ignore_index)
    model.to(device)
    net = wrap(model, device, world)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, max(1, len(loader)))
    validating = val_set is not None and len(val_set) > 0
    history, kept_state = [], None
    main = world is None or world.main
    saved = journal.load() if journal is not None else None
    if saved is not None:
        history, kept_state = _restore(saved, model, optimizer, scheduler, loader.generator, device)
        for record in history:
            _log(live, record)
        if main:
            print(f"resuming after epoch {len(history) - 1} of an interrupted run")
    for epoch in tqdm(range(len(history), cfg.epochs), desc="epochs", unit="epoch", initial=len(history),
                      total=cfg.epochs, disable=not main):
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):  # its per-epoch flips (detect.flip)
            train_set.set_epoch(epoch)
        losses, lr = [], optimizer.param_groups[0]["lr"]
        for x, y, _ in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = criterion(net(x.to(device)).float(), y.to(device))
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            losses.append(float(loss.detach()))
        if world is None:
            record = {"epoch": epoch, "loss": float(np.mean(losses))}
        else:
            total, steps = distributed.sum_all(torch.tensor([sum(losses), len(losses)], dtype=torch.float64))
            record = {"epoch": epoch, "loss": float(total / steps)}
        record["lr"] = lr
        if validating:
            record.update(validate(model, val_set, classes, device, cfg.batch_size, world, ignore))
        history.append(record)
        if validating and kept_epoch(history) == epoch:  # best so far: its weights may be the ones kept
            kept_state = snapshot(model)
        if journal is not None:
            journal.save(_state(history, kept_state, model, optimizer, scheduler, loader.generator, device))
        _log(live, record)
    if kept_state is not None:
        model.load_state_dict(kept_state)
    return history


def _log(live, record: dict) -> None:
    if live is not None:
        for key, value in record.items():
            if key in LOGGED and value is not None:
                live.log_metric(LOGGED[key], value)
        live.next_step()


def _state(history: list[dict], kept_state: dict | None, model: torch.nn.Module, optimizer, scheduler,
           generator: torch.Generator, device: str) -> dict:
    """What the next epoch depends on, for :class:`EpochJournal` (tensors, numbers and lists only)."""
    return {"history": history, "kept": kept_state, "model": snapshot(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "loader_rng": generator.get_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device == "cuda" else None}


def _restore(state: dict, model: torch.nn.Module, optimizer, scheduler, generator: torch.Generator,
             device: str) -> tuple[list[dict], dict | None]:
    """Put a :func:`_state` back; return its history and kept weights."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    generator.set_state(state["loader_rng"])
    if device == "cuda" and state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["history"], state["kept"]


def detector_task(cfg: Detect, name: str) -> str:
    """The task detector ``name`` trains on: its own ``task``, else ``detect.task``."""
    return cfg.detectors[name].task or cfg.task


def run(params: Params, name: str, out_dir: Path, log_dir: Path) -> dict:
    from dvclive import Live

    cfg, spec = params.detect.training(name), params.detect.detectors[name]
    task, ignore = detector_task(cfg, name), ignored_label(cfg.ignore_index)
    dataset_classes = records.read_json(Path(cfg.dataset) / "classes.json")
    classes = task_classes(dataset_classes, task)
    unseen = params.crossgen.unseen  # generators never trained or validated on
    keep = seen_only(unseen)
    seed = keyed_seed(params.seed, "train", name)
    train_set = SegmentationSet(Path(cfg.dataset), ["train"], task, cfg.image_size, keep=keep, ignore=ignore,
                                flip_seed=seed if cfg.flip else None)
    val_set = SegmentationSet(Path(cfg.dataset), ["val"], task, cfg.image_size, keep=keep, ignore=ignore)
    torch.manual_seed(seed % (1 << 32))
    model = zoo.build(spec.arch, spec.encoder, len(classes), spec.encoder_weights, spec.frontend)
    device = pick_device(params.detect.device)
    world = distributed.setup(device) if distributed.launched() else None
    main = world is None or world.main
    if main:
        print(f"train@{name}: {spec.arch}/{spec.encoder} on {device}"
              f"{f' x {world.size} processes' if world else ''}, {len(train_set)} train / {len(val_set)} val "
              f"images, task {task} ({len(classes)} classes), lr {cfg.lr} {cfg.schedule} "
              f"(warmup {cfg.warmup_epochs} epoch(s))" + (f", without the images of {unseen}" if unseen else ""))
        out_dir = records.fresh_dir(out_dir)
    journal = EpochJournal(name, fingerprint(Path(cfg.dataset), cfg, {
        "name": name, "seed": seed, "task": task, "unseen": unseen, "device": device,
        "processes": world.size if world else 1}), writer=main)
    logger = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=None, report=None) if main else contextlib.nullcontext()
    with logger as live:
        history = fit(model, train_set, val_set, cfg, classes, seed, device, live, world, journal)
    kept = kept_epoch(history)
    val_iou = history[kept].get("val_iou_edited")
    if main:
        zoo.save(model, out_dir, {"arch": spec.arch, "encoder": spec.encoder, "task": task, "classes": classes,
                                  "image_size": cfg.image_size, "name": name, "epochs": cfg.epochs,
                                  "train_images": len(train_set), "val_images": len(val_set),
                                  "normalize": zoo.normalization_of(model), "kept_epoch": kept,
                                  "val_iou_edited": None if val_iou is None else round(val_iou, 6),
                                  "val_miou": history[kept].get("val_miou")})
        print(f"train@{name}: kept epoch {kept} of {len(history)} (val IoU edited "
              f"{None if val_iou is None else round(val_iou, 4)}, val mIoU "
              f"{history[kept].get('val_miou')}); final loss {history[-1]['loss']:.4f}")
        journal.remove()
    if world is not None:
        distributed.teardown()
    return {"history": history, "kept_epoch": kept}
