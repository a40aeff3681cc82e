"""Strict parsing of VLM answers: JSON extraction and schema validation, every refusal with a reason.

A model's answer is untrusted text. It is accepted only as one JSON value, alone or in one Markdown code
fence (```json ... ```), without duplicate keys, NaN/Infinity or control characters, and then checked
field by field against a schema. Problems are returned as short reasons (for the manifest and for the
correction prompt), never raised: no answer, however odd, stops a stage.

The plan answer (what the planner's prompt asks for)::

    {"candidates": [{"action": "remove", "target": "the dog on the left",
                     "prompt": "empty grass lawn, photorealistic", "negative_prompt": "dog, animal",
                     "rationale": "the dog is a clear, separate object", "box": null}, ...]}

``box`` ([x0, y0, x1, y1] in pixels of the image the model saw) is optional and only for ``add``. One
bad candidate does not spoil the others; the answer is refused when no candidate is valid.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass

MAX_CHARS = 20_000  # longer answers are refused unread: runaway generation, not a plan
LIMITS = {"target": 80, "prompt": 400, "negative_prompt": 400, "rationale": 300}  # characters per field
REQUIRED = ("action", "target", "prompt", "negative_prompt", "rationale")
OPTIONAL = ("box",)
NONEMPTY = ("target", "prompt", "rationale")  # negative_prompt may be empty
MIN_BOX_SIDE = 4  # pixels: a smaller placement box cannot hold an object
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*)\n[ \t]*```", re.DOTALL)


@dataclass(frozen=True)
class Candidate:
    """One valid proposed edit, as the model wrote it (strings stripped)."""

    index: int  # position in the answer, 0-based
    action: str
    target: str
    prompt: str
    negative_prompt: str
    rationale: str
    box: tuple[float, float, float, float] | None = None


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise _Duplicate(f"duplicate key {dup[0]!r}")
    return dict(pairs)


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def extract_json(text: str) -> tuple[object, str]:
    """(value, '') for an answer that is one JSON value, optionally in one code fence; (None, reason) otherwise."""
    if not isinstance(text, str):
        return None, f"answer is {type(text).__name__}, not text"
    if len(text) > MAX_CHARS:
        return None, f"answer too long ({len(text)} characters, at most {MAX_CHARS})"
    body = text.strip().lstrip("\ufeff").strip()
    if not body:
        return None, "empty answer"
    if body.startswith("```"):
        fenced = _FENCE.fullmatch(body)
        if not fenced:
            return None, "code fence not closed, or text outside it"
        body = fenced.group(1).strip()
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as err:
        return None, f"not valid JSON: {err}"
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        if err.msg == "Extra data":
            return None, f"text after the JSON value ({where})"
        return None, f"not valid JSON: {err.msg} ({where})"
    except RecursionError:
        return None, "not valid JSON: nested too deeply"
    except ValueError as err:
        return None, f"not valid JSON: {err}"
    return value, ""


def check_text(value: object, name: str, limit: int, required: bool) -> tuple[str, str]:
    """(stripped text, '') or ('', reason) for a string field."""
    if not isinstance(value, str):
        return "", f"'{name}' must be a string, got {_kind(value)}"
    text = value.strip()
    if required and not text:
        return "", f"'{name}' is empty"
    if len(text) > limit:
        return "", f"'{name}' is longer than {limit} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in text):
        return "", f"'{name}' contains control characters"
    return text, ""


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _box(value: object, size: tuple[int, int]) -> tuple[tuple[float, float, float, float] | None, str]:
    width, height = size
    if not isinstance(value, list) or len(value) != 4:
        return None, "'box' must be a list [x0, y0, x1, y1]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None, "'box' must hold 4 finite numbers"
    x0, y0, x1, y1 = (float(v) for v in value)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        return None, f"'box' {value} is not a box inside the {width} x {height} image (x0 < x1, y0 < y1)"
    if min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
        return None, f"'box' {value} is smaller than {MIN_BOX_SIDE} pixels"
    return (x0, y0, x1, y1), ""


def check_candidate(index: int, item: object, actions: set[str],
                    size: tuple[int, int]) -> tuple[Candidate | None, list[str]]:
    """A validated candidate, or the reasons (prefixed 'candidate N') it is not one."""
    tag = f"candidate {index + 1}"
    if not isinstance(item, dict):
        return None, [f"{tag}: must be an object, got {_kind(item)}"]
    problems = [f"{tag}: unknown key {k!r}" for k in item if k not in REQUIRED + OPTIONAL]
    problems += [f"{tag}: missing key {k!r}" for k in REQUIRED if k not in item]
    if problems:
        return None, problems
    action = item["action"]
    if not isinstance(action, str) or action not in actions:
        return None, [f"{tag}: 'action' must be one of {sorted(actions)}, got {action!r}"[:200]]
    fields = {}
    for name in REQUIRED[1:]:
        fields[name], problem = check_text(item[name], name, LIMITS[name], name in NONEMPTY)
        if problem:
            problems.append(f"{tag}: {problem}")
    box = None
    if item.get("box") is not None:
        if action != "add":
            problems.append(f"{tag}: 'box' is only for add (placement of the new object)")
        else:
            box, problem = _box(item["box"], size)
            if problem:
                problems.append(f"{tag}: {problem}")
    if problems:
        return None, problems
    return Candidate(index=index, action=action, box=box, **fields), []


def parse_plan(text: str, actions: set[str], n_max: int, size: tuple[int, int]) -> tuple[list[Candidate], list[str]]:
    """The valid candidates of a plan answer, and every problem found.

    ``actions``: the enabled actions; ``n_max``: candidates asked for; ``size``: (width, height) of the image
    the model saw. Problems of refused candidates are returned even when another candidate is valid.
    """
    value, problem = extract_json(text)
    if problem:
        return [], [problem]
    if not isinstance(value, dict):
        return [], [f"answer must be a JSON object with 'candidates', got {_kind(value)}"]
    extra = sorted(k for k in value if k != "candidates")
    if extra:
        return [], [f"unknown top-level key {extra[0]!r} (only 'candidates')"]
    items = value.get("candidates")
    if not isinstance(items, list):
        return [], [f"'candidates' must be a list, got {_kind(items)}"]
    if not 1 <= len(items) <= n_max:
        return [], [f"'candidates' must hold 1 to {n_max} edits, got {len(items)}"]
    valid, problems = [], []
    for index, item in enumerate(items):
        candidate, found = check_candidate(index, item, actions, size)
        problems += found
        if candidate is not None:
            valid.append(candidate)
    return valid, problems
