"""Every file the package writes under a temporary name and renames goes through ``core/atomic.py`` (fsync of the
file and of its folder, the temporary file removed on error). The listed exceptions rename what is not a fresh
temporary file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("clients", "training", "export", "repository", "serving", "sae")
RENAMES_ALLOWED = {
    "core/atomic.py": "the one home of the temporary-file-then-rename write",
    "repository/install.py": "swaps whole model folders of a repository (staging, kept versions, rollback)",
    "clients/jobs/encode_job.py": "moves a resumable job's finished .partial file, written and fsynced chunk by chunk",
    "clients/jobs/ray_encode/shards.py": "moves the merged .partial file of the shards, as the encode job does",
}
RENAME = re.compile(r"\bos\.(replace|rename)\(|\.rename\(")


def test_no_module_renames_a_temporary_file_by_hand():
    offenders = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative in RENAMES_ALLOWED:
                continue
            offenders += [
                f"{relative}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1) if RENAME.search(line)
            ]
    assert not offenders, f"write through sae.core.atomic instead: {offenders}"


def test_the_allowed_renames_are_still_there():
    for relative in RENAMES_ALLOWED:
        assert RENAME.search((ROOT / relative).read_text()), f"{relative} no longer renames: drop it from the list"
