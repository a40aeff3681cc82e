"""Running a detector: batched prediction and scoring a whole dataset at the working size.

:func:`score_dataset` scores the resized items of a ``SegmentationSet`` (cheap, used for validation
during training); the benchmark's test figures are computed at each image's own size by
:mod:`diffseg.detect.scoring`. Both read the model through one binary view, P(edited) = 1 - p(authentic)
>= 0.5, and name a generator only where that view says edited (``metrics.attribution_pred``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from diffseg.detect.data import IGNORE
from diffseg.detect.metrics import Accumulator, attribution_pred, binary_view
from diffseg.runtime import autocast


@torch.inference_mode()
def probabilities(model: torch.nn.Module, x: torch.Tensor, device: str) -> np.ndarray:
    """Class probabilities (B, C, H, W) as float32."""
    with autocast(device):
        logits = model(x.to(device))
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def score_dataset(model: torch.nn.Module, dataset: Dataset, classes: list[str], device: str,
                  batch_size: int = 8) -> dict:
    """Metrics of ``model`` on ``dataset`` in its task, plus the binary view of an attribution task.

    Targets are task class ids at the working size; pixels labelled :data:`IGNORE` are left out.
    """
    model.eval()
    task_acc = Accumulator(classes)
    binary_acc = Accumulator(["authentic", "edited"]) if len(classes) > 2 else None
    for x, y, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        for truth, probs in zip(y.numpy(), probabilities(model, x, device)):
            edited_prob, edited = binary_view(probs)
            pred = attribution_pred(probs) if len(classes) > 2 else edited.astype(np.int64)
            valid = truth != IGNORE
            if not valid.any():
                continue
            t, e = truth[valid], edited_prob[valid]
            task_acc.add(t, pred[valid], e)
            if binary_acc is not None:
                binary_acc.add((t > 0).astype(np.int64), edited[valid].astype(np.int64), e)
    out = {"task": task_acc.summary()}
    out["binary"] = binary_acc.summary() if binary_acc is not None else out["task"]
    out["_matrix"] = task_acc.matrix
    return out
