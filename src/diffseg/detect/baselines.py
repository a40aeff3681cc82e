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
from typing import Collection

import numpy as np
from sklearn.metrics import roc_auc_score
from diffseg import records
from diffseg.detect import baselines_cnnspot, baselines_univfd
from diffseg.detect.data import seen_only
from diffseg.detect.imageset import ImageSet
from diffseg.errors import UserError
from diffseg.params import Params

# The registry: baseline name (``diffseg baseline <name>``, params ``baselines.<name>``) -> its module, which
# provides ``fit_and_score(params, train, test, model_dir) -> (test scores, extra result fields)``.
BASELINES = {"cnnspot": baselines_cnnspot, "univfd": baselines_univfd}
THRESHOLD = 0.5  # the detection threshold of diffseg.detect.metrics


def splits(root: Path, unseen: Collection[str] = ()) -> tuple[ImageSet, ImageSet]:
    """The train and test splits without the images ``unseen`` generators touched (``crossgen.unseen``);
    a classifier needs both classes in training."""
    keep = seen_only(unseen)
    train, test = ImageSet(root, "train", keep), ImageSet(root, "test", keep)
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
    if name not in BASELINES:
        raise UserError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})")
    method = BASELINES[name]
    train, test = splits(Path(params.detect.dataset), params.crossgen.unseen)
    model_dir = records.fresh_dir(model_dir)
    scores, extra = method.fit_and_score(params, train, test, model_dir)
    result = {"baseline": name, "dataset": params.detect.dataset, "train_images": len(train),
              "test_images": len(test), **detection_metrics(test.labels(), scores), **extra}
    records.write_json(metrics_path, result)
    print(f"baseline@{name}: detection accuracy {result['detection_accuracy']}, AUC {result['detection_auc']} "
          f"on {len(test)} test images")
    return result
