"""Wording every output of the offline profile repeats: the dataset card, the export's card, the report."""
from __future__ import annotations

from diffseg.runtime import is_local

OFFLINE_WARNING = (
    "> **Offline profile.** The generators are tiny randomly initialised *twins* of the real pipelines and "
    "the images come from photographs bundled in Python packages plus procedural scenes. This dataset proves "
    "the machinery (masks, labels, provenance, splits); its edits are noise-like and its numbers say nothing "
    "about real diffusion models.")


def offline_run(params) -> bool:
    """Whether ``params`` (a :class:`diffseg.params.Params`) generates with twins or from the bundled images:
    the outputs then carry :data:`OFFLINE_WARNING`, whatever the source."""
    return params.source.kind == "offline" or any(is_local(g.model) for g in params.edit.generators)
