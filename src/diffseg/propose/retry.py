"""Retry rounds (``turns`` entries ``t<k>_retry<n>``): which images a round re-plans, and what it avoids.

A round starts from the state after the turn's previous attempt. It re-plans an image when the image's
budget (:func:`annotations.planned_turns`) covers the turn and the turn's last attempt was not accepted:
the filter rejected it, the edit failed, or no plan could be made. Every other image passes through; its
plan row has attempt 0 and says why. A new attempt draws with its own keyed randomness (a new seed,
generator, action and prompt) and tries another target first where the planner has one.
"""
from __future__ import annotations

import pandas as pd

NOT_RETRIED = 0  # the plan's attempt column for an image a retry round passes through


def earlier_attempts(history: pd.DataFrame, turn: str) -> dict[str, list[dict]]:
    """Per image, its history rows of ``turn``, in attempt order."""
    if not len(history):
        return {}
    rows = history[history["turn"] == turn].sort_values("attempt", kind="stable")
    return {image_id: group.to_dict("records") for image_id, group in rows.groupby("image_id", sort=True)}


def why_not(rows: list[dict], budget: int, turn_index: int) -> str:
    """Why an image is not retried, or '' when it is. ``rows``: its earlier attempts of the turn."""
    if turn_index > budget:
        return f"image gets {budget} edit(s)"
    if not rows:
        return "no earlier attempt of this turn in the state's history"
    last = rows[-1]
    if last["decision"] == "accepted":
        return f"edit accepted in attempt {int(last['attempt'])}"
    return ""


def tried_targets(rows: list[dict]) -> set[tuple[str, str]]:
    """(action, target) of the earlier attempts that planned an edit."""
    return {(str(r["action"]), str(r["target"])) for r in rows if r["action"] != "none"}


def tried_instances(rows: list[dict]) -> set[int]:
    """Annotated instances the earlier attempts targeted (remove, change)."""
    return {int(r["ann_id"]) for r in rows if r["action"] != "none" and int(r["ann_id"]) >= 0}
