"""Data-parallel training across processes: ``torchrun`` launch, process group, reductions.

``diffseg train <detector>`` with ``detect.nproc: N > 1`` starts itself again under
``torchrun --standalone --nproc_per_node N`` (see :func:`relaunch`); a command already started by
``torchrun`` (for several machines, say) runs the distributed path as it is::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-endpoint host:29500 -m diffseg.cli train segformer

NCCL joins GPU processes (one GPU each, by ``LOCAL_RANK``), gloo CPU ones.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from diffseg.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes checkpoints, metrics and logs."""
        return self.rank == 0


def launched() -> bool:
    """True inside a process started by ``torchrun`` (it sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def relaunch(nproc: int, cli_args: list[str]) -> None:
    """Run ``diffseg <cli_args>`` as ``nproc`` processes on this machine and wait for them.

    Relaunching (rather than writing ``torchrun`` into ``dvc.yaml``) keeps one stage command for every
    profile: ``nproc`` is an ordinary tracked param, and ``nproc: 1`` starts no launcher at all.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "diffseg.cli", *cli_args]
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise UserError(f"the {nproc} training processes failed (torchrun exit status {code}); see the log above")


def setup(device: str) -> World:
    """Join the process group ``torchrun`` describes; pin this process to its GPU."""
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def teardown() -> None:
    dist.barrier()
    dist.destroy_process_group()


def sum_all(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over every process (a float64 or int64 CPU tensor in, the same out)."""
    if not dist.is_initialized():
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    out = values.to(device)
    dist.all_reduce(out)
    return out.cpu()


def share_buffers(model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics drift apart per process)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)
