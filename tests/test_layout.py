"""The layout contract: a stage imports the base layer, never another stage; no import cycles; and each
stage's dvc.yaml deps are exactly the modules it imports (tests/import_graph.py reads the code statically).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

import import_graph as graph
from conftest import ROOT


def _fail_with(title: str, lines: list[str]) -> None:
    # pytest.fail without the traceback: the list itself is the diagnosis.
    if lines:
        pytest.fail(f"{title} ({len(lines)}):\n  " + "\n  ".join(lines), pytrace=False)


def test_no_stage_imports_another_stage():
    _fail_with("stage packages import other stages",
               [f"{a} -> {b}" for a, b in graph.cross_stage_imports()])


def test_no_import_cycles():
    _fail_with("import cycles (function-level imports included)",
               [" <-> ".join(group) for group in graph.cycles()])


def test_dvc_deps_are_the_import_closure():
    _fail_with("dvc.yaml deps differ from the import closures", graph.check_deps())


# --- the checker itself, on copies and on a synthetic package ---------------------------------------------

def _copy_repo(dest: Path) -> Path:
    """Just what DVC needs to resolve dvc.yaml, plus the sources; no git, no outputs."""
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for root in graph.DYNAMIC_ROOTS:
        shutil.copytree(ROOT / root, dest / root, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dest / name)
    (dest / ".dvc").mkdir()
    (dest / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return dest


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, set[str]]:
    """An unmodified copy and its problems, so each test asserts exactly what its change adds."""
    repo = _copy_repo(tmp_path_factory.mktemp("pristine"))
    return repo, set(graph.check_deps(repo))


@pytest.fixture
def repo(pristine, tmp_path) -> Path:
    shutil.copytree(pristine[0], tmp_path / "repo")
    return tmp_path / "repo"


def test_new_lazy_import_is_a_missing_dep(repo, pristine):
    _write(repo / "src/diffseg/probe.py", "VALUE = 1\n")
    with open(repo / "src/diffseg/edit/stage.py", "a") as f:
        f.write("\n\ndef _probe():\n    from diffseg import probe\n\n    return probe.VALUE\n")
    turns = yaml.safe_load((repo / "params.yaml").read_text())["turns"]

    added = set(graph.check_deps(repo)) - pristine[1]

    assert added == {f"edit@{turn}: imports src/diffseg/probe.py, which its dvc.yaml deps do not cover"
                     for turn in turns}


def test_unimported_dep_is_stale(repo, pristine):
    _write(repo / "src/diffseg/probe.py", "VALUE = 1\n")
    _write(repo / "src/diffseg/probes/__init__.py", '"""Docstring only: no dep needed."""\n')
    _write(repo / "src/diffseg/probes/one.py", "VALUE = 1\n")
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc["stages"]["report"]["deps"] += ["src/diffseg/probe.py", "src/diffseg/probes", "src/diffseg/params.py"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))

    added = set(graph.check_deps(repo)) - pristine[1]

    assert added == {"report: depends on src/diffseg/probe.py, but never imports it",
                     "report: depends on src/diffseg/probes/, but never imports src/diffseg/probes/one.py",
                     "report: depends on src/diffseg/params.py, which must not be a dep: the values are tracked "
                     "by each stage's params: keys; the schema only validates"}


def _detector_stages(dvc: dict) -> list[str]:
    """The stages that load a detector (their closures hold detect/user_models.py), by dvc.yaml block."""
    return [name for name, stage in dvc["stages"].items()
            if "src/diffseg/detect/user_models.py" in stage.get("do", stage).get("deps", [])]


def test_dynamic_import_root_is_a_dep_of_exactly_the_stages_that_load_it(repo, pristine):
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert _detector_stages(dvc) == ["train", "evaluate", "robustness", "crossgen", "baseline"]
    dvc["stages"]["evaluate"]["do"]["deps"].remove("detectors")
    dvc["stages"]["report"]["deps"].append("detectors")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    detectors = yaml.safe_load((repo / "params.yaml").read_text())["detect"]["detectors"]

    added = set(graph.check_deps(repo)) - pristine[1]

    assert added == {f"evaluate@{d}: imports src/diffseg/detect/user_models.py, which imports code from "
                     f"detectors/ by path; its dvc.yaml deps do not cover detectors" for d in detectors} | {
        "report: depends on detectors/, but never imports src/diffseg/detect/user_models.py, which loads it"}


def test_dynamic_import_root_must_be_a_package(repo, pristine):
    (repo / "detectors" / "__init__.py").unlink()
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = [f"{s}@{d}" for s in ("train", "evaluate", "robustness") for d in params["detect"]["detectors"]]
    stages += [f"crossgen@{g}" for g in params["crossgen"]["held_out"]]
    stages += [f"baseline@{b}" for b in dvc["stages"]["baseline"]["foreach"]]

    added = set(graph.check_deps(repo)) - pristine[1]

    assert added == {f"{s}: depends on detectors/, which is not a package (detectors/__init__.py is missing)"
                     for s in stages}


def test_cross_stage_import_and_cycle_are_reported(repo):
    before_cross, before_cycles = set(graph.cross_stage_imports(repo / "src")), set(graph.cycles(repo / "src"))
    _write(repo / "src/diffseg/source/probe.py", "VALUE = 1\n")
    _write(repo / "src/diffseg/report/probe.py", """\
        def load():
            from diffseg.source import probe

            return probe.VALUE
        """)
    _write(repo / "src/diffseg/probe_a.py", "from diffseg import probe_b\nfrom diffseg.report import probe\n")
    _write(repo / "src/diffseg/probe_b.py", "def f():\n    from . import probe_a\n")

    assert set(graph.cross_stage_imports(repo / "src")) - before_cross == {
        ("diffseg.probe_a", "diffseg.report.probe"), ("diffseg.report.probe", "diffseg.source.probe")}
    assert set(graph.cycles(repo / "src")) - before_cycles == {("diffseg.probe_a", "diffseg.probe_b")}


@pytest.fixture
def synthetic(tmp_path) -> Path:
    """A tiny ``diffseg`` package exercising every import form the parser resolves."""
    _write(tmp_path / "diffseg/__init__.py", '"""Docstring only."""\n')
    _write(tmp_path / "diffseg/base.py", "X = 1\n")
    _write(tmp_path / "diffseg/other/__init__.py", "")
    _write(tmp_path / "diffseg/other/deep.py", "import numpy\n")
    _write(tmp_path / "diffseg/pkg/__init__.py", "from .sub import Y\nNAME = 'pkg'\n")
    _write(tmp_path / "diffseg/pkg/sub.py", "Y = 2\n")
    _write(tmp_path / "diffseg/pkg/sibling.py", "from .. import base\n")  # a submodule, not a name
    _write(tmp_path / "diffseg/pkg/mod.py", """\
        import os
        from diffseg.pkg import sub
        from diffseg.base import X
        from diffseg.pkg import NAME
        from . import sibling
        from ..other import thing


        class Lazy:
            def method(self):
                import diffseg.other.deep as deep

                return deep
        """)
    return tmp_path


def test_parser_resolves_every_import_form(synthetic):
    assert graph.import_edges(synthetic) == {
        "diffseg": set(),
        "diffseg.base": set(),
        "diffseg.other": set(),
        "diffseg.other.deep": set(),
        "diffseg.pkg": {"diffseg.pkg.sub"},
        "diffseg.pkg.sub": set(),
        "diffseg.pkg.sibling": {"diffseg.base"},
        "diffseg.pkg.mod": {"diffseg.pkg.sub", "diffseg.base", "diffseg.pkg", "diffseg.pkg.sibling",
                            "diffseg.other", "diffseg.other.deep"},
    }


def test_closure_adds_non_empty_packages_only(synthetic):
    modules = graph.module_files(synthetic)
    empty = {m for m, p in modules.items() if graph.is_empty(p)}

    assert empty == {"diffseg", "diffseg.other"}
    # diffseg.other.deep loads diffseg.other and diffseg, both empty; diffseg.pkg has code.
    assert graph._closure(graph.import_edges(synthetic), {"diffseg.other.deep", "diffseg.pkg.sub"}, empty) == {
        "diffseg.other.deep", "diffseg.pkg.sub", "diffseg.pkg"}


@pytest.mark.parametrize("cmd, sub", [("diffseg edit t1", "edit"), ("diffseg --params p.yaml train x", "train"),
                                      ("diffseg --params=p.yaml source", "source"), ("python run.py", None)])
def test_subcommand_of_a_stage_command(cmd, sub):
    assert graph._subcommand(cmd) == sub
