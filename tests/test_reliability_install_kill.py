"""An install killed (SIGKILL) before any of its folder moves leaves every model of the repository whole, old or new
(one model's folder out of the repository only between the two renames of the fallback), and the next
`sae validate` or `sae export --rollback` finishes it: the whole new set, nothing left beside the repository."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from sae.cli import main

INSTALLER = r"""
import json
import os
import shutil
import sys
from pathlib import Path

from sae.repository import install
from sae.repository.configs import RepositoryOptions

new, repo, kill_at, mode, roles = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
moves = 0


def counted(move):
    def step(a, b):
        global moves
        if moves == kill_at:
            print(f"stopped before move {moves}", flush=True)
            sys.stdin.readline()  # blocks: the test kills the installer here, before this move, at a known point
        moves += 1
        return move(a, b)
    return step


os.rename = counted(os.rename)
install._exchange = (lambda a, b: False) if mode == "two renames" else counted(install._exchange)
options = RepositoryOptions()
names = options.model_names()
roles = tuple(json.loads(roles))
version = max(int(p.name) for p in (new / names[roles[0]]).iterdir() if p.name.isdigit())
with install.staging_folder(repo) as staging:
    for role in roles:  # what an export stages: the new version and its config (keep_previous links the rest)
        (staging / names[role]).mkdir()
        shutil.copyfile(new / names[role] / "config.pbtxt", staging / names[role] / "config.pbtxt")
        shutil.copytree(new / names[role] / str(version), staging / names[role] / str(version))
    install.install_model_set(staging, repo, options, roles, version, validate=None)
print(f"finished after {moves} moves", flush=True)
"""


def digest(folder: Path) -> dict[str, str] | None:
    """Every file under ``folder`` by relative path and content hash; None for a missing folder."""
    if not folder.is_dir():
        return None
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def models_of(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def two_sets(exported_repo, trained_run, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The session's exported set (version 1) and the same repository re-exported with another bank (version 2),
    with the roles of the set in install order."""
    from sae.export.model_set import export_run
    from sae.repository.configs import RepositoryOptions

    new = Path(shutil.copytree(exported_repo, tmp_path_factory.mktemp("new") / "model_repository", symlinks=True))
    report = export_run(trained_run, new, bank_seed=1)
    assert report.version == 2
    role_of = {model: role for role, model in RepositoryOptions().model_names().items()}
    return exported_repo, new, [role_of[model] for model in report.models]


def install_killed_before(move: int, new: Path, repo: Path, mode: str, roles: list[str]) -> bool:
    """Run an install of ``new``'s set into ``repo`` in a child, SIGKILLed just before its folder move ``move``;
    False when the install made fewer moves and finished."""
    child = subprocess.Popen(
        [sys.executable, "-c", INSTALLER, str(new), str(repo), str(move), mode, json.dumps(roles)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = child.stdout.readline().strip()
    if line.startswith("finished"):
        assert child.wait(timeout=30) == 0
        return False
    assert line == f"stopped before move {move}", line
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    return True


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["renameat2", "two renames"])
def test_an_install_killed_at_any_move_leaves_whole_models_and_the_next_command_finishes_it(
    two_sets, tmp_path, capsys, mode
):
    old, new, roles = two_sets
    models = models_of(old)
    assert models_of(new) == models
    old_digests, new_digests = ({m: digest(repo / m) for m in models} for repo in (old, new))
    assert all(old_digests[m] != new_digests[m] for m in models)
    for move in range(4 * len(models)):
        case = tmp_path / str(move)
        repo = Path(shutil.copytree(old, case / "model_repository", symlinks=True))
        if not install_killed_before(move, new, repo, mode, roles):
            break
        states = {}
        for model in models:
            now = digest(repo / model)
            states[model] = (
                "old"
                if now == old_digests[model]
                else "new"
                if now == new_digests[model]
                else "missing"
                if now is None
                else "torn"
            )
        assert "torn" not in states.values(), (move, states)
        missing = [m for m, state in states.items() if state == "missing"]
        if mode == "renameat2" or move % 2 == 0:  # the fallback's first rename of a model is its move 2k
            assert not missing, (move, states)
        else:
            assert len(missing) == 1, (move, states)  # between the two renames: what the next command restores
        if move % 2 == 0:
            assert main(["validate", "--repo", str(repo)]) == 0
            out = capsys.readouterr().out
            assert "finished an interrupted install of " in out and f"{repo}: valid (0 errors" in out, out
            assert {m: digest(repo / m) for m in models} == new_digests, move
        else:  # a rollback first finishes the install to version 2, then goes back to version 1: the old set
            assert main(["export", "--rollback", "", "--repo", str(repo)]) == 0
            assert "from version 2 to 1" in capsys.readouterr().out
            assert {m: digest(repo / m) for m in models} == old_digests, move
        assert [p.name for p in case.iterdir()] == ["model_repository"], "the staging folder is removed"
    else:
        raise AssertionError("the install never finished")
    assert move == (1 if mode == "renameat2" else 2) * len(models), "one move per model, two in the fallback"
    assert {m: digest(repo / m) for m in models} == new_digests


def test_staging_folders_of_live_installs_stay_and_dead_ones_without_a_plan_go(tmp_path):
    from sae.repository.install import finish_interrupted, staging_folder

    repo = tmp_path / "model_repository"
    (repo / "m" / "1").mkdir(parents=True)
    dead = tmp_path / ".model_repository.export-dead_1"  # a staging folder whose process died before its plan
    (dead / "m" / "2").mkdir(parents=True)
    other = tmp_path / ".model_repository2.export-abc"  # another repository's: not this one's to remove
    other.mkdir()
    with staging_folder(repo) as live:
        assert finish_interrupted(repo) == []
        assert live.is_dir() and not dead.exists() and other.is_dir()
    assert not live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model_repository2.export-abc", "model_repository"]
    assert [p.name for p in (repo / "m").iterdir()] == ["1"]
