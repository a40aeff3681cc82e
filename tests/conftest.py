"""Shared fixtures: the real params schema, shrunk, and a repository-shaped work folder."""
from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a model hub: a hub id must fail fast rather than retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A temporary folder laid out like the repository root (stages use repo-relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(folder: Path, overrides: dict | None = None) -> Path:
    """The repository's params.yaml with nested ``overrides`` applied, written into ``folder``."""
    data = repo_params()
    _merge(data, overrides or {})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _merge(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


@pytest.fixture(scope="session")
def twins_dir(tmp_path_factory) -> Path:
    """Every offline twin, built once per test session by the twins stage's own code."""
    from diffseg.twins import generators as twin_builders
    from diffseg.twins import stage as twins

    out = tmp_path_factory.mktemp("twins") / "models" / "twins"
    twins.run(0, list(twin_builders.BUILDERS), out)
    return out


def link_twins(twins_dir: Path, workdir: Path) -> None:
    (workdir / "models").mkdir(exist_ok=True)
    os.symlink(twins_dir, workdir / "models" / "twins")


def schema_keys(cls, prefix: str = ""):
    """Dotted keys of every leaf field of a params dataclass; a list of sections stands for its first item and
    an optional section (``Optional[Lora]``) for its fields."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, hint = f"{prefix}{f.name}", hints[f.name]
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else None
        if dataclasses.is_dataclass(hint):
            yield from schema_keys(hint, f"{key}.")
        elif typing.get_origin(hint) is typing.Union and dataclasses.is_dataclass(inner):
            yield from schema_keys(inner, f"{key}.")
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(inner):
            yield from schema_keys(inner, f"{key}[0].")
        else:
            yield key
