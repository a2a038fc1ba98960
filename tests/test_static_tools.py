"""Static tools follow the ``sae.*`` namespace: mypy and pyright resolve every ``sae`` import of the package, the tests
and the benchmarks, and jedi's go-to-definition lands on the source file.

The imports are gathered from the code (ast) and written into one probe file, so that each tool resolves exactly the
statements the code holds without type-checking the whole tree (``make lint`` does that).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = (
    "sae",
    "core",
    "clients",
    "evaluation",
    "training",
    "repository",
    "export",
    "serving",
    "tests",
    "benchmarks",
)


def sae_import_statements(root: Path = ROOT) -> list[str]:
    """Every distinct ``import sae...`` / ``from sae... import name`` of the code, one statement per target."""
    statements: set[str] = set()
    for folder in CODE_FOLDERS:
        for path in (root / folder).rglob("*.py"):  # rglob does not enter the sae/X symlinks: each file once
            if path.relative_to(root).parts[:2] == ("tests", "data"):
                continue  # files of older layouts, kept as fixtures
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    statements.update(f"import {a.name}" for a in node.names if a.name.split(".")[0] == "sae")
                elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "sae":
                    statements.update(f"from {node.module} import {a.name}" for a in node.names if a.name != "*")
    return sorted(statements)


def write_probe(folder: Path) -> Path:
    probe = folder / "probe_sae_imports.py"
    probe.write_text("\n".join(sae_import_statements()) + "\n")
    return probe


def test_the_probe_holds_the_imports_of_every_layer():
    statements = sae_import_statements()
    assert len(statements) > 300
    for expected in (
        "from sae.core import wire",
        "from sae.clients.triton_client import SAEClient",
        "from sae.training.trainer import Trainer",
    ):
        assert expected in statements


def _mypy(probe: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file=",
            "--follow-imports=skip",
            "--no-error-summary",
            f"--cache-dir={cache}",
            "--python-version=3.11",
            str(probe),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )


def test_mypy_resolves_every_sae_import(tmp_path):
    pytest.importorskip("mypy", reason="mypy comes with the lint extra (make lint installs it)")
    done = _mypy(write_probe(tmp_path), tmp_path / "cache")
    unresolved = [line for line in done.stdout.splitlines() if "import-not-found" in line or "import-untyped" in line]
    assert unresolved == [], "\n".join(unresolved[:20])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_the_mypy_check_fails_on_an_import_that_does_not_resolve(tmp_path):
    pytest.importorskip("mypy", reason="mypy comes with the lint extra (make lint installs it)")
    probe = tmp_path / "probe_bad.py"
    probe.write_text("from sae.core import wire\nfrom sae.nowhere import thing\nimport sae.clients.no_such_module\n")
    done = _mypy(probe, tmp_path / "cache")
    assert 'module named "sae.nowhere"' in done.stdout and 'module named "sae.clients.no_such_module"' in done.stdout
    assert done.stdout.count("error:") == 2


def test_pyright_resolves_every_sae_import(tmp_path):
    pyright = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("basedpyright comes with the lint extra (make lint installs it)")
    probe = write_probe(tmp_path)
    (probe.parent / "bad.py").write_text("import sae.nowhere\n")  # the check must see an unresolved one
    config = {
        "include": [str(probe), str(probe.parent / "bad.py")],
        "typeCheckingMode": "off",
        "reportMissingImports": "error",
        "reportAttributeAccessIssue": "error",
        "extraPaths": [str(ROOT)],
        "pythonPath": sys.executable,
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [pyright, "--project", str(tmp_path / "pyrightconfig.json"), "--outputjson"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    diagnostics = json.loads(done.stdout)["generalDiagnostics"]
    problems = [f"{Path(d['file']).name}:{d['range']['start']['line'] + 1} {d['message']}" for d in diagnostics]
    assert problems == ['bad.py:1 Import "sae.nowhere" could not be resolved']


def test_jedi_goes_to_the_source_file_of_sae_clients_saeclient():
    jedi = pytest.importorskip("jedi", reason="jedi comes with the lint extra (make lint installs it)")
    code = "from sae.clients import SAEClient\nfrom sae.core.wire import ROLES\n"
    script = jedi.Script(code, path=ROOT / "probe.py", project=jedi.Project(ROOT))
    (client,) = script.goto(1, len("from sae.clients import "), follow_imports=True)
    (roles,) = script.goto(2, len("from sae.core.wire import "), follow_imports=True)
    assert client.module_path == ROOT / "sae" / "clients" / "triton_client.py" and client.type == "class"
    assert Path(client.module_path).resolve() == ROOT / "clients" / "triton_client.py"  # the file itself, no copy
    assert Path(roles.module_path).resolve() == ROOT / "core" / "wire.py"
