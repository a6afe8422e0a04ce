"""Every package the code imports is declared in pyproject.toml, in the flavour that needs it: the core
(detect, embed, enrol, identify, serve) imports only core dependencies at module level; evaluation and
training may use their extras; tests use dev's. A package that only arrives through another's
dependencies (scipy through scikit-learn, once) would break a fresh install of a smaller flavour."""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "faceprint"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Packages whose extras are not needed by the core, by the subpackage that may import them at module level.
EXTRA_OF_PACKAGE = {"evaluation": "eval", "training": "train"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in requirements}


def _declared(extra: str | None) -> set[str]:
    """Distributions installed by `faceprint[extra]` (the core for None), following self-references."""
    names = _names(PROJECT["dependencies"])
    todo = [extra] if extra else []
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in PROJECT["optional-dependencies"][name]:
            if req.startswith("faceprint["):
                todo += req[len("faceprint[") : req.index("]")].split(",")
            else:
                names |= _names([req])
    return names


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "faceprint"}


@functools.cache
def _owners() -> dict[str, list[str]]:
    """Import name -> distributions, read once. A wheel's top_level.txt can be incomplete (dlib-bin lists
    only its extension module, not the `dlib` package beside it), so the file lists' top-level names
    count too."""
    owners = {module: list(dists) for module, dists in packages_distributions().items()}
    for dist in distributions():
        for file in dist.files or ():
            top = file.parts[0]
            if top == ".." or top.endswith((".dist-info", ".data")) or top == "__pycache__":
                continue
            module = top.split(".")[0] if len(file.parts) == 1 else top
            names = owners.setdefault(module, [])
            if dist.metadata["Name"] not in names:
                names.append(dist.metadata["Name"])
    return owners


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    owners = _owners()
    return {module: {_norm(d) for d in owners.get(module, [])} for module in modules}


def _undeclared(paths: list[Path], allowed: set[str], *, module_level_only: bool) -> list[str]:
    problems = []
    for path in paths:
        for module, dists in _distributions(_imports(path, module_level_only=module_level_only)).items():
            if not dists & allowed:
                problems.append(f"{path.relative_to(REPO)}: {module} ({', '.join(sorted(dists)) or '?'})")
    return problems


def test_core_modules_import_only_core_dependencies_at_module_level() -> None:
    core = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in EXTRA_OF_PACKAGE]
    assert _undeclared(core, _declared(None), module_level_only=True) == []


def test_every_import_of_the_package_is_declared_somewhere() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        extra = EXTRA_OF_PACKAGE.get(path.relative_to(SRC).parts[0])
        problems += _undeclared([path], _declared(extra) | _declared("dev"), module_level_only=False)
        if extra:
            problems += _undeclared([path], _declared(extra), module_level_only=True)
    assert problems == []


def test_tests_import_only_dev_dependencies() -> None:
    local = {p.stem for p in (REPO / "tests").rglob("*.py")}
    paths = list((REPO / "tests").rglob("*.py"))
    problems = _undeclared(paths, _declared("dev"), module_level_only=False)
    assert [p for p in problems if p.rsplit(": ", 1)[1].split(" ")[0] not in local] == []
