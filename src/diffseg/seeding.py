"""Keyed randomness: every random choice derives from (global seed, stage, item key, ...).

Results therefore do not depend on processing order, batch size, worker count or resumption.
Python's ``hash()`` is salted per process, so a cryptographic hash is used instead.
"""
from __future__ import annotations

import hashlib

import numpy as np


def keyed_seed(seed: int, *key: object) -> int:
    """A 63-bit integer seed derived from ``seed`` and the parts of ``key`` (stage, image id, turn, ...)."""
    text = "\x1f".join(str(part) for part in (seed, *key))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A numpy generator private to one key."""
    return np.random.default_rng(keyed_seed(seed, *key))


def keyed_unit(seed: int, *key: object) -> float:
    """A number in [0, 1) private to one key (used to order or split items stably)."""
    return keyed_seed(seed, *key) / float(1 << 63)
