"""The architecture page and the README name only what exists.

Read against the code: every dotted ``sae.*`` name imports (a module, or a module and its attribute); every
root-relative path in a code span (``core/wire.py``, ``repository/templates/``) is in the tree; every signature shown
as a code span, ``register_model(name, regulariser=None)``, has the parameters ``inspect.signature`` reads from the
code (names in order, defaults); a call shown as a code span (``SAEClient.sample(..., image_dtype="uint8")``) binds to
it; and the Python examples import what they use and call it with parameters it takes.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import re
import subprocess
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/architecture.md", "README.md")
# The folders whose modules are sae.* (sae/X links to X), as tests/test_import_cycles.py lists them.
PACKAGE_FOLDERS = ("core", "clients", "evaluation", "training", "repository", "export", "serving", "sae")
# Names the documents show in a call's shape that are neither the package's nor an importable module's.
SYSTEM_CALLS = {"renameat2"}  # Linux's atomic exchange of two paths (repository/install.py calls it through ctypes)

FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"`((?:[^`\n]|\n(?!\n))+)`")  # a span may wrap a line, never a paragraph
DOTTED = re.compile(r"(?<![\w./-])sae(?:\.[A-Za-z_]\w*)+")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SHAPED = re.compile(r"@?(?P<name>[A-Za-z_][\w.]*)\((?P<args>.*)\)")
IDENT = re.compile(r"[A-Za-z_]\w*")
PATH_TOKEN = re.compile(r"[\w.\-/]+")


@dataclass(frozen=True)
class Document:
    """A markdown text split into its prose (fenced blocks removed), its inline code spans and its fenced blocks."""

    where: str
    text: str

    @property
    def prose(self) -> str:
        return FENCE.sub("", self.text)

    @property
    def spans(self) -> list[str]:
        """The inline code spans, a line break inside one read as a space (as markdown renders it)."""
        return [" ".join(span.split()) for span in SPAN.findall(self.prose)]

    @property
    def python_blocks(self) -> list[str]:
        return [m["body"] for m in FENCE.finditer(self.text) if m["lang"] == "python"]


# ---- the package: its modules and what they define --------------------------------------------------------------


@cache
def definitions() -> dict[str, tuple[str, ...]]:
    """``func``, ``Class`` and ``Class.method`` -> the dotted modules that define them at their top level."""
    found: dict[str, list[str]] = {}
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            module = ".".join(parts if folder == "sae" else ("sae", *parts))
            for node in ast.parse(path.read_text(), str(path)).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    found.setdefault(node.name, []).append(module)
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            found.setdefault(f"{node.name}.{item.name}", []).append(module)
    return {name: tuple(modules) for name, modules in found.items()}


class Missing(LookupError):
    """A dotted name that does not import."""


def resolve(dotted: str) -> object:
    """``sae.x.y`` or ``sae.x.y.Name.attr`` -> the module or attribute; :class:`Missing` when it does not exist."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # this prefix is no module: try a shorter one
            raise  # the module exists but needs something absent: not the document's fault
        for attr in parts[cut:]:
            if not hasattr(found, attr):
                raise Missing(f"`{dotted}`: {'.'.join(parts[:cut])} has no attribute {attr!r}")
            found = getattr(found, attr)
        return found
    raise Missing(f"`{dotted}` does not import")


def candidates(name: str) -> list[object]:
    """The package's callables a name in a code span means: a dotted ``sae.*`` path, or ``func`` / ``Class`` /
    ``Class.method`` as the package defines it (every definition of that name, where several modules have one)."""
    if name.startswith("sae."):
        return [resolve(name)]
    found = []
    for module in definitions().get(name, ()):
        target: object = importlib.import_module(module)
        for attr in name.split("."):
            target = getattr(target, attr)
        found.append(target)
    return found


def is_external(name: str) -> bool:
    """A call of something outside the package: a builtin, an importable module's attribute or a system call."""
    first = name.split(".")[0]
    return (
        first in SYSTEM_CALLS
        or hasattr(builtins, first)
        or (first != "sae" and importlib.util.find_spec(first) is not None)
    )


def takes_self(target: object) -> bool:
    """A method read off its class (``SAEClient.sample``): its first parameter is the instance."""
    if not inspect.isfunction(target) or "." not in target.__qualname__:
        return False
    first = next(iter(inspect.signature(target).parameters), None)
    return first in ("self", "cls")


def parameters(target: object) -> list[str]:
    """The parameters of a function, method or class as a document writes them: ``name``, ``name=default``,
    ``*args``, ``**kwargs``, and ``*`` / ``/`` where the kinds change; a method's ``self`` left out."""
    params = list(inspect.signature(target).parameters.values())[1 if takes_self(target) else 0 :]
    written = []
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not any(q.kind in (q.VAR_POSITIONAL, q.KEYWORD_ONLY) for q in params[:i]):
            written.append("*")
        if p.kind is p.VAR_POSITIONAL:
            written.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            written.append(f"**{p.name}")
        else:
            written.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            written.append("/")
    return written


# ---- code spans in the shape of a call ----------------------------------------------------------------------------


def split_arguments(text: str) -> list[str]:
    """``a, b=f(1, 2), c`` -> ``["a", "b=f(1, 2)", "c"]``: commas outside brackets and strings."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    return [*pieces, last] if last or pieces else pieces


def default_of(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(text) from None


def signature_piece(piece: str) -> str | None:
    """A piece of a signature written as the code writes it (``b=1.0`` for ``b=1e0``), or None where the piece is a
    call's argument (a value, not a parameter)."""
    if piece in ("...", "*", "/") or re.fullmatch(r"\*{1,2}[A-Za-z_]\w*", piece) or IDENT.fullmatch(piece):
        return piece
    name, eq, value = piece.partition("=")
    if eq and IDENT.fullmatch(name.strip()):
        try:
            return f"{name.strip()}={default_of(value.strip())!r}"
        except ValueError:
            return None
    return None


def in_order(shown: list[str], real: list[str]) -> bool:
    """``shown`` is ``real``, or with ``...`` for parameters left out, a part of it in the same order."""
    if "..." not in shown:
        return shown == real
    rest = iter(real)
    return all(any(piece == p for p in rest) for piece in shown if piece != "...")


def binds(shown: list[str], target: object) -> bool:
    """A call's arguments bind to ``target``'s signature (``...``: arguments left out)."""
    elided = "..." in shown
    positional, keywords = 0, {}
    for piece in shown:
        name, eq, _ = piece.partition("=")
        if piece == "...":
            continue
        if piece.startswith("*"):
            return True  # unpacked arguments: nothing to count
        if eq and IDENT.fullmatch(name.strip()):
            keywords[name.strip()] = None
        else:
            positional += 0 if keywords else 1
    try:
        signature = inspect.signature(target)
        (signature.bind_partial if elided else signature.bind)(*[None] * (positional + takes_self(target)), **keywords)
    except TypeError:
        return False
    return True


def span_problems(span: str) -> list[str]:
    """What is wrong with one code span in the shape of ``name(...)``: the name means nothing, or neither its
    signature nor, as a call, its arguments fit what the package defines."""
    shaped = SHAPED.fullmatch(span.strip())
    if not shaped:
        return []
    name, pieces = shaped["name"], split_arguments(shaped["args"])
    try:
        targets = [t for t in candidates(name) if callable(t)]
    except Missing as error:
        return [str(error)]
    if not targets:
        return [] if is_external(name) else [f"`{span}`: {name} is nothing the package defines"]
    as_signature = [signature_piece(p) for p in pieces]
    if all(p is not None for p in as_signature):
        if any(in_order(as_signature, parameters(t)) for t in targets):
            return []
        real = " or ".join(f"{name}({', '.join(parameters(t))})" for t in targets)
        return [f"`{span}`: the code has {real}"]
    if any(binds(pieces, t) for t in targets):
        return []
    real = " or ".join(f"{name}({', '.join(parameters(t))})" for t in targets)
    return [f"`{span}`: its arguments do not fit {real}"]


# ---- paths, dotted names and examples ----------------------------------------------------------------------------


@cache
def top_level() -> frozenset[str]:
    """The tree's first path components as git tracks them (``core``, ``docs``, ``README.md``, ...)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return frozenset(line.split("/")[0] for line in listed.splitlines())


def root_paths(spans: list[str]) -> list[str]:
    """The root-relative paths in the code spans: tokens with a ``/`` whose first component is in the tree
    (``core/wire.py``, ``tests/test_x.py`` inside ``pytest -s tests/test_x.py``), not ``RUN/...`` or ``out/...``."""
    paths = []
    for span in spans:
        for token in span.split():
            token = token.rstrip(",;:")
            if "/" in token and PATH_TOKEN.fullmatch(token) and token.split("/")[0] in top_level():
                paths.append(token)
    return paths


def path_problems(path: str) -> list[str]:
    target = ROOT / path
    if path.endswith("/") and not target.is_dir():
        return [f"`{path}`: no such folder"]
    return [] if target.exists() else [f"`{path}`: no such file"]


def imported(module_name: str, name: str) -> object:
    """What ``from module_name import name`` binds: a name of the module's lazy API (``sae.export``, the function
    ``sae.__getattr__`` returns, not the folder of that name), else its attribute or submodule."""
    module = importlib.import_module(module_name)
    if name in getattr(module, "__all__", ()) and hasattr(module, "__getattr__"):
        return module.__getattr__(name)
    return resolve(f"{module_name}.{name}")


def example_problems(code: str) -> list[str]:
    """A Python example's ``from sae... import`` names import, and its calls of them (and of the methods of an
    object a ``with`` binds from one) bind to their signatures."""
    tree = ast.parse(code)
    names: dict[str, object] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sae":
            for alias in node.names:
                try:
                    names[alias.asname or alias.name] = imported(node.module, alias.name)
                except Missing as error:
                    problems.append(str(error))
    instances: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call, target = item.context_expr, item.optional_vars
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and isinstance(target, ast.Name)
                    and inspect.isclass(names.get(call.func.id))
                ):
                    instances[target.id] = names[call.func.id]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, target = node.func, None
        if isinstance(func, ast.Name) and func.id in names:
            target = names[func.id]
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in instances:
            cls = instances[func.value.id]
            target = getattr(cls, func.attr, None)
            if target is None:
                problems.append(f"`{ast.unparse(node)}`: {cls.__name__} has no {func.attr}")
                continue
            if inspect.isfunction(inspect.getattr_static(cls, func.attr)):
                target = partial(target, None)  # called on an instance: self is bound
        if target is None:
            continue
        try:
            inspect.signature(target).bind(*node.args, **{k.arg: k.value for k in node.keywords if k.arg})
        except TypeError as error:
            problems.append(f"`{ast.unparse(node)}`: {error}")
    return problems


def doc_problems(document: Document) -> list[str]:
    """Every stale name, path, signature and example in one document, each as one line naming it."""
    problems = []
    for dotted in sorted(set(DOTTED.findall(document.text))):
        try:
            resolve(dotted)
        except Missing as error:
            problems.append(str(error))
    for path in sorted(set(root_paths(document.spans))):
        problems += path_problems(path)
    base = (ROOT / document.where).parent
    for link in sorted(set(LINK.findall(document.prose))):
        if not re.match(r"[a-z]+:|#", link) and not (base / link.split("#")[0]).exists():
            problems.append(f"link ({link}): no such file")
    for span in dict.fromkeys(document.spans):
        problems += span_problems(span)
    for block in document.python_blocks:
        problems += example_problems(block)
    return [f"{document.where}: {p}" for p in problems]


def read(where: str) -> Document:
    return Document(where, (ROOT / where).read_text())


# ---- the tests ---------------------------------------------------------------------------------------------------

INLINE = """
The wire contract is `sae.core.wire` (`sae.core.wire.to_float_images`), not `sae.core.wires` nor
`sae.core.wire.NO_SUCH_NAME`; it lives in `core/wire.py`, not `core/wiring.py`, and `repository/templates/` is a
folder while `core/wire.py/` is not. Register with `register_model(name, regulariser=None)`, not with
`register_model(name, config=None)` nor with `@register_model("kind", config=KindConfig, ...)`, and call
`SAEClient.sample(..., seed=0)` or `SAEClient.sample(64, draw="distinct")`, not
`SAEClient.sample(...,
seeds=0)`. `registr_model(name)` is a typo.
`torch.load(path, weights_only=True)` is torch's, and `RUN/checkpoints/last.pt` a placeholder.

```python
from sae.clients import SAEClient, NoSuchClient
with SAEClient("127.0.0.1:8001", model="sae12") as client:
    client.sample(64, seed=0)
    client.sample(64, seeds=0)
```
"""


def test_the_checker_passes_the_good_entries_and_names_each_bad_one():
    problems = doc_problems(Document("inline.md", INLINE))
    named = [p.split(": ", 1)[1].split(":")[0] for p in problems]
    assert named == [
        "`sae.core.wire.NO_SUCH_NAME`",
        "`sae.core.wires`",
        "`core/wire.py/`",
        "`core/wiring.py`",
        "`register_model(name, config=None)`",
        '`@register_model("kind", config=KindConfig, ...)`',
        "`SAEClient.sample(..., seeds=0)`",
        "`registr_model(name)`",
        "`sae.clients.NoSuchClient`",
        "`client.sample(64, seeds=0)`",
    ], problems
    assert "regulariser=None" in problems[4]  # the message shows the real signature


def test_signatures_compare_names_in_order_and_defaults():
    def f(a, b=1, *, c="x", **rest):
        pass

    assert parameters(f) == ["a", "b=1", "*", "c='x'", "**rest"]
    assert in_order(["a", "b=1", "*", "c='x'", "**rest"], parameters(f))
    assert not in_order(["b=1", "a", "*", "c='x'", "**rest"], parameters(f))
    assert not in_order(["a", "b=2", "*", "c='x'", "**rest"], parameters(f))
    assert in_order(["...", "c='x'", "..."], parameters(f)) and not in_order(["c='x'", "...", "a"], parameters(f))
    assert signature_piece('c="x"') == "c='x'" and signature_piece("64") is None


@pytest.mark.parametrize("where", DOCS)
def test_the_document_names_only_what_exists(where):
    assert doc_problems(read(where)) == []


@pytest.mark.parametrize("where", DOCS)
def test_the_document_gives_the_checker_something_to_check(where):
    document = read(where)
    assert len(set(DOTTED.findall(document.text))) >= 5
    assert len(set(root_paths(document.spans))) >= 15
    assert any(SHAPED.fullmatch(span) and candidates(SHAPED.fullmatch(span)["name"]) for span in document.spans)


def test_the_readme_python_examples_are_checked():
    blocks = read("README.md").python_blocks
    assert len(blocks) >= 3 and all("from sae" in block for block in blocks)
