"""Running a detector: batched prediction and scoring a whole dataset."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from diffseg.detect.metrics import Accumulator
from diffseg.runtime import autocast


@torch.inference_mode()
def probabilities(model: torch.nn.Module, x: torch.Tensor, device: str) -> np.ndarray:
    """Class probabilities (B, C, H, W) as float32."""
    with autocast(device):
        logits = model(x.to(device))
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def score_dataset(model: torch.nn.Module, dataset: Dataset, classes: list[str], device: str,
                  batch_size: int = 8) -> dict:
    """Metrics of ``model`` on ``dataset`` in its task, plus the binary view of an attribution task."""
    model.eval()
    task_acc = Accumulator(classes)
    binary_acc = Accumulator(["authentic", "edited"]) if len(classes) > 2 else None
    for x, y, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probs = probabilities(model, x, device)
        pred = probs.argmax(1)
        truth = y.numpy()
        edited_prob = 1.0 - probs[:, 0]
        for t, p, e in zip(truth, pred, edited_prob):
            task_acc.add(t, p, e)
            if binary_acc is not None:
                binary_acc.add((t > 0).astype(np.int64), (p > 0).astype(np.int64), e)
    out = {"task": task_acc.summary()}
    out["binary"] = binary_acc.summary() if binary_acc is not None else out["task"]
    out["_matrix"] = task_acc.matrix
    return out
