"""One process or many: torchrun's environment -> process group, this rank's device, and its share of each batch.

Run without a launcher (or under ``torchrun --nproc_per_node 1``) everything here is a no-op, so the same training
command works on a laptop, one GPU, or ``torchrun --nnodes N --nproc_per_node G`` across nodes. The process group uses
gloo on CPU and NCCL on CUDA; each rank trains on ``local_rank``'s GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from sae.core.errors import SAEError


class DistributedSetupError(SAEError, RuntimeError):
    """The launcher's environment and the requested device or batch size do not fit together."""


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_process_group: bool = False  # True when setup() created it (and teardown() should destroy it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and plots."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={value!r} is not an integer") from None


def setup(device: str | None = None) -> DistributedContext:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK, pick the device and join the process group when there is one.

    ``device`` is "cpu", "cuda" or "cuda:N"; None means CUDA when available. Under torchrun, "cuda" means
    ``cuda:LOCAL_RANK``.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedSetupError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"rank {rank} wants cuda:{dev.index} but only {torch.cuda.device_count()} CUDA devices are visible; "
                f"start at most {torch.cuda.device_count()} processes per node (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(dev)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, device_id=dev if dev.type == "cuda" else None
        )
        owns = True
    return DistributedContext(rank, world_size, local_rank, dev, owns)


def teardown(ctx: DistributedContext) -> None:
    if ctx.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(global_batch_size: int, ctx: DistributedContext) -> int:
    """The per-rank batch size; the global batch must split evenly so every rank's share is the same size."""
    if global_batch_size % ctx.world_size:
        raise DistributedSetupError(
            f"batch size {global_batch_size} does not split evenly over {ctx.world_size} processes; choose a batch "
            f"size divisible by {ctx.world_size} (--batch-size) or launch a different number of processes"
        )
    return global_batch_size // ctx.world_size


def shard(global_batch: np.ndarray | torch.Tensor, ctx: DistributedContext):
    """This rank's contiguous share of a global batch: the distributed sampler of the deterministic batch stream.

    Every rank walks the same stream (same seed, same order), so the ranks together see exactly the global batch a
    single process would, and averaging their gradients gives the single-process gradient of the batch mean.
    """
    per_rank = check_batch_size(len(global_batch), ctx)
    return global_batch[ctx.rank * per_rank : (ctx.rank + 1) * per_rank]


def all_reduce_mean(t: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean over ranks (in place on a copy); the tensor itself when there is one process."""
    if not ctx.distributed:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.div_(ctx.world_size)


def all_reduce_gradients(module: nn.Module, ctx: DistributedContext) -> None:
    """Average the gradients of a module that is trained outside DistributedDataParallel (e.g. a discriminator)."""
    if not ctx.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(ctx.world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def wrap_ddp(module: nn.Module, ctx: DistributedContext, ignore: Sequence[str] = ()) -> nn.Module:
    """DistributedDataParallel around ``module`` (the module itself with one process).

    ``ignore`` names parameters (as in ``module.named_parameters()``) that DDP must not synchronise: those trained by
    their own optimiser outside the main step, whose gradients :func:`all_reduce_gradients` averages instead.
    """
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if ignore:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)
