"""Prompt templates of the annotation planner: category names and attributes in, prompts out.

Inpainting models are prompted with a description of what the masked region should show, not with
an instruction ("a red car", not "make the car red"), so every template describes content.
"""
from __future__ import annotations

import numpy as np

NEGATIVE = "blurry, distorted, deformed, low quality, watermark, text"

COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "pink", "brown", "silver"]
MATERIALS = ["wooden", "metallic", "glass", "plastic", "leather", "striped", "polka-dot", "checkered", "golden"]
PERSON_CHANGES = ["wearing a red jacket", "wearing a blue shirt", "wearing a yellow raincoat",
                  "wearing a black suit", "wearing a green sweater", "wearing a striped t-shirt"]

# (COCO id, name) of objects that can plausibly appear in most scenes; the add action draws from here.
ADDABLE = [(1, "person"), (3, "car"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (27, "backpack"),
           (28, "umbrella"), (37, "sports ball"), (44, "bottle"), (47, "cup"), (53, "apple"), (62, "chair"),
           (64, "potted plant"), (84, "book"), (85, "clock"), (86, "vase"), (88, "teddy bear")]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def new_attribute(category: str, rng: np.random.Generator) -> str:
    """A changed appearance for an object of ``category``."""
    if category == "person":
        return str(rng.choice(PERSON_CHANGES))
    pool = COLOURS + MATERIALS
    return str(pool[rng.integers(len(pool))])


def describe(category: str, attribute: str) -> str:
    """'a person wearing a red jacket', 'a red car', 'an orange cup'."""
    if category == "person" and attribute.startswith("wearing"):
        return f"a person {attribute}"
    return f"{article(attribute)} {attribute} {category}"


def add_prompt(category: str, attribute: str, caption: str) -> tuple[str, str]:
    scene = f", in {_scene(caption)}" if caption else ""
    return f"{describe(category, attribute)}{scene}, photorealistic, natural lighting", NEGATIVE


def remove_prompt(category: str, caption: str) -> tuple[str, str]:
    scene = _scene(caption) if caption else "the scene"
    return (f"empty background of {scene}, seamless continuation, photorealistic",
            f"{category}, object, person, {NEGATIVE}")


def change_prompt(category: str, attribute: str) -> tuple[str, str]:
    return f"{describe(category, attribute)}, photorealistic, natural lighting", NEGATIVE


def _scene(caption: str) -> str:
    """A COCO caption as a noun phrase: 'A man riding a horse.' -> 'a man riding a horse'."""
    text = caption.strip().rstrip(".")
    return text[:1].lower() + text[1:]
