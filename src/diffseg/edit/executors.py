"""Where ``edit@<turn>``'s batches run: in this process (``inprocess``) or on Ray actors (``ray``).

The stage plans the batches and keeps every file write; an executor only turns a batch's inputs into
generated images. Both executors receive the same batches, so the output is the same byte for byte
(batched float arithmetic differs from unbatched: the batch composition must not depend on the
executor). With Ray, one actor per worker holds one generator at a time; each generator's batches
form one or more contiguous shards, and an idle actor takes the next shard, loading its generator.
Actors run torch with the driver's thread count: on the CPU another count changes the last bits.

    edit.executor: ray
    edit.ray: {address: null, num_workers: 4, num_cpus: 4, num_gpus: 1}

``address`` null connects to ``RAY_ADDRESS`` when it is set and otherwise starts a local cluster for
the stage. Every Ray node needs this package and the generators' checkpoints (a hub id, or a folder
at the same absolute path).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections import deque
from pathlib import Path
from typing import Callable

from diffseg.edit import families, fitting
from diffseg.edit.jobs import Executor, Groups, Inputs, Job, Outcome
from diffseg.errors import UserError
from diffseg.params import Edit, Generator

AHEAD = 2  # batches queued per actor: one running, one waiting, so an actor never idles on the driver


class ExecutorError(UserError, RuntimeError):
    """A Ray cluster that cannot be reached or cannot hold one worker."""


def create(edit: Edit, stage: str) -> Executor:
    """The executor ``edit.executor`` names; a Ray address is checked here, before any work."""
    if edit.executor == "ray":
        return RayExecutor(edit, stage)
    return InProcess(edit, stage)


class InProcess:
    """Generator after generator in this process, each loaded once."""

    def __init__(self, edit: Edit, stage: str):
        self.edit, self.stage = edit, stage

    def run(self, groups: Groups, prepare: Callable[[Job], Inputs], attempt: Callable[..., Outcome],
            finish: Callable[[Job, Inputs, Outcome], None]) -> None:
        """Run ``groups`` ([(generator, jobs)]): ``finish(job, inputs, attempt(adapter, prepare(job)))``."""
        for gen, jobs in groups:
            adapter = families.create(gen, self.edit.device, self.edit.cpu_offload, self.edit.vae_tiling)
            started = time.perf_counter()
            try:
                fitting.load(adapter, self.edit)
                for job in jobs:
                    inputs = prepare(job)
                    finish(job, inputs, attempt(adapter, inputs))
            finally:  # one generator resident at a time, also when a load fails half-way
                adapter.unload()
            print(f"{self.stage}: {gen.name}: {sum(len(j.rows) for j in jobs)} item(s) in "
                  f"{time.perf_counter() - started:.1f} s")


class Worker:
    """A Ray actor: holds one generator at a time and runs batches on it."""

    def __init__(self, attempt: Callable, edit: Edit, threads: int):
        import torch

        # The driver's count, not the actor's CPU share: CPU kernels split their sums by thread, so
        # another count moves pixels by one level and the bytes would differ from the in-process run's.
        torch.set_num_threads(threads)
        self.attempt, self.edit, self.adapter = attempt, edit, None

    def load(self, gen: Generator) -> str:
        """Swap to ``gen``; the error message where it cannot be loaded (the stage stops), else ''."""
        if self.adapter is not None:
            self.adapter.unload()
        self.adapter = families.create(gen, self.edit.device, self.edit.cpu_offload, self.edit.vae_tiling)
        try:
            fitting.load(self.adapter, self.edit)
        except UserError as err:
            self.adapter.unload()
            return str(err)
        return ""

    def run(self, inputs: Inputs) -> Outcome:
        return self.attempt(self.adapter, inputs)


@dataclasses.dataclass
class _Shard:
    gen: Generator
    jobs: list
    left: int = 0
    started: float = 0.0


class RayExecutor:
    def __init__(self, edit: Edit, stage: str):
        self.edit, self.stage, self.cfg = edit, stage, edit.ray
        self.address = self.cfg.address or os.environ.get("RAY_ADDRESS") or None
        self.key = "edit.ray.address" if self.cfg.address else "RAY_ADDRESS"
        if self.address is not None:
            _check_reachable(self.address, self.key)

    def run(self, groups: Groups, prepare: Callable[[Job], Inputs], attempt: Callable[..., Outcome],
            finish: Callable[[Job, Inputs, Outcome], None]) -> None:
        """Like :meth:`InProcess.run`, with ``attempt`` on the actors and the rest here, in order of arrival."""
        shards = _shards(groups, self.cfg.num_workers)
        if not shards:
            return
        import ray
        import torch

        connected_here = self._connect(ray)
        actors = []
        try:
            n_actors = min(len(shards), self._fitting_workers(ray))
            remote = ray.remote(num_cpus=self.cfg.num_cpus, num_gpus=self.cfg.num_gpus)(Worker)
            actors = [remote.remote(attempt, self.edit, torch.get_num_threads()) for _ in range(n_actors)]
            self._drive(ray, actors, deque(shards), prepare, finish)
        finally:
            for actor in actors:
                ray.kill(actor)
            if connected_here:
                ray.shutdown()

    def _drive(self, ray, actors: list, queue: deque, prepare: Callable, finish: Callable) -> None:
        todo = {i: deque() for i in range(len(actors))}  # per actor: (shard, job) sent to it next
        pending: dict = {}  # object ref -> (actor index, shard, job or None for a load, inputs)

        def feed(i: int) -> None:
            while sum(1 for entry in pending.values() if entry[0] == i) < AHEAD:
                if not todo[i]:
                    if not queue:
                        return
                    shard = queue.popleft()
                    shard.left, shard.started = len(shard.jobs), time.perf_counter()
                    todo[i].extend((shard, job) for job in shard.jobs)
                    pending[actors[i].load.remote(_portable(shard.gen))] = (i, shard, None, None)
                    continue
                shard, job = todo[i].popleft()
                inputs = prepare(job)
                pending[actors[i].run.remote(inputs)] = (i, shard, job, inputs)

        for i in range(len(actors)):
            feed(i)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, shard, job, inputs = pending.pop(ready[0])
            if job is None:
                message = ray.get(ready[0])
                if message:
                    raise families.GeneratorError(message)
            else:
                finish(job, inputs, ray.get(ready[0]))
                shard.left -= 1
                if not shard.left:
                    print(f"{self.stage}: {shard.gen.name}: {sum(len(j.rows) for j in shard.jobs)} item(s) "
                          f"on worker {i} in {time.perf_counter() - shard.started:.1f} s")
            feed(i)

    def _connect(self, ray) -> bool:
        """Join or start a cluster; False when this process was already connected (the caller's session)."""
        if ray.is_initialized():
            return False
        quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
        if self.address is None:
            # A local cluster sized so that every configured worker fits, rather than waiting forever.
            ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(self.cfg.num_workers * self.cfg.num_cpus)),
                     include_dashboard=False, **quiet)
            return True
        try:
            ray.init(address=self.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            raise ExecutorError(f"{self.key}={self.address!r}: cannot join a Ray cluster there "
                                f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") \
                from None
        return True

    def _fitting_workers(self, ray) -> int:
        """How many actors the cluster can hold at once; a cluster too small for one is a user error."""
        total = ray.cluster_resources()
        fits = [math.floor(total.get(name, 0) / need) for name, need in
                (("CPU", self.cfg.num_cpus), ("GPU", self.cfg.num_gpus)) if need > 0]
        n = min([self.cfg.num_workers] + fits)
        if n < 1:
            raise ExecutorError(f"edit.ray: the cluster has {total.get('CPU', 0):g} CPU(s) and "
                                f"{total.get('GPU', 0):g} GPU(s); one worker needs num_cpus={self.cfg.num_cpus:g}, "
                                f"num_gpus={self.cfg.num_gpus:g}")
        return n


def _shards(groups: Groups, num_workers: int) -> list[_Shard]:
    """Each generator's jobs cut into contiguous shards, enough for every worker when generators are few."""
    groups = [(gen, jobs) for gen, jobs in groups if jobs]
    if not groups:
        return []
    per_gen = max(1, math.ceil(num_workers / len(groups)))
    shards = []
    for gen, jobs in groups:
        size = math.ceil(len(jobs) / per_gen)
        shards += [_Shard(gen, jobs[start:start + size]) for start in range(0, len(jobs), size)]
    return shards


def _portable(gen: Generator) -> Generator:
    """``gen`` with local checkpoint folders made absolute: an actor's working folder is not the driver's."""
    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path and Path(path).exists() else path

    return dataclasses.replace(gen, model=absolute(gen.model), prior=absolute(gen.prior))


def _check_reachable(address: str, key: str) -> None:
    """Fail fast, before any work, where nothing listens at ``address`` (ray.init would retry for minutes)."""
    if address == "auto":  # ray finds a cluster started on this machine; ray.init reports a missing one
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"{key}={address!r}: expected host:port (or ray://host:port), e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise ExecutorError(f"{key}={address!r}: no Ray cluster answers there ({err.strerror or err}); start one "
                            f"with `ray start --head` or set edit.ray.address to null for a local one") from None
