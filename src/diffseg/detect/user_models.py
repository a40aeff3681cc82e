"""A user's own detector, built by import path: params ``target: package.module:function`` (the Hydra
``_target_`` convention) with ``kwargs``.

The function is called as ``function(n_classes=N, in_channels=C, **kwargs)``: ``N`` is the task's class
count (2 for binary, 1 + the generators for attribution), ``C`` the input channels (3, more when a
forensic front-end adds channels). It must return a ``torch.nn.Module`` that maps a (B, C, H, W) batch of
[0, 1] images to (B, N, H, W) logits; :func:`build` checks that on one zero image of 64 x 64 pixels and
names the detector when it does not hold.

The working directory (the repository root, where DVC runs every stage) is on the import path, so code in
the repository's ``detectors/`` folder resolves as ``detectors.<module>:<function>``. That folder is a
dvc.yaml dep of every stage that builds or loads a detector: editing a model there re-runs them. Code
imported from elsewhere (an installed package) is not tracked by DVC.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable

import torch
from torch import nn

from diffseg.errors import UserError

PROBE_SIZE = 64  # side of the zero image that checks a built model's output (a multiple of 32, like image_size)


def build(name: str, target: str, kwargs: dict[str, Any], n_classes: int, in_channels: int = 3) -> nn.Module:
    """``target``'s function called with the class count, the input channels and ``kwargs``, checked."""
    where = f"detector '{name}' (target {target!r})"
    function = resolve(target, where)
    arguments = {"n_classes": n_classes, "in_channels": in_channels, **kwargs}
    try:
        inspect.signature(function).bind(**arguments)
    except TypeError as err:
        raise UserError(f"{where}: cannot be called with {sorted(arguments)}: {err}") from None
    model = function(**arguments)
    if not isinstance(model, nn.Module):
        raise UserError(f"{where}: returned a {type(model).__name__}, not a torch.nn.Module")
    _check_output(model, n_classes, in_channels, where)
    return model


def resolve(target: str, where: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names; a UserError naming what does not resolve."""
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"{where}: cannot import {module_name!r} ({err}); code in the repository's detectors/ "
                        f"folder is imported as detectors.<module>") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UserError(f"{where}: module {module_name!r} has no function {attribute!r}")
    return function


def _check_output(model: nn.Module, n_classes: int, in_channels: int, where: str) -> None:
    """One forward pass in eval mode (no running statistics move, no dropout draw), then the mode restored."""
    expected = (1, n_classes, PROBE_SIZE, PROBE_SIZE)
    training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, in_channels, PROBE_SIZE, PROBE_SIZE))
    finally:
        model.train(training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != expected:
        got = f"shape {shape}" if shape else f"a {type(out).__name__}"
        raise UserError(f"{where}: must return logits of shape (B, classes, H, W) at the input size; a "
                        f"{(1, in_channels, PROBE_SIZE, PROBE_SIZE)} input gave {got}, expected {expected}")
