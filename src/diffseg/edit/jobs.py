"""The units the edit stage hands to an executor, and what an executor must do with them.

The stage plans :class:`Job` batches, an executor runs them where it likes (this process, Ray actors),
and every job ends in the stage's ``finish`` with the :class:`Outcome` of its pipeline call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from diffseg.params import Generator


@dataclass(frozen=True)
class Job:
    """One batch: the unit of generation, of journaling and of resumption."""

    index: int  # position in the turn's batch order (the journal's key)
    generator: str
    size: tuple[int, int]  # the generator's native (width, height) for these images
    rows: list[dict]  # plan rows


@dataclass
class Inputs:
    """What one pipeline call needs; an executor may ship it to another process or machine."""

    befores: list[np.ndarray]
    masks: list[np.ndarray]
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    native: bool = False  # keep the generated images at the native size (edit.output_resolution: generator)
    fitted: bool = False  # run in chunks that fit the device memory (edit.memory: auto)


@dataclass
class Outcome:
    """One pipeline call's result: per image the generated image (None where not finite), or the error."""

    images: list[np.ndarray | None] | None  # None: the call raised, and ``error`` says why
    error: str = ""
    reasons: list[str] | None = None  # per image, why it failed ('' where it did not); None: only NaN fails one
    memory: list[dict] | None = None  # per image, the memory setting it ran at (edit.memory: auto only)

    @property
    def failed(self) -> bool:
        return self.images is None

    @property
    def retry(self) -> bool:
        """Some item failed with a generator error: a restart runs the batch again."""
        return self.failed or any(self.reasons or [])


Groups = list[tuple[Generator, list[Job]]]  # per generator, its jobs in batch order


class Executor(Protocol):
    def run(self, groups: Groups, prepare: Callable[[Job], Inputs], attempt: Callable[..., Outcome],
            finish: Callable[[Job, Inputs, Outcome], None]) -> None:
        """For every job: ``finish(job, inputs, attempt(adapter, inputs))`` with ``inputs = prepare(job)``,
        the adapter being the job's generator, loaded once per group."""
