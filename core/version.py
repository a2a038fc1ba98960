"""The package's version and, when it runs from a git checkout, the commit of that checkout.

Versions follow semantic versioning (CHANGELOG.md lists the releases). This is the one place the number is written:
pyproject.toml reads it, and so do ``sae.__version__``, ``sae --version``, the model card and the experiment cells.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__version__ = "0.2.0"

# The folder holding the package's root folders (clients/, training/, ...): a checkout's root, or site-packages/sae
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(short: bool = True) -> str | None:
    """The commit of the checkout holding this package (``-dirty`` with uncommitted changes to tracked files), or
    None when the package does not run from a git checkout (an installed wheel, a copied tree, no git)."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != SOURCE_ROOT:  # e.g. a wheel inside some other repository's virtualenv
        return None
    sha = _git("rev-parse", *(["--short"] if short else []), "HEAD")
    if not sha:
        return None
    return f"{sha}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else sha


def version_string() -> str:
    """``0.2.0``, or ``0.2.0 (commit 1a2b3c4-dirty)`` from a git checkout."""
    commit = git_commit()
    return f"{__version__} (commit {commit})" if commit else __version__
