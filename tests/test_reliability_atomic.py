"""Atomic writes: a writer killed mid-write leaves the old file or the new one, never part of one; a full disk
(RLIMIT_FSIZE) is a clean one-line error that leaves what was committed before intact."""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clients.atomic import atomic_write, write_text_atomic
from conftest import ROOT

SIZE = 32 << 20  # bytes the writer writes, 1 MiB at a time
WRITER = r"""
import sys, time
from pathlib import Path
from clients.atomic import atomic_write

target, mode = Path(sys.argv[1]), sys.argv[2]
piece = b"\x01" * (1 << 20)

def write(f):
    for i in range({pieces}):
        f.write(piece)
        f.flush()
        if i == 0:
            print("started", flush=True)
        time.sleep(0.01)

if mode == "atomic":
    with atomic_write(target) as tmp, open(tmp, "wb") as f:
        write(f)
else:
    with open(target, "wb") as f:
        write(f)
print("finished", flush=True)
""".format(pieces=SIZE >> 20)


def kill_writer_mid_write(target: Path, mode: str) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert writer.stdout.readline().strip() == "started"
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("mode", ["atomic", "plain"])
def test_a_writer_killed_mid_write_leaves_the_old_file_or_the_new_one(tmp_path, mode):
    target = tmp_path / "big.bin"
    old = b"\x00" * SIZE
    target.write_bytes(old)
    kill_writer_mid_write(target, mode)
    content = target.read_bytes()
    if mode == "atomic":
        assert content == old, f"partial file of {len(content)} bytes"
    else:  # the control: the same kill against a plain open(..., "wb") does leave a partial file
        assert 0 < len(content) < SIZE


def test_atomic_write_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "config.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"], "the temporary file is removed"
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644"


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def limited_file_size(limit_bytes: int):
    """preexec_fn: files may grow to ``limit_bytes``; a write past it fails with EFBIG instead of SIGXFSZ."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return preexec


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line_and_keeps_the_models_exported_before(exported_repo, trained_run,
                                                                                  tmp_path):
    import shutil

    repo = Path(shutil.copytree(exported_repo, tmp_path / "repo", symlinks=True))
    before = tree_digest(repo)
    command = [sys.executable, "-m", "serving.cli", "export", str(trained_run), "--repo", str(repo)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            preexec_fn=limited_file_size(64 << 10))
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sae export: error: ") and "File too large" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert tree_digest(repo) == before, "a model version exported before changed"
