"""The client side, and the repository code that the server side shares with it, must work without torch."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import builtins, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this process")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import importlib, pkgutil
names = []
for package in PACKAGES:
    module = importlib.import_module(package)
    names += [package] + [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
assert "torch" not in sys.modules
print(len(names))
"""


def imports_without_torch(*packages: str) -> subprocess.CompletedProcess:
    code = f"PACKAGES = {list(packages)!r}\n" + BLOCK_TORCH
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("package", "at_least"), [("sae.core", 10), ("sae.clients", 5), ("sae.repository", 6)])
def test_every_module_of_the_torch_free_packages_imports_where_torch_raises(package, at_least):
    out = imports_without_torch(package)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= at_least  # walked: the count of modules imported


def test_the_torch_block_catches_a_module_that_needs_torch():
    out = imports_without_torch("sae.training")
    assert out.returncode != 0 and "torch is blocked" in out.stderr


def test_sample_command_needs_no_torch():
    code = (
        BLOCK_TORCH.split("import importlib")[0]
        + "from sae.cli import build_parser; from sae.cli.client import cmd_sample\n"
        "import sae.clients.triton_client, sae.core.png\nassert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
