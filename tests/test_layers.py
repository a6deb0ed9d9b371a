"""The house's layer rule, kept true by walking every import of the package (lazy ones included) with ``ast``.

Each layer imports only itself and the layers above it, so the metering core never reaches the sweep and the
sweep never prints a report; ``docs/architecture.md`` draws the same picture.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Top to bottom: a part may import parts of its own layer and of the layers above it, never below.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"units", "spend", "errors", "hardware", "io", "testing", "conf"}),
    frozenset({"budget", "sensors", "grid", "flops", "stats"}),
    frozenset({"trial"}),
    frozenset({"metering"}),
    frozenset({"sweep"}),
    frozenset({"callbacks", "reporting", "exporters"}),
    frozenset({"hydra_plugins"}),
)
LAYER_OF = {part: depth for depth, layer in enumerate(LAYERS) for part in layer}

# Parts that must stay free of some third-party packages, whatever the layer rule allows.
STDLIB = frozenset(sys.stdlib_module_names)
ALLOWED_EXTERNAL: dict[str, frozenset[str]] = {
    "stats": STDLIB | {"numpy", "scipy", "opda", "lightning_greenai.units"},  # pure statistics, as opda
}
FORBIDDEN_EXTERNAL: dict[str, frozenset[str]] = {
    "metering": frozenset({"lightning", "pytorch_lightning", "hydra", "omegaconf"}),  # the Lightning-free core
}


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and where."""

    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (for ``from a import b``: ``a.b`` when b is a module, else ``a``)
    where: str  # path:line
    type_only: bool = False  # under ``if TYPE_CHECKING:``: for annotations, never imported at run time

    @property
    def source_part(self) -> str:
        return part_of(self.module)

    @property
    def target_part(self) -> str:
        return part_of(self.target)


def part_of(module: str) -> str:
    """The layer part a dotted module belongs to: ``lightning_greenai.sweep.engine`` -> ``sweep``."""
    names = module.split(".")
    if names[0] == "hydra_plugins":
        return "hydra_plugins"
    if names[0] != "lightning_greenai":
        return names[0]
    return names[1] if len(names) > 1 else "lightning_greenai"


def _modules() -> Iterator[tuple[str, Path, bool]]:
    for top in ("lightning_greenai", "hydra_plugins"):
        for path in sorted((ROOT / top).rglob("*.py")):
            names = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = names[-1] == "__init__"
            if is_package:
                names.pop()
            yield ".".join(names), path, is_package


def _known_modules() -> set[str]:
    return {name for name, _, _ in _modules()}


def imports() -> list[Import]:
    """Every import in the package and the sweeper plugin, at any depth (functions, ``TYPE_CHECKING`` blocks)."""
    known = _known_modules()
    found: list[Import] = []
    for module, path, is_package in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, where, id(node) in type_only) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, *([node.module] if node.module else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in known else base
                    found.append(Import(module, target, where, id(node) in type_only))
    return found


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _ours(name: str) -> bool:
    return name.split(".")[0] in ("lightning_greenai", "hydra_plugins")


def test_every_part_has_a_layer() -> None:
    parts = {part_of(module) for module, _, _ in _modules()} - {"lightning_greenai"}
    assert parts <= set(LAYER_OF), (
        f"parts with no layer in LAYERS (add them, and to docs/architecture.md): {parts - set(LAYER_OF)}"
    )


def test_no_part_imports_a_layer_below_it() -> None:
    broken = sorted(
        {
            f"{i.where}: {i.source_part} -> {i.target_part} ({i.target})"
            for i in imports()
            if _ours(i.target)
            and i.source_part != "lightning_greenai"  # the package root re-exports the public API of every layer
            and i.target_part != "lightning_greenai"
            and LAYER_OF[i.target_part] > LAYER_OF[i.source_part]
        }
    )
    assert not broken, "imports against the layer rule (see docs/architecture.md):\n" + "\n".join(broken)


def test_nothing_imports_the_package_root() -> None:
    """A module importing ``lightning_greenai`` itself would import every layer, the ones below it included."""
    broken = [f"{i.where}: {i.module}" for i in imports() if i.target == "lightning_greenai" and i.module != i.target]
    assert not broken, "\n".join(broken)


def test_parts_form_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in imports():
        if (
            _ours(i.target)
            and i.source_part != i.target_part
            and "lightning_greenai" not in (i.source_part, i.target_part)
        ):
            graph[i.source_part].add(i.target_part)
    assert not _cycles(graph), f"cycles between parts: {_cycles(graph)}"


def test_modules_form_no_cycle() -> None:
    """No two modules import each other, lazily or not (a lazy import only hides a cycle).

    An import for annotations only does not count: the engine's steps (settle, resume, interrupts ...) name the
    ``BudgetSweep`` that calls them in their signatures, and the engine imports them; neither runs the other's import.
    """
    graph: dict[str, set[str]] = defaultdict(set)
    packages = {module for module, _, is_package in _modules() if is_package}
    for i in imports():
        # a package's __init__ re-exports its modules; importing the package is not a dependency on all of them
        if i.type_only or not _ours(i.target) or i.target == i.module:
            continue
        if i.target not in packages and i.module not in packages:
            graph[i.module].add(i.target)
    assert not _cycles(graph), f"import cycles between modules: {_cycles(graph)}"


@pytest.mark.parametrize("part", sorted(ALLOWED_EXTERNAL))
def test_part_imports_only_what_it_may(part: str) -> None:
    allowed = ALLOWED_EXTERNAL[part]

    def may(target: str) -> bool:
        if target == "__future__" or part_of(target) == part:
            return True
        return target.split(".")[0] in allowed or any(target.startswith(ours) for ours in allowed if "." in ours)

    broken = sorted({f"{i.where}: {i.target}" for i in imports() if i.source_part == part and not may(i.target)})
    assert not broken, f"{part} may import only {sorted(allowed - STDLIB)} and the standard library:\n" + "\n".join(
        broken
    )


@pytest.mark.parametrize("part", sorted(FORBIDDEN_EXTERNAL))
def test_part_stays_free_of(part: str) -> None:
    banned = FORBIDDEN_EXTERNAL[part]
    broken = [f"{i.where}: {i.target}" for i in imports() if i.source_part == part and i.target.split(".")[0] in banned]
    assert not broken, f"{part} must not import {sorted(banned)}:\n" + "\n".join(broken)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The checks above are only as good as the walk: a lazy import inside a function is an edge too."""
    found = {(i.module, i.target) for i in imports()}
    assert ("lightning_greenai.metering.meter", "lightning_greenai.sensors.discovery") in found  # lazy, in start()
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    settle = [i for i in imports() if i.module == "lightning_greenai.sweep.settle"]
    assert any(i.type_only and i.target == "lightning_greenai.sweep.engine" for i in settle)
    assert not any(i.type_only for i in settle if i.target == "lightning_greenai.trial.record")


MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def test_no_module_over_600_lines_and_no_function_over_80() -> None:
    """The house's size limits: a hub file or a long function is where the next feature would otherwise land."""
    too_long = []
    for _, path, _ in _modules():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "split these (see docs/architecture.md):\n" + "\n".join(too_long)
