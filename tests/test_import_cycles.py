"""No import cycle among the package's modules: every import counts, those inside functions too (a deferred import
hides a cycle from Python, not from the design); only the imports under ``if TYPE_CHECKING:`` do not run, and do not
count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# root folders (sae/X is a symlink to ../X), then sae/ itself: the namespace, the command line, the runner, the API
PACKAGES = ("core", "clients", "evaluation", "training", "repository", "export", "serving", "sae")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (``X/__init__.py`` is ``sae.X``; ``sae/`` itself
    holds the namespace and the command line)."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            files[".".join(parts if package == "sae" else ("sae", *parts))] = path
    return files


def package_of(module: str) -> str:
    """The root folder a module of the namespace lives in: ``sae.core.draw`` -> clients, ``sae.cli`` -> sae."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "sae"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file; ``from a import b`` is module ``a.b`` when that
    is a module, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    checker_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in checker_only:
            continue  # `if TYPE_CHECKING:` imports are the type checker's, never run
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
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
    assert "sae.training.checkpoint" in graph["sae.api"], "sae.api imports it inside load_model"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_among_the_package_modules(package):
    assert [c for c in cycles(import_graph()) if any(package_of(m) == package for m in c)] == []


# Which packages each package may import: the torch-free base (core: the wire contract, readers, errors), the client
# and the metrics on it, the trainer and the repository on those, export on them, the servers (and the bench that
# measures them) next, and the command line, the reproduction runner and the Python API on top.
LAYERS = {
    "core": set(),
    "clients": {"core"},
    "evaluation": {"core", "clients"},
    "training": {"core", "evaluation"},
    "repository": {"core"},
    "export": {"core", "training", "repository"},
    "serving": {"core", "clients", "evaluation", "training", "repository", "export"},
    "sae": {"core", "clients", "evaluation", "training", "repository", "export", "serving"},
}


def test_each_package_imports_only_the_layers_below_it():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if (top := package_of(target)) != (own := package_of(module)) and top not in LAYERS[own]
    )
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    graph = import_graph()
    assert any(package_of(t) == "training" for t in graph["sae.export.model_set"])
    assert "training" not in LAYERS["clients"] and package_of("sae.cli.train") == "sae"


BARE_NAMES = {p for p in PACKAGES if p != "sae"}


def test_every_import_goes_through_the_sae_namespace():
    """``training``, ``export``, ... are folders, not top-level modules: a user's own ``training.py`` must not clash."""
    bare = []
    for path in sorted([*ROOT.glob("*/**/*.py")]):
        # tests/data holds fixtures (files of older layouts), not code of the package
        parts = path.relative_to(ROOT).parts
        if parts[0] in (".venv", "docs", ".git") or parts[:2] == ("tests", "data"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                else []
            )
            bare += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in BARE_NAMES]
    assert bare == []


def test_the_graph_leaves_out_imports_for_the_type_checker_only(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sae.a\nimport sae.b\n")
    assert imported_modules("sae.m", module, {"sae.a", "sae.b"}) == {"sae.b"}
