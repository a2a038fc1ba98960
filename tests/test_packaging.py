"""The sae.* namespace: the build configuration maps every package folder into it, and a wheel holds the code under
``sae/`` only (no top-level ``training``, ``export``, ... that would clash with a user's own modules)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("clients", "training", "repository", "export", "serving")


def configured() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"], setuptools["package-dir"]


def test_every_package_folder_is_in_the_namespace():
    folders = sorted(p.parent.relative_to(ROOT) for folder in ("sae", *FOLDERS)
                     for p in (ROOT / folder).rglob("__init__.py"))
    expected = sorted(".".join(f.parts) if f.parts[0] == "sae" else ".".join(("sae", *f.parts)) for f in folders)
    packages, package_dir = configured()
    assert sorted(packages) == expected
    assert package_dir == {"sae": "sae", **{f"sae.{folder}": folder for folder in FOLDERS}}


def test_python_m_sae_is_the_command():
    out = subprocess.run([sys.executable, "-m", "sae", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("data", "train", "export", "validate", "serve", "sample", "encode", "eval", "experiment", "demo"):
        assert f"    {command}" in out.stdout or f"{{{command}" in out.stdout or f",{command}" in out.stdout


def test_source_tree_and_editable_install_agree_on_where_sae_training_lives():
    code = "import sae.training, sae.clients.draw as d; print(sae.training.__file__); print(d.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    training, draw = out.stdout.split()
    assert Path(training) == ROOT / "training" / "__init__.py" and Path(draw) == ROOT / "clients" / "draw.py"


@pytest.mark.slow
def test_a_wheel_holds_the_code_under_sae_only(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                          "--wheel-dir", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and "No module named" in out.stderr:
        pytest.skip(f"no wheel builder here: {out.stderr.strip()[-200:]}")
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("sae_serving-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"sae"}
    for module in ("sae/cli/__init__.py", "sae/clients/triton_client.py", "sae/training/trainer.py",
                   "sae/repository/templates/sampler_model.py", "sae/export/model_set.py", "sae/serving/triton/__init__.py"):
        assert module in names
