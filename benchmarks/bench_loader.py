"""Training throughput with the real data loader against the same model fed preloaded tensors.

Both arms train the same detector from the same initial weights for the same batches, side by side in
one process; the ratio (loader steps/s divided by preloaded steps/s) says how much reading and resizing
PNGs costs. Run from the repository root after `dvc repro assemble`:

    python benchmarks/bench_loader.py [--detector segformer] [--steps 40] [--repeats 3]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from diffseg import params as params_mod
from diffseg.detect import zoo
from diffseg.detect.data import SegmentationSet, task_classes
from diffseg.detect.train import make_loss
from diffseg import records


def train_steps(model, batches, cfg, steps: int) -> float:
    """Seconds for ``steps`` optimiser steps over ``batches`` (an iterable factory)."""
    criterion = make_loss(cfg, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    done, started = 0, time.perf_counter()
    while done < steps:
        for x, y, _ in batches():
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default="segformer")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    p = params_mod.load("params.yaml")
    cfg, spec = p.detect, p.detect.detectors[args.detector]
    classes = task_classes(records.read_json(Path(cfg.dataset) / "classes.json"), cfg.task)
    dataset = SegmentationSet(Path(cfg.dataset), ["train"], cfg.task, cfg.image_size)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(0))
    preloaded = list(DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    initial = zoo.build_detector(args.detector, spec, classes)
    train_steps(copy.deepcopy(initial), lambda: preloaded, cfg, 4)  # warm-up: allocator, kernels
    rows = []
    for _ in range(args.repeats):
        t_loader = train_steps(copy.deepcopy(initial), lambda: loader, cfg, args.steps)
        t_memory = train_steps(copy.deepcopy(initial), lambda: preloaded, cfg, args.steps)
        rows.append((args.steps / t_loader, args.steps / t_memory))
    print(f"detector {args.detector} ({spec.summary}), {len(dataset)} train images at {cfg.image_size} px, "
          f"batch {cfg.batch_size}, num_workers {cfg.num_workers}, torch threads {torch.get_num_threads()}")
    for i, (loader_sps, memory_sps) in enumerate(rows, start=1):
        print(f"run {i}: loader {loader_sps:.2f} steps/s, preloaded {memory_sps:.2f} steps/s, "
              f"ratio {loader_sps / memory_sps:.3f}")
    ratios = sorted(a / b for a, b in rows)
    print(f"median ratio (loader / preloaded): {ratios[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
