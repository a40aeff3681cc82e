"""Per-process memos of two things DVC 3.67 recomputes for every stage, to measure what they cost.

* ``dirs``: one walk and hash of each directory per process and role (an out is hashed into the cache, a dep
  is not, so a directory that is both is walked twice). ``dvc/output.py:Output._get_hash_meta`` calls
  ``dvc_data/hashfile/build.py:build`` -> ``_build_tree`` once per dep or out, so a directory that is a dep of
  15 stages is walked, ignore-matched and looked up in the state database file by file 15 times.
* ``params``: one parse of each params file per process. ``dvc/dependency/param.py:read_param_file`` calls
  ``load_path`` once per stage that has params, so ``params.yaml`` is parsed once per stage.

Both are exact only while nothing changes between stages, as in a no-op ``dvc repro``: benchmark use only
(``bench_dvc_noop.py`` loads this module through a ``sitecustomize.py`` in the measured process).
"""
from __future__ import annotations

import copy
from typing import Callable

KINDS = ("dirs", "params")


def install(kinds: set[str]) -> Callable[[], None]:
    """Patch DVC for ``kinds`` (a subset of KINDS); returns the function that undoes it."""
    import dvc.dependency.param as param
    import dvc_data.hashfile.build as build

    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown memo kinds {sorted(unknown)}; known: {KINDS}")
    undo = []
    if "dirs" in kinds:
        build_tree, trees = build._build_tree, {}

        def memo_build_tree(path, fs, fs_info, name, **kwargs):
            key = (path, name, kwargs.get("dry_run"))
            if key not in trees:
                trees[key] = build_tree(path, fs, fs_info, name, **kwargs)
            return trees[key]

        build._build_tree = memo_build_tree
        undo.append(lambda: setattr(build, "_build_tree", build_tree))
    if "params" in kinds:
        load_path, parsed = param.load_path, {}

        def memo_load_path(path, fs, **kwargs):
            if path not in parsed:
                parsed[path] = load_path(path, fs, **kwargs)
            return copy.deepcopy(parsed[path])  # callers may change what they get

        param.load_path = memo_load_path
        undo.append(lambda: setattr(param, "load_path", load_path))
    return lambda: [step() for step in reversed(undo)] and None
