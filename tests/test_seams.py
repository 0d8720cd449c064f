"""The seams hold, read from the source with `ast` (nothing is imported):

- only the storage package (`hotpath.server.storage`) imports SQLAlchemy, Alembic or the SQL
  backend (`hotpath.server.storage.sql`): everything else goes through the contracts;
- no import cycles among `hotpath` modules (module-level imports, not `TYPE_CHECKING` ones);
- dependencies point the way docs/architecture.md draws them: `hotpath.profiler` imports
  none of `server`, `agent`, `cli`, `gate`; `hotpath.agent` does not import `server`.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STORAGE = "hotpath.server.storage"
STORAGE_ONLY = ("sqlalchemy", "alembic", "hotpath.server.storage.sql")
NEVER = {
    "hotpath.profiler": ("hotpath.server", "hotpath.agent", "hotpath.cli", "hotpath.gate"),
    "hotpath.agent": ("hotpath.server",),
}


@dataclass(frozen=True)
class Import:
    target: str  # the module named, or for `from a import b`, "a.b" (resolved later)
    line: int
    module_level: bool  # executed when the module is imported (not in a function, not typing)


def source_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from pyproject's package-dir."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dirs: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in package_dirs.items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(p in ("node_modules", "__pycache__") for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool) -> list[Import]:
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, module_level) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.extend(Import(f"{base}.{a.name}", node.lineno, module_level) for a in node.names)
        for child in ast.iter_child_nodes(node):
            inside_def = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body
            )
            visit(child, module_level and not inside_def)

    visit(ast.parse(source), True)
    return found


def resolve(target: str, modules: dict[str, Path]) -> str:
    """The module an import reaches: `a.b.c` itself, else its nearest parent (`from a.b import
    c` where c is a name in a.b, or a third-party module)."""
    name = target
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or target


def all_imports() -> Iterator[tuple[str, Import]]:
    modules = source_modules()
    for module, path in modules.items():
        for imp in imports_of(path.read_text(), module, path.name == "__init__.py"):
            yield module, imp


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


# -- the checks -----------------------------------------------------------------------------


def test_only_the_storage_package_knows_sql() -> None:
    offenders = [
        f"{module} (line {imp.line}) imports {imp.target}"
        for module, imp in all_imports()
        if not within(module, STORAGE) and any(within(imp.target, t) for t in STORAGE_ONLY)
    ]
    assert offenders == [], "\n".join(offenders)


def test_dependencies_point_one_way() -> None:
    offenders = [
        f"{module} (line {imp.line}) imports {imp.target}"
        for module, imp in all_imports()
        for package, forbidden in NEVER.items()
        if within(module, package) and any(within(imp.target, f) for f in forbidden)
    ]
    assert offenders == [], "\n".join(offenders)


def test_no_import_cycles() -> None:
    modules = source_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, imp in all_imports():
        target = resolve(imp.target, modules)
        if imp.module_level and target in modules and target != module:
            graph[module].add(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# -- the checker itself finds what it looks for ------------------------------------------------


def test_the_checker_sees_lazy_typing_and_relative_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "import sqlalchemy\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from hotpath.server.storage.sql.tables import x\n"
        "def f():\n"
        "    import alembic\n"
    )
    found = {i.target: i.module_level for i in imports_of(source, "hotpath.server.m", False)}
    assert found["sqlalchemy"] is True and found["hotpath.server.sibling"] is True
    assert found["hotpath.server.storage.sql.tables.x"] is False
    assert found["alembic"] is False


def test_the_cycle_finder_reports_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
