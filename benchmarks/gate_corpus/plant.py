"""Plant a known slowdown in a library's own function, for the gate's real corpus.

The first statement of the named function gets one line of extra, pure work,
`sum(range(K))`, so every call costs a fixed extra time and nothing else changes: the
benchmarks that call the function get slower, by how much depends on how often they call it
and on what else they do (measured from many runs, see `truth.py`); the others do not.

    python benchmarks/gate_corpus/plant.py FILE FUNCTION K
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MARK = "# hotpath gate corpus: planted slowdown"


def plant(path: Path, function: str, work: int) -> None:
    """Insert `sum(range(work))` before the first statement of `function` ("name" for a def
    anywhere in the module, "Class.name" for a method); refuses a second plant, an unknown
    function and an ambiguous name."""
    text = path.read_text()
    if MARK in text:
        raise SystemExit(f"{path} already holds a planted slowdown")
    found = _functions(ast.parse(text), function)
    if len(found) != 1:
        raise SystemExit(f"{path}: {len(found)} functions named {function!r}, need exactly one")
    first = found[0].body[0]
    lines = text.splitlines(keepends=True)
    indent = " " * first.col_offset
    line = f"{indent}sum(range({work}))  {MARK}\n"
    # a docstring stays the first statement: plant after it
    at = first.end_lineno if _is_docstring(first) and len(found[0].body) > 1 else first.lineno - 1
    lines.insert(at, line)
    path.write_text("".join(lines))


def _functions(tree: ast.Module, dotted: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The defs named `dotted`: "name" anywhere, or "Class.name" in that class's body."""
    owner, _, name = dotted.rpartition(".")
    scopes = (
        [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == owner]
        if owner
        else [tree]
    )
    return [
        node
        for scope in scopes
        for node in (ast.iter_child_nodes(scope) if owner else ast.walk(scope))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    ]


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


if __name__ == "__main__":
    plant(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
