"""Tiny, randomly initialised twins of the ``vlm`` planner's and judge's models, built offline.

* ``qwen2_5_vl``: ``Qwen2_5_VLForConditionalGeneration`` with a byte-level ``Qwen2Tokenizer`` and the
  Qwen2-VL image and video processors, saved with ``save_pretrained``; loaded back by
  ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained`` like Qwen/Qwen2.5-VL-7B-Instruct.
* ``grounding_dino``: ``GroundingDinoForObjectDetection`` (Swin + BERT) with its processor, likewise.
* ``sam/sam_vit_twin.pth``: a segment-anything ``Sam`` state dict, loaded by
  ``sam_model_registry["vit_twin"](checkpoint=...)``, the call that loads vit_h; the twin's architecture
  is in :mod:`diffseg.sam_twin`, which the loader registers next to vit_h / vit_l / vit_b.

Their answers are gibberish and their boxes and masks random: they prove the machinery (loading,
prompting, batching, parsing, recording), not the planning.
"""
from __future__ import annotations

from pathlib import Path

import torch

from diffseg import records
from diffseg.sam_twin import SAM_TWIN, sam_twin
from diffseg.seeding import keyed_seed
from diffseg.twins.generators import bert_tokenizer, byte_vocab

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL's own chat template, reduced to what the stages send: text and image parts, no tools.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen_tokenizer():
    """Byte-level BPE without merges (one token per byte) plus Qwen's special tokens: no download."""
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(byte_vocab())}
    for token in QWEN_SPECIAL:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], errors="replace", unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=16384)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL[1:]})  # atomic, never split into bytes
    return tok


def build_qwen(out_dir: Path) -> int:
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    # Byte-level prompts are long (one token per character): a wide position range keeps them whole.
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=16384,
                rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}, bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True)
    vision = dict(depth=2, hidden_size=32, intermediate_size=32, num_heads=4, in_channels=3, out_hidden_size=32,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(config)
    # At most 224 x 224 pixels per image (64 merged visual tokens): the twin's prompts stay short.
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224, patch_size=14, merge_size=2,
                                   temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def build_grounding_dino(out_dir: Path) -> int:
    from transformers import (GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
                              GroundingDinoProcessor, SwinConfig)

    tok = bert_tokenizer()
    # Two decoder layers at least: with one, transformers' tie_weights_keys for bbox_embed do not resolve.
    config = GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, use_timm_backbone=False,
        backbone_config=SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   image_size=224, out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4]),
        text_config={"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
                     "max_position_embeddings": 256, "vocab_size": len(tok), "model_type": "bert"},
        max_text_len=256)
    model = GroundingDinoForObjectDetection(config)
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(
        size={"shortest_edge": 256, "longest_edge": 320}), tokenizer=tok)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def build_sam(path: Path) -> int:
    sam = sam_twin()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return sum(p.numel() for p in sam.parameters())


BUILDERS = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", lambda out: build_qwen(out / "qwen2_5_vl")),
    "grounding_dino": ("GroundingDinoForObjectDetection", lambda out: build_grounding_dino(out / "grounding_dino")),
    "sam": ("segment_anything Sam (vit_twin)", lambda out: build_sam(out / "sam" / f"sam_{SAM_TWIN}.pth")),
}


def build_vlm_twins(out_dir: Path, seed: int) -> list[dict]:
    """Write every twin under ``out_dir`` (each from a seed keyed by its name); one manifest row each."""
    rows = []
    for name, (kind, build) in BUILDERS.items():
        torch.manual_seed(keyed_seed(seed, "twins", name) % (1 << 32))
        n_params = build(Path(out_dir))
        rows.append({"family": name, "pipeline": kind, "folder": name, "parameters": n_params,
                     "status": records.OK, "reason": ""})
        print(f"twins: {name}: {kind}, {n_params / 1e6:.2f} M parameters")
    return rows
