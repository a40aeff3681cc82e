"""UnivFD (Ojha et al., CVPR 2023, arXiv:2302.10174): a linear probe on frozen CLIP image features.

As in the paper, the features are CLIP's projected image embedding (768-d for ViT-L/14, the paper's
backbone, ``openai/clip-vit-large-patch14``), computed by a frozen encoder, and only a linear
classifier is learned. The probe here is scikit-learn's L2-regularised logistic regression (the same
objective as the paper's linear layer trained with binary cross-entropy; the lbfgs solver is
deterministic), saved as ``probe.safetensors`` (float64 weight and bias) plus ``config.json``.

The encoder and its image processor load by ``from_pretrained(baselines.univfd.clip_model)``: the real
checkpoint at paper scale, offline a tiny randomly initialised twin of the same classes written by
:mod:`diffseg.twins.clip` (``models/twins/clip``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffseg import records
from diffseg.detect.imageset import ImageSet
from diffseg.errors import UserError
from diffseg.params import Params
from diffseg.runtime import is_local, pick_device
from diffseg.seeding import keyed_seed

def load_clip(model: str, revision: str | None, device: str):
    """The frozen CLIP image encoder and its processor; a clear error when neither folder nor cached id."""
    import transformers
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    transformers.utils.logging.disable_progress_bar()
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(model, revision=revision)
        processor = CLIPImageProcessor.from_pretrained(model, revision=revision)
    except (OSError, ValueError) as err:
        hint = (f"baselines.univfd.clip_model: cannot load CLIP from '{model}': "
                f"{str(err).strip().splitlines()[0][:300]}")
        if is_local(model):
            hint += ". Offline, build the twin first (the twins stage writes models/twins/clip)"
        else:
            hint += (f". Offline, a hub model must already be in the Hugging Face cache: run "
                     f"`huggingface-cli download {model}` on a connected machine")
        raise UserError(hint) from None
    return encoder.to(device).eval(), processor


@torch.inference_mode()
def features(encoder, processor, images: ImageSet, device: str, batch_size: int) -> np.ndarray:
    """CLIP image embeddings (N, D) of every image, batch by batch."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = [images[i][0] for i in range(start, min(start + batch_size, len(images)))]
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        out.append(encoder(pixel_values=pixels).image_embeds.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def fit_and_score(params: Params, train: ImageSet, test: ImageSet, model_dir: Path) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import LogisticRegression

    cfg, device = params.baselines.univfd, pick_device(params.detect.device)
    encoder, processor = load_clip(cfg.clip_model, cfg.revision, device)
    print(f"baseline@univfd: CLIP features from '{cfg.clip_model}' on {device}, {len(train)} train images")
    train_x = features(encoder, processor, train, device, cfg.batch_size)
    test_x = features(encoder, processor, test, device, cfg.batch_size)
    probe = LogisticRegression(C=cfg.probe_c, max_iter=cfg.max_iter,
                               random_state=keyed_seed(params.seed, "baseline", "univfd") % (1 << 32))
    probe.fit(train_x, train.labels())
    with records.atomic_path(model_dir / "probe.safetensors") as tmp:
        save_file({"weight": torch.from_numpy(probe.coef_.copy()), "bias": torch.from_numpy(probe.intercept_.copy())},
                  str(tmp))
    records.write_json(model_dir / "config.json", {
        "baseline": "univfd", "clip_model": cfg.clip_model, "revision": cfg.revision,
        "feature_dim": int(train_x.shape[1]), "probe_c": cfg.probe_c, "train_images": len(train),
        "classes": ["authentic", "edited"]})
    return probe.predict_proba(test_x)[:, 1], {"method": "UnivFD (linear probe on frozen CLIP features)",
                                               "clip_model": cfg.clip_model, "feature_dim": int(train_x.shape[1])}


def probe_scores(folder: Path, feats: np.ndarray) -> np.ndarray:
    """P(edited) of the probe saved in ``folder`` for CLIP features ``feats`` (N, D)."""
    probe = load_file(str(Path(folder) / "probe.safetensors"))
    logits = feats @ probe["weight"].numpy().T + probe["bias"].numpy()
    return 1.0 / (1.0 + np.exp(-logits[:, 0]))
