"""Static import graph of ``src/diffseg``: stage boundaries, cycles and the dvc.yaml deps each stage needs.

Nothing here imports the project: every module is read with ``ast``, so a broken or half-moved module
shows up as a ``SyntaxError`` naming its file rather than as a side effect of importing it. Imports
inside functions count like top-level ones, because the stages import their heavy code lazily.
"""
from __future__ import annotations

import ast
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "diffseg"
STAGES = ("source", "twins", "synthesize", "propose", "edit", "filter", "dataset", "detect", "report")
# The dispatcher must import every stage; it is neither base layer nor a stage.
ENTRY_POINT = "diffseg.cli"
# Modules a stage imports but must not list as a dvc.yaml dep.
EXCLUDED = {
    "diffseg.cli": "dispatch only: its own change must not re-run every stage",
    "diffseg.params": "the values are tracked by each stage's params: keys; the schema only validates",
    "diffseg.errors": "exception types only",
}
# Folders of code that a project module imports by a path from params (importlib), which no import statement
# shows: folder -> that module. A stage whose closure holds the module must depend on the folder, and no other.
DYNAMIC_ROOTS = {"detectors": "diffseg.detect.user_models"}


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Every module under ``src/diffseg`` by dotted name; a package maps to its ``__init__.py``."""
    files = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def is_empty(path: Path) -> bool:
    """True when the file holds no code beyond a docstring: changing it changes no behaviour."""
    body = ast.parse(path.read_text(), str(path)).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module (``a.b.attr`` -> ``a.b``)."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else None


def _imported(node: ast.Import | ast.ImportFrom, module: str, modules: dict[str, Path]) -> set[str]:
    """The project modules one import statement written in ``module`` loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
        # `from pkg import name` loads pkg.name only when name is a submodule, else just pkg.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return {found for name in names if (found := _known(name, modules))}


def _imports_in(tree: ast.AST, module: str, modules: dict[str, Path], *, in_functions: bool = True) -> set[str]:
    """Project modules imported anywhere under ``tree``; ``in_functions=False`` keeps what runs at import."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _imported(node, module, modules)
        elif in_functions or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(ast.iter_child_nodes(node))
    return found


def import_edges(src: Path = SRC) -> dict[str, set[str]]:
    """For every module, the project modules it imports anywhere in its body (explicit imports only)."""
    modules = module_files(src)
    return {m: _imports_in(ast.parse(p.read_text(), str(p)), m, modules) for m, p in modules.items()}


def stage_of(module: str) -> str | None:
    """The stage package a module belongs to, or None for the base layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def cross_stage_imports(src: Path = SRC) -> list[tuple[str, str]]:
    """(importer, imported) where a module imports a stage package other than its own."""
    return sorted((m, target) for m, targets in import_edges(src).items() if m != ENTRY_POINT
                  for target in targets if stage_of(target) not in (None, stage_of(m)))


def _reach(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, stack = set(), list(start)
    while stack:
        if (m := stack.pop()) not in seen:
            seen.add(m)
            stack.extend(edges.get(m, ()))
    return seen


def cycles(src: Path = SRC) -> list[tuple[str, ...]]:
    """Strongly connected groups of more than one module, and self-imports, sorted.

    Only written imports count: with the implicit parent-package loads, a package ``__init__`` that
    re-exports its submodules would read as a cycle, though Python handles that order fine.
    """
    edges = import_edges(src)
    reach = {m: _reach(edges, targets) for m, targets in edges.items()}
    groups = {tuple(sorted(n for n in reach[m] if m in reach[n])) for m in edges if m in reach[m]}
    return sorted(groups)


def _closure(edges: dict[str, set[str]], start: set[str], skip: set[str]) -> set[str]:
    """Modules loaded by importing ``start``: explicit imports plus every enclosing package, less ``skip``."""
    with_parents = {m: targets | {m.rsplit(".", k)[0] for k in range(1, m.count(".") + 1)}
                    for m, targets in edges.items()}
    return _reach(with_parents, start) - skip


def _handlers(cli: Path) -> tuple[dict[str, ast.FunctionDef], ast.Module]:
    """``COMMANDS`` of cli.py as subcommand -> handler function node, read without importing it."""
    tree = ast.parse(cli.read_text(), str(cli))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMANDS" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            return {k.value: functions[v.id] for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Name)}, tree
    raise LookupError(f"{cli}: no COMMANDS dict")


def _subcommand(cmd: str | list[str]) -> str | None:
    """``<sub>`` of ``diffseg [--params X] <sub> ...``; None for any other command."""
    words = shlex.split(cmd if isinstance(cmd, str) else cmd[0])
    if not words or words[0] != PACKAGE:
        return None
    words = words[1:]
    while words and words[0].startswith("--params"):
        words = words[1:] if "=" in words[0] else words[2:]
    return words[0] if words else None


def _analyse(repo_root: Path) -> tuple[list[tuple[str, set[str], list[str]]], dict[str, str], set[str]]:
    """Per ``diffseg`` stage of dvc.yaml as DVC resolves it: (name, closure, deps as written).

    Also returns every module's repo-relative path and the set of empty modules.
    """
    from dvc.repo import Repo

    src = repo_root / "src"
    modules, edges = module_files(src), import_edges(src)
    empty = {m for m, p in modules.items() if is_empty(p)}
    handlers, cli_tree = _handlers(modules[ENTRY_POINT])
    base = _imports_in(cli_tree, ENTRY_POINT, modules, in_functions=False)
    with Repo(str(repo_root)) as repo:
        # .name, not .addressing: the latter prefixes the dvc.yaml path whenever cwd is elsewhere.
        stages = [(s.name, _subcommand(s.cmd), [Path(d.def_path).as_posix().rstrip("/") for d in s.deps])
                  for s in repo.index.stages]
    found = []
    for name, sub, deps in stages:
        if sub is None:
            continue
        if sub not in handlers:
            raise LookupError(f"{name}: runs `diffseg {sub}`, which cli.py's COMMANDS lacks")
        start = base | _imports_in(handlers[sub], ENTRY_POINT, modules)
        found.append((name, _closure(edges, start, empty | set(EXCLUDED)), deps))
    return found, {m: p.relative_to(repo_root).as_posix() for m, p in modules.items()}, empty


def stage_closures(repo_root: Path = ROOT) -> dict[str, set[str]]:
    """Per dvc stage (``edit@t1``), the project modules its ``diffseg`` subcommand loads, exclusions removed."""
    return {name: closure for name, closure, _ in _analyse(repo_root)[0]}


def check_deps(repo_root: Path = ROOT) -> list[str]:
    """Where a stage's ``src/`` deps differ from its import closure: missing modules and stale deps."""
    stages, path_of, empty = _analyse(repo_root)
    problems = []
    for name, closure, deps in stages:
        needed = {path_of[m] for m in closure}
        src_deps = [d for d in deps if d.startswith("src/")]
        for path in sorted(needed):
            if not any(path == d or path.startswith(d + "/") for d in src_deps):
                problems.append(f"{name}: imports {path}, which its dvc.yaml deps do not cover")
        for dep in src_deps:
            if not (repo_root / dep).exists():
                problems.append(f"{name}: depends on {dep}, which does not exist")
            elif (repo_root / dep).is_dir():
                unused = sorted(p for m, p in path_of.items()
                                if p.startswith(dep + "/") and p not in needed and m not in empty)
                if unused:
                    problems.append(f"{name}: depends on {dep}/, but never imports {', '.join(unused)}")
            elif (excluded := next((m for m in EXCLUDED if path_of.get(m) == dep), None)):
                problems.append(f"{name}: depends on {dep}, which must not be a dep: {EXCLUDED[excluded]}")
            elif dep.endswith(".py") and dep not in needed:
                problems.append(f"{name}: depends on {dep}, but never imports it")
        problems += _dynamic_root_problems(name, closure, deps, repo_root, path_of)
    return problems


def _dynamic_root_problems(name: str, closure: set[str], deps: list[str], repo_root: Path,
                           path_of: dict[str, str]) -> list[str]:
    """A declared dynamic-import root is a dep exactly of the stages that load its importer."""
    problems = []
    for root, importer in DYNAMIC_ROOTS.items():
        if importer in closure and root not in deps:
            problems.append(f"{name}: imports {path_of[importer]}, which imports code from {root}/ by path; its "
                            f"dvc.yaml deps do not cover {root}")
        elif importer not in closure and root in deps:
            problems.append(f"{name}: depends on {root}/, but never imports {path_of[importer]}, which loads it")
        elif root in deps and not (repo_root / root / "__init__.py").is_file():
            problems.append(f"{name}: depends on {root}/, which is not a package ({root}/__init__.py is missing)")
    return problems
