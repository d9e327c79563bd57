"""No import cycle between our modules, counting the imports inside functions.

import-linter and Python itself see only what a module imports when it loads; an
import inside a function is still a dependency the moment the function runs, and two
modules that reach each other that way are one module in two files. This walks every
module of the rooms with `ast`, collects every import wherever it stands (blocks under
`if TYPE_CHECKING:` aside: annotations only, never run), and looks for cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("almanac", "batch", "catalog", "schemas", "tui")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every module a file imports, at any depth, but under `if TYPE_CHECKING:`."""

    def __init__(self, module: str, is_package: bool, ours: set[str]) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.ours = ours
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node.test):
            for child in node.orelse:  # the `else:` of a TYPE_CHECKING test does run
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` mod.
            if f"{base}.{alias.name}" in self.ours:
                self._add(f"{base}.{alias.name}")
            else:
                self._add(base)

    def _add(self, name: str) -> None:
        while name and name not in self.ours:  # `import a.b.c` of ours: its nearest module
            name = name.rpartition(".")[0]
        if name:
            self.found.add(name)


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    ours = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", ours)
        visitor.visit(ast.parse(path.read_text("utf-8"), str(path)))
        graph[name] = visitor.found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm,
    iterative: the graph is a few hundred modules deep at most, but recursion limits
    are not a test's business)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_sees_imports_inside_functions_and_skips_type_checking_blocks() -> None:
    graph = import_graph()
    # almanac.cli.batch_cmds imports the runner only inside its command, and
    # almanac.server.errors nothing of the TUI: both as the files say.
    assert "batch.run.runner" in graph["almanac.cli.batch_cmds"]
    assert "batch.run.result" not in graph["almanac.cli.batch_cmds"]  # TYPE_CHECKING only
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(planted) == [["a", "b", "c"]]


def test_no_import_cycle_between_our_modules_even_through_function_level_imports() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles (each a group of modules reaching each other): " + \
        "; ".join(" <-> ".join(c) for c in found)
