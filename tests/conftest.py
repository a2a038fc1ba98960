"""Shared fixtures: a small procedural dataset, a briefly trained tiny SAE, its export and a real Triton server.

They are session-scoped and built once, in order, only by the tests that ask for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_IMAGES = 2048
FIXTURE_STEPS = 200
# Developers may set SAE_TEST_CACHE to a folder to build the dataset and the trained run once across test sessions.
CACHE = os.environ.get("SAE_TEST_CACHE")


def _fixture_dir(tmp_path_factory, name: str) -> Path:
    """Where a built-once fixture lives: the developer's cache, else a folder that every pytest-xdist worker of this
    run shares (the parent of the workers' base temp), else a fresh temp folder. Build in it under `_building`."""
    if CACHE:
        path = Path(CACHE) / name
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "shared" / name
    else:
        return tmp_path_factory.mktemp(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _building(folder: Path):
    """Holds a file lock beside ``folder`` so that one worker builds (or resumes) it while the others wait."""
    from filelock import FileLock

    with FileLock(str(folder) + ".lock"):
        yield


@pytest.fixture
def one_torch_thread():
    """Many small models: one intra-op thread per test costs several times less CPU than two on a few cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shapes_file(tmp_path_factory) -> Path:
    from sae.core.datasets.procedural import write_shapes3d_h5

    folder = _fixture_dir(tmp_path_factory, "data")
    path = folder / "shapes3d.h5"
    with _building(folder):
        if not path.exists():
            write_shapes3d_h5(path, n=FIXTURE_IMAGES, seed=0)
    return path


def tiny_config(**train_changes):
    from sae.training.config import get_config

    cfg = get_config("sae12-tiny")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_changes))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, shapes_file) -> Path:
    from sae.training.trainer import Trainer

    run = _fixture_dir(tmp_path_factory, "run")
    with _building(run):
        trainer = Trainer(tiny_config(), shapes_file, run, device="cpu")
        if trainer.step < FIXTURE_STEPS:
            trainer.fit(steps=FIXTURE_STEPS, progress=False)
    return run


def short_run(tmp_path_factory, shapes_file: Path, config_name: str, steps: int) -> Path:
    """A named config trained for a handful of steps on the fixture data (cached under SAE_TEST_CACHE like the
    rest): enough for checks that compare the server with the same weights, not for good images."""
    from sae.training.config import get_config
    from sae.training.trainer import Trainer

    cfg = get_config(config_name)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=steps, log_every=steps))
    run = _fixture_dir(tmp_path_factory, f"repository-{config_name}")
    with _building(run):
        trainer = Trainer(cfg, shapes_file, run, device="cpu")
        try:
            if trainer.step < steps:
                trainer.fit(steps=steps, progress=False)
        finally:
            getattr(trainer, "close", lambda: None)()
    return run


def copy_repository(dst: Path) -> Path:
    """A private, empty model repository: the committed files only, never what `make demo` exported into ours."""
    dst.mkdir(parents=True)
    for name in ("README.md", ".gitignore"):
        shutil.copyfile(ROOT / "model_repository" / name, dst / name)
    return dst


@pytest.fixture(scope="session")
def exported_repo(tmp_path_factory, trained_run) -> Path:
    from sae.export.model_set import export_run

    repo = copy_repository(tmp_path_factory.mktemp("export") / "model_repository")
    export_run(trained_run, repo)
    return repo


@pytest.fixture(scope="session")
def triton(exported_repo, tmp_path_factory):
    from sae.serving.triton import ServerConfig, TritonServer

    log = tmp_path_factory.mktemp("triton") / "server.log"
    server = TritonServer(ServerConfig(repository=exported_repo), log_path=log).start()
    yield server
    server.stop()


def module_server(repository: Path, tmp_path_factory, label: str):
    """A real tritonserver on ``repository``, its log in a fresh folder named ``label`` (``with`` starts and stops it):
    a test module's own server, so that its stub processes and memory are that module's alone."""
    from sae.serving.triton import ServerConfig, TritonServer

    return TritonServer(ServerConfig(repository=repository), log_path=tmp_path_factory.mktemp(label) / "server.log")


@pytest.fixture(scope="module")
def raw(server):
    """A plain ``tritonclient.grpc`` client of the ``server`` fixture that the asking test module defines."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


def start_explicit_server(repository: Path, log_dir: Path):
    """A real tritonserver on ``repository`` in explicit model-control mode (every model loaded at start), started."""
    from sae.cli.serve import model_control_args
    from sae.serving.triton import ServerConfig, TritonServer

    return TritonServer(
        ServerConfig(repository=repository, extra_args=model_control_args("explicit")), log_path=log_dir / "server.log"
    ).start()


@pytest.fixture(scope="module")
def client(triton):
    """An SAEClient of the session's server, ready; one per test module."""
    from sae.clients.triton_client import SAEClient

    with SAEClient(triton.grpc_url) as c:
        c.wait_ready(timeout_s=30)
        yield c


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (psutil-free, Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # it exited between the signal and the read
        return False
    return state != "Z"
