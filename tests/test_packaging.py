"""The sae.* namespace: the build configuration maps every package folder into it, and a wheel holds the code under
``sae/`` only (no top-level ``training``, ``export``, ... that would clash with a user's own modules)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "clients", "evaluation", "training", "repository", "export", "serving")  # sae/X -> ../X


def configured_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def tree_packages() -> list[str]:
    """Every folder under ``sae/`` with an ``__init__.py``, through the symlinks, as a dotted name."""
    return sorted(
        ".".join(Path(folder).relative_to(ROOT).parts)
        for folder, _, files in os.walk(ROOT / "sae", followlinks=True)
        if "__init__.py" in files
    )


def test_every_package_folder_is_in_the_namespace():
    assert sorted(configured_packages()) == tree_packages()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in setuptools  # the symlinks are the mapping: one tree for setuptools and every tool


def test_each_root_folder_is_a_committed_relative_symlink_in_sae():
    for folder in FOLDERS:
        link = ROOT / "sae" / folder
        assert link.is_symlink() and str(link.readlink()) == f"../{folder}", link
    tracked = subprocess.run(
        ["git", "ls-files", "-s", *(f"sae/{f}" for f in FOLDERS)], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode == 0 and tracked.stdout:  # a git checkout (not an unpacked sdist): mode 120000 is a link
        assert sorted(line.split()[0] for line in tracked.stdout.splitlines()) == ["120000"] * len(FOLDERS)


def test_python_m_sae_is_the_command():
    out = subprocess.run([sys.executable, "-m", "sae", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("data", "train", "export", "validate", "serve", "sample", "encode", "eval", "experiment", "demo"):
        assert f"    {command}" in out.stdout or f"{{{command}" in out.stdout or f",{command}" in out.stdout


def test_source_tree_and_editable_install_agree_on_where_sae_training_lives():
    code = "import sae.training, sae.core.draw as d; print(sae.training.__file__); print(d.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    training, draw = out.stdout.split()
    assert (
        Path(training) == ROOT / "sae" / "training" / "__init__.py" and Path(draw) == ROOT / "sae" / "core" / "draw.py"
    )
    assert Path(draw).resolve() == ROOT / "core" / "draw.py"  # one file, at the root folder the design names


@pytest.mark.slow
def test_a_wheel_holds_the_code_under_sae_only(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0 and "No module named" in out.stderr:
        pytest.skip(f"no wheel builder here: {out.stderr.strip()[-200:]}")
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("sae_serving-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"sae"}
    for module in (
        "sae/cli/__init__.py",
        "sae/clients/triton_client.py",
        "sae/training/trainer.py",
        "sae/repository/templates/sampler_model.py",
        "sae/export/model_set.py",
        "sae/serving/triton/__init__.py",
        "sae/py.typed",
    ):
        assert module in names
    modules = {
        f"{package.replace('.', '/')}/{f.name}"
        for package in tree_packages()
        for f in (ROOT / package.replace(".", "/")).glob("*.py")
    }
    assert sorted(modules - set(names)) == []  # every module of the tree, through the symlinks
