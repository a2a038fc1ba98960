"""The package's version and, when it runs from a git checkout, the commit of that checkout.

Versions follow semantic versioning (CHANGELOG.md lists the releases); ``sae.__version__`` is the one place the
number is written, and pyproject.toml reads it from there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sae import _SOURCE_ROOT, __version__


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(short: bool = True) -> str | None:
    """The commit of the checkout holding this package (``-dirty`` with uncommitted changes to tracked files), or
    None when the package does not run from a git checkout (an installed wheel, a copied tree, no git)."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != _SOURCE_ROOT:  # a wheel inside some other repository's virtualenv
        return None
    sha = _git("rev-parse", *(["--short"] if short else []), "HEAD")
    if not sha:
        return None
    return f"{sha}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else sha


def version_string() -> str:
    """``0.2.0``, or ``0.2.0 (commit 1a2b3c4-dirty)`` from a git checkout."""
    commit = git_commit()
    return f"{__version__} (commit {commit})" if commit else __version__


class VersionAction(argparse.Action):
    """``--version``: prints ``PROG VERSION (commit ...)`` and exits; git runs only when the flag is given."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version (and the commit, from a git checkout) and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(f"{parser.prog} {version_string()}\n", sys.stdout)  # as argparse's "version" does
        parser.exit()
