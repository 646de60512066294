"""The shape of the code, checked from its imports (read with `ast`, nothing is run):
no import circles; the core names no higher package, not even in a string; nothing below the
shell imports it; no module is over ~400 lines unless it is one cohesive thing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "crawler", "docproc", "model", "flows")
HIGHER = {"pipeline": ("crawler", "docproc", "model", "flows"),
          "crawler": ("flows",), "docproc": ("flows",), "model": ("flows",)}
MAX_LINES = 400
# one cohesive thing each, longer than MAX_LINES on purpose
LONG_ON_PURPOSE = {"model/cllm.py": "the whole model in one readable file (as nanoGPT's)",
                   "pipeline/config.py": "one dataclass per config section, each with its checks",
                   "pipeline/shards.py": "the one shard format: its writer, manifest, reader and "
                                         "checks"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports (at the top, inside functions, for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package_parent(name: str) -> str:
    """A package's __init__ imports what it re-exports; its submodules import the package
    when they import a sibling, which is not a circle of code."""
    return name.rsplit(".", 1)[0]


def test_no_import_circles() -> None:
    graph = _graph()
    # `import a.b` executes a/__init__: an edge to the package itself is not a dependency
    graph = {m: {d for d in deps if d != _package_parent(m)} for m, deps in graph.items()}
    assert _cycles(graph) == []


def test_each_layer_imports_only_below_it() -> None:
    graph = _graph()
    wrong = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
             if d.split(".")[0] in HIGHER.get(m.split(".")[0], ())]
    assert wrong == []


def test_only_entry_points_import_the_shell() -> None:
    graph = _graph()
    wrong = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
             if d.startswith("flows.shell") and not m.startswith("flows.shell")]
    assert wrong == []


def test_the_core_names_no_higher_package_even_in_a_string() -> None:
    """No "crawler.run:cli" dispatch: a string in the core naming a module above it."""
    higher = {m for m in _modules() if m.split(".")[0] in HIGHER["pipeline"]}
    module_like = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")
    found = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for word in module_like.findall(node.value):
                    if word in higher:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {word}")
    assert found == []


def test_no_module_is_over_400_lines_unless_it_is_one_thing() -> None:
    long = {str(path.relative_to(REPO)): n for path in _modules().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(long) <= set(LONG_ON_PURPOSE), {k: v for k, v in long.items()
                                               if k not in LONG_ON_PURPOSE}
