"""What an install leaves in its staging folder so that a kill at any moment can be finished by the next one.

Before the first model folder moves, the install writes its plan into the staging folder: the models in order and
each staged folder's inode. A rename keeps a folder's inode, so after a kill each model's new folder is found
wherever the kill left it: already in the repository, still staged, or staged while the repository lacks the model
(between the two renames used where ``RENAME_EXCHANGE`` is unsupported).

The process that makes a staging folder holds a ``flock`` on it for as long as it uses it; the kernel drops that lock
when the process dies, however it dies, so a staging folder whose lock can be taken belongs to no live install.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sae.core.atomic import write_text_atomic

PLAN_FILE = "install-plan.json"


@dataclass(frozen=True)
class InstallPlan:
    """One install into ``repo``: the staged folders to move in (leaves first) and the folders to retire."""

    repo: str  # the repository, resolved
    models: list[str]  # the staged models, in the order they move in
    staged: dict[str, int]  # model -> inode of its staged folder
    retired: dict[str, int]  # model -> inode of the repository folder the install moves out


def inode(path: Path) -> int | None:
    """The inode of ``path`` itself (None where nothing is there)."""
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def write_plan(staging: Path, plan: InstallPlan) -> None:
    write_text_atomic(staging / PLAN_FILE, json.dumps(asdict(plan)))


def read_plan(staging: Path) -> InstallPlan | None:
    """The plan of the install that used ``staging``; None before it was written or after the install ended."""
    try:
        fields = json.loads((staging / PLAN_FILE).read_text())
    except FileNotFoundError:
        return None
    return InstallPlan(
        fields["repo"],
        list(fields["models"]),
        {k: int(v) for k, v in fields["staged"].items()},
        {k: int(v) for k, v in fields["retired"].items()},
    )


def remove_plan(staging: Path) -> None:
    (staging / PLAN_FILE).unlink(missing_ok=True)


def _staging_pattern(repo: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(repo.name)}\.[a-z]+-[a-z0-9_]+")  # tempfile.mkdtemp's suffix alphabet


def _try_lock(folder: Path) -> int | None:
    """An open descriptor of ``folder`` holding its exclusive lock; None where another process holds it."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def locked_staging(repo: Path, purpose: str) -> Iterator[Path]:
    """An empty folder beside ``repo`` (so that moving out of it is a rename), locked while the block runs and
    removed with whatever is left in it."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.{purpose}-", dir=repo.parent))
        fd = _try_lock(staging)
        if fd is not None and inode(staging) == os.fstat(fd).st_ino:
            break  # locked, and not taken for an abandoned one's leftovers between mkdtemp and flock
        if fd is not None:
            os.close(fd)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(fd)


def abandoned_staging(repo: Path) -> Iterator[Path]:
    """The staging folders beside ``repo`` whose install died, each locked while the caller handles it."""
    pattern = _staging_pattern(repo)
    if not repo.parent.is_dir():
        return
    for folder in sorted(repo.parent.iterdir()):
        if not pattern.fullmatch(folder.name) or not folder.is_dir():
            continue
        fd = _try_lock(folder)
        if fd is None:
            continue
        try:
            yield folder
        finally:
            os.close(fd)
