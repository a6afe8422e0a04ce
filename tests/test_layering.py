"""The layering rule of docs/architecture.md, checked on the source: imports point down, never in a circle.

Layers, bottom first (a module may import its own layer and the ones below):

0. types, errors, io, models, thresholds, alignment, draw, subject, quality, names: shared vocabulary and
   policies
1. detection, embedding: the stages
2. analyzer: detect -> align -> embed
3. gallery, recognizer: enrolment, storage, identification
4. evaluation, training, video, batch: built on recognition
5. cli, service (and ``python -m faceprint``): the front ends. Nothing imports them but themselves, and
   the CLI, whose ``serve`` and ``keys`` commands start and administer the service

Every import counts for the layers, a lazy one inside a function too (it is a dependency all the same);
cycles are looked for among module-level imports, which run at import time. The model registry's
``"module:attribute"`` strings (models.py) are names, not imports, and are not followed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "faceprint"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"types", "errors", "io", "models", "thresholds", "alignment", "draw", "subject", "quality", "names"}
    ),
    frozenset({"detection", "embedding"}),
    frozenset({"analyzer"}),
    frozenset({"gallery", "recognizer"}),
    frozenset({"evaluation", "training", "video", "batch"}),
    frozenset({"cli", "service", "__main__"}),
)
# Front end -> the packages that may import it.
FRONT_ENDS = {"cli": frozenset({"cli", "__main__"}), "service": frozenset({"service", "cli", "__main__"})}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a module of the package, never a name inside one)
    line: int
    module_level: bool  # runs at import time (not inside a function)


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(src: Path) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / ROOT).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The package-internal imports of one module, each resolved to the module it loads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, module_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield from resolve(alias.name, None, child.lineno, module_level)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package of this module
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = package[: len(package) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    yield from resolve(base, alias.name, child.lineno, module_level)
            else:
                inner = module_level and not isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                )
                yield from visit(child, inner)

    def resolve(base: str, attr: str | None, line: int, module_level: bool) -> Iterator[Import]:
        if base != ROOT and not base.startswith(ROOT + "."):
            return
        target = f"{base}.{attr}" if attr and f"{base}.{attr}" in modules else base
        if target != name:
            yield Import(name, target, line, module_level)

    yield from visit(tree, True)


def all_imports(src: Path) -> list[Import]:
    modules = package_modules(src)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def layer_of(module: str) -> int | None:
    """The layer of a module; None for the package root (``faceprint/__init__``: lazy re-exports only)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for rank, members in enumerate(LAYERS):
        if parts[1] in members:
            return rank
    raise AssertionError(f"{module}: not in any layer; add its package to LAYERS and docs/architecture.md")


def upward_imports(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is not None and target is not None and target > source:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} (layer {target} above {source})")
    return bad


def front_end_imports(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        target_pkg = imp.target.split(".")[1] if "." in imp.target else ""
        source_pkg = imp.source.split(".")[1] if "." in imp.source else ""
        if target_pkg in FRONT_ENDS and source_pkg not in FRONT_ENDS[target_pkg]:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} (nothing imports a front end)")
    return bad


def find_cycle(imports: list[Import]) -> list[str] | None:
    """One cycle of module-level imports (as the modules along it), or None. Depth-first search with
    three colours: reaching a module still on the stack closes a cycle."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.module_level:
            graph.setdefault(imp.source, set()).add(imp.target)
    on_stack: list[str] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        on_stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*on_stack[on_stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        on_stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


def is_package_init_edge(source: str, target: str) -> bool:
    """A package's ``__init__`` importing its own submodule (to re-export it): Python loads the package
    before any submodule anyway, so this edge closes no real cycle."""
    return target.startswith(source + ".")


def cycle_graph_imports(imports: list[Import]) -> list[Import]:
    return [imp for imp in imports if not is_package_init_edge(imp.source, imp.target)]


def test_no_import_cycle() -> None:
    cycle = find_cycle(cycle_graph_imports(all_imports(SRC)))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_layer_above_it() -> None:
    assert upward_imports(all_imports(SRC)) == []


def test_nothing_imports_the_cli_or_the_service() -> None:
    assert front_end_imports(all_imports(SRC)) == []


def test_every_package_has_a_layer() -> None:
    for name in package_modules(SRC):
        layer_of(name)  # raises for a package the rule does not place


# The checks themselves, on a copy of the tree with one bad import added: each must see it.


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(SRC / ROOT, tmp_path / ROOT, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _add_import(tree: Path, module: str, line: str, *, lazy: bool = False) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    text = path.read_text()
    if lazy:
        path.write_text(text + f"\n\ndef _added():\n    {line}\n")
    else:
        path.write_text(text + f"\n{line}\n")


def test_a_cycle_is_seen(tree: Path) -> None:
    assert find_cycle(cycle_graph_imports(all_imports(tree))) is None
    _add_import(tree, "faceprint.io", "import faceprint.types")
    _add_import(tree, "faceprint.types", "from faceprint import io")
    cycle = find_cycle(cycle_graph_imports(all_imports(tree)))
    assert cycle is not None and {"faceprint.io", "faceprint.types"} <= set(cycle)


def test_an_upward_import_is_seen_even_inside_a_function(tree: Path) -> None:
    _add_import(tree, "faceprint.analyzer", "from faceprint.gallery import Gallery", lazy=True)
    bad = upward_imports(all_imports(tree))
    assert len(bad) == 1 and bad[0].startswith("faceprint.analyzer:") and "faceprint.gallery" in bad[0]


def test_importing_a_front_end_is_seen(tree: Path) -> None:
    _add_import(tree, "faceprint.video.pipeline", "import faceprint.service.api", lazy=True)
    _add_import(tree, "faceprint.service.engine", "from faceprint.cli import common", lazy=True)
    bad = front_end_imports(all_imports(tree))
    assert [b.split(":")[0] for b in bad] == ["faceprint.service.engine", "faceprint.video.pipeline"]


def test_training_reached_from_runtime_is_seen(tree: Path) -> None:
    _add_import(tree, "faceprint.embedding.trained", "from faceprint.training import losses", lazy=True)
    bad = upward_imports(all_imports(tree))
    assert [b for b in bad if "faceprint.training.losses" in b]
