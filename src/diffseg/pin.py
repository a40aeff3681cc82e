"""``diffseg pin``: every hub checkpoint of a params file resolved to a commit, and written back as its revision.

A hub id whose revision is null loads whatever the hub's default branch holds on the day of the run, so a
paper-scale run is frozen only once every id names a commit. ``diffseg pin`` asks the hub for each id's
commit (at the revision the file names, else the default branch) and prints the table; ``--write``
stores the commits in the file's revision fields through a ruamel.yaml round trip, which keeps the
file's comments and layout. Local folders (the offline twins) are neither resolved nor written::

    diffseg pin                                        # the table for params.yaml; changes nothing
    diffseg pin --params configs/paper.yaml --write    # the commits written into the paper profile

:func:`require_pinned` is the other half: ``propose``, ``edit`` and ``filter`` call it before any work,
so a profile with ``allow_unpinned: false`` never generates from a checkpoint that can move.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from diffseg import params as params_mod
from diffseg import records, runtime
from diffseg.errors import UserError
from diffseg.params import HubRef, Params, ParamsError

LOCAL = "(not a hub id: not pinned)"  # a local folder, or GLIDE's package checkpoint name


def require_pinned(p: Params, stage: str) -> None:
    """Stop ``stage`` when it would load a hub id without a revision and ``allow_unpinned`` is false."""
    if p.allow_unpinned:
        return
    loose = [ref for ref in p.hub_refs() if ref.stage == stage and ref.loaded and ref.revision is None
             and not runtime.is_local(ref.model)]
    if loose:
        first, rest = loose[0], loose[1:]
        also = f" (nor do {', '.join(ref.revision_key for ref in rest)})" if rest else ""
        raise ParamsError(f"key '{first.revision_key}': hub checkpoint '{first.model}' has no pinned revision{also}; "
                          f"`diffseg pin --write` pins every hub id of the file, allow_unpinned: true loads the "
                          f"hub's current files")


@dataclass(frozen=True)
class Pin:
    ref: HubRef
    commit: Optional[str]  # None for a local folder (anything runtime.is_local calls one)


def resolve(refs: list[HubRef]) -> list[Pin]:
    """Each ref with the commit the hub resolves it to; an id asked for twice is asked once."""
    from huggingface_hub import HfApi

    api, known, pins = HfApi(), {}, []
    for ref in refs:
        if runtime.is_local(ref.model):
            pins.append(Pin(ref, None))
            continue
        if (ref.model, ref.revision) not in known:
            known[ref.model, ref.revision] = _commit(api, ref)
        pins.append(Pin(ref, known[ref.model, ref.revision]))
    return pins


def _commit(api, ref: HubRef) -> str:
    import httpx2  # huggingface_hub's HTTP client: its transport errors are "the hub did not answer"
    from huggingface_hub.errors import (HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{ref.key}: '{ref.model}'"
    try:
        return api.model_info(ref.model, revision=ref.revision).sha
    except RepositoryNotFoundError:
        raise UserError(f"{where} is not a model on the Hugging Face hub (a private one needs "
                        f"`huggingface-cli login`)") from None
    except RevisionNotFoundError:
        raise UserError(f"{where} has no revision '{ref.revision}' on the Hugging Face hub") from None
    except OfflineModeIsEnabled:
        raise UserError(f"{where}: cannot ask the Hugging Face hub for its commit while HF_HUB_OFFLINE is set; "
                        f"pin on a connected machine") from None
    except (httpx2.TransportError, HfHubHTTPError) as err:
        raise UserError(f"{where}: cannot ask the Hugging Face hub for its commit: "
                        f"{runtime.short_error(err)}") from None


def table(pins: list[Pin]) -> str:
    """One aligned row per checkpoint field: key, id, the revision the file names, the hub's commit."""
    rows = [("key", "checkpoint", "revision", "commit")]
    rows += [(pin.ref.key, pin.ref.model, pin.ref.revision or "null", pin.commit or LOCAL) for pin in pins]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[3]]) for row in rows)


def write(path: Path, pins: list[Pin]) -> int:
    """Store each commit in its revision field of ``path`` (atomically); return how many values changed."""
    yaml = _round_trip()
    doc = yaml.load(path.read_text())
    changed = 0
    for pin in pins:
        if pin.commit is None or pin.commit == pin.ref.revision:
            continue
        *parents, name = pin.ref.revision_path
        section = doc
        for part in parents:
            section = section[part]
        if name in section:
            section[name] = pin.commit
        else:  # a revision the file leaves out goes right after its id
            section.insert(list(section).index(pin.ref.path[-1]) + 1, name, pin.commit)
        changed += 1
    if changed:
        out = io.StringIO()
        yaml.dump(doc, out)
        records.write_bytes(path, out.getvalue().encode())
    return changed


def _round_trip():
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class Representer(RoundTripRepresenter):
        """Writes null as ``null``: the round trip's default writes nothing after the colon."""

    Representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    yaml = YAML()  # round trip: comments, key order, flow style and quotes stay as they are
    yaml.Representer = Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a line the file does not fold
    yaml.indent(mapping=2, sequence=4, offset=2)  # the profiles' layout: "  key:" and "    - item"
    return yaml


def main(path: Path, write_file: bool) -> int:
    """Print the table of ``path``'s checkpoints; with ``write_file``, write the commits into it."""
    pins = resolve(params_mod.load(path).hub_refs())
    print(table(pins))
    if all(pin.commit is None for pin in pins):
        print(f"pin: no hub checkpoint in {path}: nothing to pin")
    elif write_file:
        changed = write(path, pins)
        print(f"pin: {changed} revision(s) written into {path}" if changed
              else f"pin: {path} already names these commits")
    elif any(pin.commit and pin.commit != pin.ref.revision for pin in pins):
        print(f"pin: `diffseg pin --params {path} --write` writes these commits into the file")
    return 0
