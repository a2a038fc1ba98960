"""The ``tritonserver`` binary, python backend and stub inside the installed ``nvidia-pytriton`` wheel, and the
environment the server needs to run them on this Python."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from sae.core.errors import MissingDependencyError

_STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    binary: Path  # bin/tritonserver
    python_backend_dir: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for the running Python version
    libs_dir: Path  # the wheel's bundled shared libraries (nvidia_pytriton.libs)


def find_tritonserver() -> TritonInstall:
    """Locate the Triton binary, python backend and stub inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "tritonserver not found: the package nvidia-pytriton is not installed in this environment "
            f"({sys.prefix}). Install the serving extra: pip install 'sae-serving[serve]'."
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    libs_dir = package.parent / "nvidia_pytriton.libs"
    if not libs_dir.is_dir():  # editable/source installs keep them here
        libs_dir = root / "external_libs"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend_dir=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / _STUB_NAME,
        libs_dir=libs_dir,
    )
    required = [install.binary, install.python_backend_dir / "libtriton_python.so", install.stub]
    missing = [str(path) for path in required if not path.exists()]
    if missing:
        raise MissingDependencyError(
            f"incomplete nvidia-pytriton install under {package} (Python {version}); missing: {', '.join(missing)}"
        )
    return install


def _link_python_backend(install: TritonInstall, target: Path) -> None:
    """Make ``target`` a python backend directory: the backend library, its utils and the stub, side by side."""
    target.mkdir(parents=True)
    for source in sorted(install.python_backend_dir.iterdir()):
        if source.is_file():
            (target / source.name).symlink_to(source)
    (target / _STUB_NAME).symlink_to(install.stub)


def _server_env(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    # The stub runs the models with the `python3` first on PATH (it reads that venv's pyvenv.cfg) ...
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.prefix) / "bin"), env.get("PATH")) if p)
    # ... and needs this Python's shared libpython.
    libdirs = (sysconfig.get_config_var("LIBDIR"), str(install.libs_dir), env.get("LD_LIBRARY_PATH"))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    return env
