"""The committed reproduction report is what its committed cells give: `sae experiment GRID --report-only`, run on a
copy of ``docs/reproduction/GRID``, rewrites every file of it byte for byte (REPORT.md, results.json, the figures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sae.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.name for p in (ROOT / "docs" / "reproduction").iterdir() if (p / "REPORT.md").is_file())


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_there_is_a_committed_report():
    assert "cpu-shapes3d" in COMMITTED


@pytest.mark.parametrize("grid", COMMITTED)
def test_committed_report_is_rebuilt_byte_for_byte_from_its_cells(grid, tmp_path, monkeypatch, capsys):
    relative = Path("docs") / "reproduction" / grid  # the --out the report's command line records
    shutil.copytree(ROOT / relative, tmp_path / relative)
    for generated in ("REPORT.md", "results.json"):
        (tmp_path / relative / generated).unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", grid, "--out", str(relative), "--report-only"]) == 0
    capsys.readouterr()
    rebuilt, committed = tree(tmp_path / relative), tree(ROOT / relative)
    assert sorted(rebuilt) == sorted(committed)
    changed = [name for name in committed if rebuilt[name] != committed[name]]
    assert not changed, f"rebuilt from the committed cells, these differ from the committed files: {changed}"
