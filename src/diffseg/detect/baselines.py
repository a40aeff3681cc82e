"""``baseline@<name>``: the image-level detectors the paper compares the segmentation models against.

* ``cnnspot`` -- CNNSpot (Wang, Wang, Zhang, Owens and Efros, "CNN-generated images are surprisingly
  easy to spot... for now", CVPR 2020, arXiv:1912.11035): a ResNet-50 binary classifier trained with
  blur + JPEG augmentation (:mod:`diffseg.detect.baselines_cnnspot`).
* ``univfd`` -- UnivFD (Ojha, Li and Lee, "Towards universal fake image detectors that generalize across
  generative models", CVPR 2023, arXiv:2302.10174): a linear probe on frozen CLIP image features
  (:mod:`diffseg.detect.baselines_univfd`).

Both learn the image-level label of the train split (edited = the manifest's ``n_edits > 0``) and are
scored on the test split with the definitions of :mod:`diffseg.detect.metrics`: detection accuracy at a
0.5 threshold and ROC AUC. Each writes ``metrics/baselines/<name>.json`` and its model files under
``models/baselines/<name>/``::

    diffseg baseline cnnspot
    diffseg baseline univfd
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from diffseg import records
from diffseg.errors import UserError
from diffseg.params import Params

NAMES = ("cnnspot", "univfd")
THRESHOLD = 0.5  # the detection threshold of diffseg.detect.metrics


class ImageSet(Dataset):
    """Items of one split of an assembled dataset: (uint8 RGB image, edited 0/1, image_id), read lazily."""

    def __init__(self, root: Path, split: str):
        self.data = records.StateDir(root)
        manifest = self.data.manifest()
        self.items = manifest[manifest["split"] == split].sort_values("image_id").reset_index(drop=True)
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return (self.items["n_edits"] > 0).to_numpy().astype(np.int64)

    def __getitem__(self, index: int):
        image_id = self.items.at[index, "image_id"]
        return self.data.image(image_id), int(self.items.at[index, "n_edits"] > 0), image_id


def splits(root: Path) -> tuple[ImageSet, ImageSet]:
    """The train and test splits; a classifier needs both classes in training."""
    train, test = ImageSet(root, "train"), ImageSet(root, "test")
    if not len(train) or not len(test):
        raise UserError(f"{root}: the train split has {len(train)} and the test split {len(test)} images; "
                        f"both are needed")
    if len(set(train.labels())) < 2:
        raise UserError(f"{root}: every train image is {'edited' if train.labels()[0] else 'authentic'}; an "
                        f"image-level classifier needs both edited and never-edited images")
    return train, test


def detection_metrics(edited: np.ndarray, scores: np.ndarray) -> dict:
    """Accuracy at 0.5 and ROC AUC (None unless both classes occur), as diffseg.detect.metrics defines them."""
    edited, scores = np.asarray(edited, bool), np.asarray(scores, np.float64)
    both = edited.any() and (~edited).any()
    return {"detection_accuracy": round(float(((scores >= THRESHOLD) == edited).mean()), 6),
            "detection_auc": round(float(roc_auc_score(edited, scores)), 6) if both else None,
            "n_images": int(len(edited)), "n_edited": int(edited.sum())}


def run(params: Params, name: str, model_dir: Path, metrics_path: Path) -> dict:
    if name == "cnnspot":
        from diffseg.detect import baselines_cnnspot as method
    elif name == "univfd":
        from diffseg.detect import baselines_univfd as method
    else:
        raise UserError(f"unknown baseline '{name}' (known: {', '.join(NAMES)})")
    train, test = splits(Path(params.detect.dataset))
    model_dir = records.fresh_dir(model_dir)
    scores, extra = method.fit_and_score(params, train, test, model_dir)
    result = {"baseline": name, "dataset": params.detect.dataset, "train_images": len(train),
              "test_images": len(test), **detection_metrics(test.labels(), scores), **extra}
    records.write_json(metrics_path, result)
    print(f"baseline@{name}: detection accuracy {result['detection_accuracy']}, AUC {result['detection_auc']} "
          f"on {len(test)} test images")
    return result
