"""`torchrun --nproc_per_node 2` on CPU (gloo) trains like one process: same checkpoint, same data, same numbers."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_config

from sae.training.checkpoint import BEST, Checkpoint
from sae.training.distributed import DistributedContext, DistributedSetupError, check_batch_size, shard
from sae.training.metrics_log import read_metrics
from sae.training.trainer import Trainer, TrainerOptions

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
BATCH, VAL_EVERY, VAL_BATCHES = 4, 2, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(data, out, steps: int) -> subprocess.CompletedProcess:
    """`sae train` under torchrun: 2 CPU processes on 127.0.0.1, gloo over loopback."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    cmd = [
        TORCHRUN,
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "sae",
        "train",
        "sae12-tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--device",
        "cpu",
        "--batch-size",
        str(BATCH),
        "--val-every",
        str(VAL_EVERY),
        "--val-batches",
        str(VAL_BATCHES),
    ]
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def single_process_train(data, out, steps: int) -> None:
    options = TrainerOptions(val_every=VAL_EVERY, val_batches=VAL_BATCHES, tensorboard=False)
    Trainer(tiny_config(batch_size=BATCH), data, out, device="cpu", options=options).fit(steps=steps, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_file):
    """The same 2 steps under torchrun and in one process; then both resumed to step 4."""
    root = tmp_path_factory.mktemp("distributed")
    ddp, single = root / "ddp", root / "single"
    first = torchrun_train(shapes_file, ddp, steps=2)
    single_process_train(shapes_file, single, steps=2)
    at_2 = {"ddp": Checkpoint.load(ddp), "single": Checkpoint.load(single), "stdout": first.stdout}
    torchrun_train(shapes_file, ddp, steps=4)
    single_process_train(shapes_file, single, steps=4)
    return at_2, ddp, single


def _assert_same_weights(a: dict, b: dict, atol=1e-5):
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < atol, f"max |ddp - single| = {worst}"  # measured: 1.7e-7 after 4 steps


def test_torchrun_checkpoint_has_the_shape_of_a_single_process_one(runs):
    at_2, _, _ = runs
    ddp, single = at_2["ddp"], at_2["single"]
    assert ddp.step == single.step == 2
    assert ddp.extra["world_size"] == 2 and single.extra["world_size"] == 1
    assert ddp.config == single.config
    # each rank took its half of every global batch: the averaged gradients are the single process's
    _assert_same_weights(ddp.model_state, single.model_state)
    assert set(ddp.optimizer_state["state"]) == set(single.optimizer_state["state"])
    assert ddp.extra["best_val_loss"] == pytest.approx(single.extra["best_val_loss"], rel=1e-5)
    assert at_2["stdout"].count("step 2: loss") == 1  # only rank 0 reports


def test_distributed_run_resumes_without_repeating_or_losing_steps(runs):
    _, ddp, single = runs
    a, b = Checkpoint.load(ddp), Checkpoint.load(single)
    assert a.step == b.step == 4
    _assert_same_weights(a.model_state, b.model_state)
    assert Checkpoint.load(ddp, which=BEST).step == Checkpoint.load(single, which=BEST).step
    rows, expected = read_metrics(ddp), read_metrics(single)  # rank 0 alone writes the logs: each row once
    assert [(r["step"], r["split"]) for r in rows] == [(r["step"], r["split"]) for r in expected]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in expected], rel=1e-5)
    assert [r["step"] for r in rows if r["split"] == "val"] == [2, 4]
    assert (ddp / "loss_curve.png").is_file() and list((ddp / "tensorboard").iterdir())


def test_each_rank_takes_its_share_of_every_global_batch():
    batch = np.arange(8)
    shares = [shard(batch, DistributedContext(rank=r, world_size=4)) for r in range(4)]
    assert [s.tolist() for s in shares] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert shard(torch.arange(6), DistributedContext()).tolist() == list(range(6))


def test_batch_that_does_not_split_over_the_processes_says_what_to_change():
    with pytest.raises(DistributedSetupError, match="choose a batch size divisible by 4"):
        check_batch_size(10, DistributedContext(rank=0, world_size=4))
    assert check_batch_size(12, DistributedContext(rank=3, world_size=4)) == 3
