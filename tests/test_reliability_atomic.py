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
from conftest import ROOT

from sae.core.atomic import atomic_write, write_text_atomic

SIZE = 32 << 20  # bytes the writer writes, 1 MiB at a time
WRITER = rf"""
import sys
from pathlib import Path
from sae.core.atomic import atomic_write

target, mode = Path(sys.argv[1]), sys.argv[2]
piece = b"\x01" * (1 << 20)

def write(f):
    for i in range({SIZE >> 20}):
        f.write(piece)
        f.flush()
        if i == 0:
            print("started", flush=True)
            sys.stdin.readline()  # blocks: the test kills the writer here, one piece in, at a known point

if mode == "atomic":
    with atomic_write(target) as tmp, open(tmp, "wb") as f:
        write(f)
else:
    with open(target, "wb") as f:
        write(f)
print("finished", flush=True)
"""


def kill_writer_mid_write(target: Path, mode: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
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
        assert len(content) == 1 << 20, "one piece written before the kill"


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
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def limited_file_size(limit_bytes: int):
    """preexec_fn: files may grow to ``limit_bytes``; a write past it fails with EFBIG instead of SIGXFSZ."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return preexec


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line_and_keeps_the_models_exported_before(exported_repo, trained_run, tmp_path):
    import shutil

    repo = Path(shutil.copytree(exported_repo, tmp_path / "repo", symlinks=True))
    before = tree_digest(repo)
    command = [sys.executable, "-m", "sae", "export", str(trained_run), "--repo", str(repo)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=limited_file_size(64 << 10)
    )
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sae export: error: ") and "File too large" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert tree_digest(repo) == before, "a model version exported before changed"


def _committed(path: Path) -> int:
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["committed"][()])
    except (OSError, KeyError):
        return 0


@pytest.mark.server
@pytest.mark.slow
def test_encode_on_a_full_disk_is_one_line_and_keeps_the_committed_chunks(triton, shapes_file, tmp_path):
    """The latents file is created at full size first; a later write past RLIMIT_FSIZE fails like a full disk."""
    import time

    import h5py
    import numpy as np
    from test_encode_job import BATCH, N, assert_same_file, write_images

    with h5py.File(shapes_file, "r") as f:
        data = write_images(tmp_path / "small.h5", f["images"][:N], f["labels"][:N])
    base = [
        sys.executable,
        "-m",
        "sae",
        "encode",
        str(data),
        "--url",
        triton.grpc_url,
        "--batch-size",
        str(BATCH),
        "--in-flight",
        "1",
    ]
    reference = tmp_path / "reference.h5"
    subprocess.run(base + ["--out", str(reference)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    out = tmp_path / "latents.h5"
    partial = out.with_name(out.name + ".partial")
    first = subprocess.Popen(
        base + ["--out", str(out), "--max-rate", "48"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while _committed(partial) < 2 * BATCH:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    first.kill()
    first.wait()
    committed_before = _committed(partial)
    with h5py.File(partial, "r") as f:
        limit = f["latents"].id.get_offset() + 5 * BATCH * f["latents"].shape[1] * 4  # room for chunks 0..4
        assert limit < partial.stat().st_size
    full = subprocess.run(
        base + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited_file_size(limit),
    )
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1 and lines and "Traceback" not in full.stderr, full.stderr  # a runtime failure
    assert lines[-1].startswith("sae encode: error: ") and "File too large" in lines[-1], full.stderr
    committed_after = _committed(partial)
    print(lines[-1])
    assert committed_before <= committed_after < N and not out.exists()
    with h5py.File(partial, "r") as f, h5py.File(reference, "r") as ref:
        assert np.array_equal(f["latents"][:committed_after], ref["latents"][:committed_after])
    subprocess.run(base + ["--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    assert_same_file(out, reference)
