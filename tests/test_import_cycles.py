"""No import cycle among the package's modules: every import counts, those inside functions too (a deferred import
hides a cycle from Python, not from the design)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clients", "training", "repository", "export", "serving", "sae")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (``pkg/__init__.py`` is ``pkg``)."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file; ``from a import b`` is module ``a.b`` when that
    is a module, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
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
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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


def test_the_cycle_finder_finds_a_cycle_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "training.checkpoint" in graph["serving.api"], "serving.api imports it inside load_model"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_among_the_package_modules(package):
    assert [c for c in cycles(import_graph()) if any(m.split(".")[0] == package for m in c)] == []


# Which packages each package may import: the torch-free base (clients: readers, the wire contract, the client), the
# trainer and the repository on it, export on those, and the command line and servers on top. The one exception is
# the bench's in-process baseline (clients.bench), which runs the very files of a repository the server loads.
LAYERS = {
    "clients": set(),
    "training": {"clients"},
    "repository": {"clients"},
    "export": {"clients", "training", "repository"},
    "serving": {"clients", "training", "repository", "export"},
    "sae": {"clients", "training", "repository", "export", "serving"},  # the namespace and the command line
}
EXCEPTIONS = {("clients.bench", "repository")}


def test_each_package_imports_only_the_layers_below_it():
    upward = sorted(f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
                    if (top := target.split(".")[0]) != (own := module.split(".")[0]) and top not in LAYERS[own]
                    and not any(module.startswith(prefix) and top == layer for prefix, layer in EXCEPTIONS))
    assert upward == []
