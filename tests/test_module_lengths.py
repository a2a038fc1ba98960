"""No module of the package is longer than MAX_LINES: a longer one holds more than one job and is split.

The allow-list names the files still over the limit; it can only shrink: a listed file that is gone or back under the
limit fails the test too, so that its entry is removed."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("sae", "core", "clients", "evaluation", "training", "repository", "export", "serving", "benchmarks")
MAX_LINES = 450

STILL_TOO_LONG: set[str] = set()  # none left; a file that must stay longer is named here with the reason


def line_counts() -> dict[str, int]:
    """Lines of every Python file under FOLDERS, by path relative to the repository root."""
    counts = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            with open(path, "rb") as f:
                counts[path.relative_to(ROOT).as_posix()] = sum(1 for _ in f)
    return counts


def test_the_folders_hold_python_files():
    counts = line_counts()
    assert {path.split("/")[0] for path in counts} == set(FOLDERS)


def test_no_module_is_longer_than_the_limit_unless_allowed():
    too_long = {path: n for path, n in line_counts().items() if n > MAX_LINES and path not in STILL_TOO_LONG}
    assert not too_long, f"split these into modules of one job each (at most {MAX_LINES} lines): {too_long}"


def test_the_allow_list_names_only_files_still_over_the_limit():
    counts = line_counts()
    stale = {path: counts.get(path) for path in STILL_TOO_LONG if counts.get(path, 0) <= MAX_LINES}
    assert not stale, f"remove these from STILL_TOO_LONG (gone, or no longer over {MAX_LINES} lines): {stale}"
