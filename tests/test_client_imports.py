"""The client side must work on a machine without torch."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import builtins, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this process")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import importlib, pkgutil, clients
names = [m.name for m in pkgutil.walk_packages(clients.__path__, "clients.")]
for name in names:
    importlib.import_module(name)
assert "torch" not in sys.modules
print(len(names))
"""


def test_every_clients_module_imports_where_torch_raises():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 5


def test_sample_command_needs_no_torch():
    code = BLOCK_TORCH.split("import importlib")[0] + "from serving.cli import build_parser, cmd_sample\n" \
        "import clients.triton_client, clients.png\nassert 'torch' not in sys.modules\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
