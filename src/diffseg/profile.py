"""``diffseg profile``: switch ``params.yaml`` between the ready-made profiles in ``configs/``.

A profile is a complete params file, ``configs/<name>.yaml``: ``offline`` (the default, what ``params.yaml``
holds on main) and ``paper`` (paper scale). Switching copies the file over ``params.yaml`` atomically, so
DVC sees an ordinary params change (``dvc params diff`` lists it, ``dvc repro`` re-runs what it affects)::

    diffseg profile            # which profile params.yaml holds now ("custom" if it matches none)
    diffseg profile paper      # params.yaml <- configs/paper.yaml
    diffseg profile offline    # and back
    diffseg profile --save offline   # configs/offline.yaml <- params.yaml (after editing the default)

A ``params.yaml`` that matches no profile holds edits that a switch would lose; it is refused unless
``--force`` is given (or the edits are saved as a profile first).
"""
from __future__ import annotations

import re
from pathlib import Path

from diffseg import params as params_mod
from diffseg import records
from diffseg.errors import UserError

CONFIGS = Path("configs")
PARAMS = Path("params.yaml")


def available(configs: Path = CONFIGS) -> dict[str, Path]:
    return {path.stem: path for path in sorted(configs.glob("*.yaml"))}


def current(params: Path = PARAMS, configs: Path = CONFIGS) -> str | None:
    """The profile whose file ``params`` equals byte for byte, or None."""
    if not params.is_file():
        return None
    data = params.read_bytes()
    return next((name for name, path in available(configs).items() if path.read_bytes() == data), None)


def switch(name: str, params: Path = PARAMS, configs: Path = CONFIGS, force: bool = False) -> bool:
    """Copy ``configs/<name>.yaml`` over ``params``; return whether anything changed.

    The profile is validated by the params schema first, so a broken profile never lands in ``params``.
    """
    profiles = available(configs)
    if name not in profiles:
        raise UserError(f"no profile '{name}' (have: {', '.join(profiles) or 'none'} in {configs}/)")
    before = current(params, configs)
    if before == name:
        return False
    if params.is_file() and before is None and not force:
        raise UserError(f"{params} matches no profile in {configs}/ (local edits?); copy it to "
                        f"{configs}/<name>.yaml to keep it, or pass --force to overwrite it")
    params_mod.load(profiles[name])
    records.write_bytes(params, profiles[name].read_bytes())
    return True


def save(name: str, params: Path = PARAMS, configs: Path = CONFIGS) -> Path:
    """Write ``params`` as the profile ``configs/<name>.yaml`` (validated first); return its path."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise UserError(f"profile name '{name}': use letters, digits, '-' and '_' only")
    params_mod.load(params)
    target = configs / f"{name}.yaml"
    records.write_bytes(target, params.read_bytes())
    return target


def main(name: str | None, force: bool = False, save_as: str | None = None) -> int:
    """Show the current profile (``name`` None), switch to ``name``, or save params.yaml as ``save_as``."""
    if save_as is not None:
        print(f"profile: params.yaml saved as {save(save_as)}")
        return 0
    if name is None:
        print(current() or "custom (params.yaml matches no file in configs/)")
        return 0
    changed = switch(name, force=force)
    print(f"profile: params.yaml {'now holds' if changed else 'already holds'} configs/{name}.yaml"
          + ("; `dvc params diff` shows the change, `dvc repro` applies it" if changed else ""))
    return 0
