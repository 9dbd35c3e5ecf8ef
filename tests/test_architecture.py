"""The package's shape: no import cycle, no oversized module or class without a stated reason,
no module under src/ that only the tests and benchmarks import.

The import graph is read from the source with `ast`: module-level and function-level imports,
absolute and relative, and string literals naming a package module (what `import_module`
receives), so a lazy import cannot hide a cycle. `python tests/test_architecture.py` prints
the graph as text.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "mobilenetv3"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
SIZE_REASON = "Size:"  # a module docstring line starting so says why it may be larger

# Helpers found in src/ though only tests and benchmarks used them (issue 13): they stay out.
MOVED_OUT = {
    "mobilenetv3.reference": None,
    "mobilenetv3.data.preprocess": ("resize_bilinear_tf1", "to_uint8_nhwc"),
    "mobilenetv3.runtime.evaluate": ("torch_forward",),
    "mobilenetv3.data.labels": ("is_synset",),
    "mobilenetv3.export": ("SUFFIXES",),
}


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text())


def _owner(dotted: str) -> str | None:
    """The package module `dotted` names (itself, or the module defining the attribute)."""
    while dotted and dotted not in modules():
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imported(name: str, node: ast.AST) -> Iterator[str]:
    """Dotted names one node imports (a `from x import y` names x.y where that is a module)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            yield full if full in modules() else base
    elif isinstance(node, ast.Constant) and node.value in modules() and "." in node.value:
        yield node.value  # e.g. import_module("mobilenetv3.export.onnx")


@cache
def import_graph() -> dict[str, tuple[str, ...]]:
    """Module -> the package modules it imports, anywhere in its source."""
    graph = {}
    for name in modules():
        targets = {_owner(d) for node in ast.walk(tree(name)) for d in _imported(name, node)}
        graph[name] = tuple(sorted(t for t in targets if t and t != name))
    return graph


def find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    return next((c for n in graph if n not in state and (c := visit(n))), None)


def _states_size_reason(name: str) -> bool:
    docstring = ast.get_docstring(tree(name)) or ""
    return any(line.strip().startswith(SIZE_REASON) for line in docstring.splitlines())


def oversized() -> list[str]:
    """Modules and classes over the limits whose module docstring gives no reason."""
    found = []
    for name, path in modules().items():
        if _states_size_reason(name):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    found.append(f"{name}.{node.name}: {length} lines")
    return found


def _top_level_names(name: str) -> Iterator[str]:
    for node in tree(name).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


def imported_by_no_module() -> list[str]:
    """Modules no other package module imports, other than packages and the entry points (the
    CLI finds its commands by name): what only tests or benchmarks could be using."""
    graph = import_graph()
    imported = {m for deps in graph.values() for m in deps}
    entry = (f"{PACKAGE}.__main__", f"{PACKAGE}.commands.")
    return [m for m in graph if m not in imported and modules()[m].name != "__init__.py"
            and not m.startswith(entry)]  # fmt: skip


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": ("b",), "b": ("c",), "c": ("a",), "d": ()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ("b",), "b": ()}) is None


def reachable(graph: dict[str, tuple[str, ...]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_engines_never_reach_an_exporter() -> None:
    """One direction: an exporter checks its file through the engines; the engines run files
    and deployment graphs and reach no exporter, not even through a lazy import."""
    graph = import_graph()
    assert "mobilenetv3.runtime.engines" in graph["mobilenetv3.export.check"]  # a lazy import
    assert "mobilenetv3.export.onnx" in graph["mobilenetv3.export"]  # a lazy import_module
    reached = reachable(graph, "mobilenetv3.runtime.engines")
    assert not {m for m in reached if m.startswith("mobilenetv3.export")}, sorted(reached)


def test_function_level_and_relative_imports_are_read() -> None:
    assert "mobilenetv3.quantize.ptq_torch" in import_graph()["mobilenetv3.quantize.qat"]
    source = ast.parse("def f():\n    from .deploy import input_sizes\n    from .. import atomic")
    found = {d for node in ast.walk(source) for d in _imported("mobilenetv3.core.layers", node)}
    assert found == {"mobilenetv3.core.deploy", "mobilenetv3.atomic"}


def test_modules_and_classes_are_small_or_say_why() -> None:
    assert not oversized(), "\n".join(oversized())


def test_every_module_serves_the_package() -> None:
    found = imported_by_no_module()
    assert not found, "imported by no package module (tests/benchmarks plumbing?): " + \
        ", ".join(found)  # fmt: skip


def test_moved_helpers_stay_out_of_src() -> None:
    for name, names in MOVED_OUT.items():
        if names is None:
            assert name not in modules(), f"{name} belongs to tests/benchmarks"
        else:
            present = set(_top_level_names(name)) & set(names)
            assert not present, f"{name}: {', '.join(sorted(present))} belong to tests/benchmarks"


def format_graph(graph: dict[str, tuple[str, ...]]) -> str:
    def short(module: str) -> str:
        return module.removeprefix(f"{PACKAGE}.")

    return "\n".join(f"{short(m)} -> {', '.join(map(short, deps)) or '-'}"
                     for m, deps in sorted(graph.items()))  # fmt: skip


if __name__ == "__main__":
    sys.stdout.write(format_graph(import_graph()) + "\n")
