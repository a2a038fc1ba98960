"""The package's one import namespace: ``sae.training``, ``sae.export``, ``sae.repository``, ``sae.serving`` and
``sae.clients``, and the `sae` command (``sae.cli``; ``python -m sae``, ``torchrun -m sae train``).

The code's folders stay at the repository's root, as the design lays them out. An installed wheel holds them inside
this package (``package-dir`` in pyproject.toml); in a source tree, or an editable install, this package's path
reaches the root, so that ``sae.training`` is the root's ``training/``.
"""
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "training").is_dir() and (_SOURCE_ROOT / "training" / "__init__.py").is_file():
    __path__.append(str(_SOURCE_ROOT))  # noqa: F821 (a package's __path__)


def __getattr__(name: str):
    if name == "__version__":  # written once, in clients/version.py (imported on use: `import sae` stays light)
        from sae.clients.version import __version__

        return __version__
    raise AttributeError(f"module 'sae' has no attribute {name!r}")
