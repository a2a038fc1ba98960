"""Semantic versions: one number (``core/version.py``, read by pyproject.toml and ``sae.__version__``), the CHANGELOG's
latest release, and
``sae --version`` naming the commit when the package runs from a git checkout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import sae
from sae.cli import main
from sae.core import version as sae_version

ROOT = Path(__file__).resolve().parents[1]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_one_semantic_version_read_by_pyproject_and_released_in_the_changelog():
    assert SEMVER.match(sae.__version__) and sae.__version__ == sae_version.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sae.core.version.__version__"}
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert releases and releases[0] == sae.__version__, "the newest CHANGELOG entry is this version"


def test_version_names_the_commit_of_this_checkout(capsys):
    try:
        head = _git(ROOT, "rev-parse", "--short", "HEAD")
        dirty = bool(_git(ROOT, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"sae {sae.__version__} (commit {head}{'-dirty' if dirty else ''})"


def _checkout(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    (path / "a.txt").write_text("one\n")
    _git(path, "add", "a.txt")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return path


def test_commit_is_short_clean_or_dirty_and_absent_outside_a_checkout(tmp_path, monkeypatch):
    tree = _checkout(tmp_path / "tree")
    monkeypatch.setattr(sae_version, "SOURCE_ROOT", tree.resolve())
    head = _git(tree, "rev-parse", "--short", "HEAD")
    assert sae_version.git_commit() == head
    assert sae_version.git_commit(short=False) == _git(tree, "rev-parse", "HEAD")
    assert sae_version.version_string() == f"{sae.__version__} (commit {head})"
    (tree / "untracked.txt").write_text("new\n")
    assert sae_version.git_commit() == head, "untracked files do not make a tree dirty"
    (tree / "a.txt").write_text("two\n")
    assert sae_version.git_commit() == f"{head}-dirty"

    inside = tree / "site-packages"  # a package installed under some other checkout is not that checkout
    inside.mkdir()
    monkeypatch.setattr(sae_version, "SOURCE_ROOT", inside.resolve())
    assert sae_version.git_commit() is None
    monkeypatch.setattr(sae_version, "SOURCE_ROOT", tmp_path.resolve())
    assert sae_version.git_commit() is None and sae_version.version_string() == sae.__version__


def test_version_from_the_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "sae", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and out.stdout.startswith(f"sae {sae.__version__}") and not out.stderr
