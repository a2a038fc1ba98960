"""What each actor of the pool runs: one block (one shard's images) through Triton into one shard file.

An actor holds torch-free :class:`~sae.clients.triton_client.SAEClient` s for every ``--url`` (``node:PORT`` resolved to
its own node) in a :class:`~sae.clients.jobs.encode_servers.ServerPool`, turned so that different actors start on
different
servers; it sends one request at a time, in ``batch_size`` slices of the block, so every request holds the images a
single-process run with the same batch size sends together. A block whose servers fail is tried again
(``block_attempts`` in all, with fresh connections); one that still fails comes back as a ``failed`` row naming its
row range, and the other blocks go on. A lost actor is Ray's to restart (the driver bounds the restarts and the
retries of its task).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt

from sae.clients.jobs.encode_job import connect_servers
from sae.clients.jobs.encode_servers import ServerPool, check_probe, throttle
from sae.clients.jobs.ray_encode.config import RayEncodeConfig, resolve_url
from sae.clients.jobs.ray_encode.shards import Manifest, Shard, write_shard
from sae.core.datasets import open_dataset
from sae.core.errors import ClientError, InvalidInputError
from sae.core.latents_file import label_column

BLOCK_RETRY_PAUSE_S = (0.5, 4.0)  # first and longest pause before a failed block is tried again

Batch = dict[str, npt.NDArray[np.generic]]  # a numpy batch of Ray Data: column name -> values
ResultRow = Batch  # start, stop, status, error, seconds, request_seconds, finished_at: one value each


def result_row(
    shard: Shard, status: str, error: str = "", seconds: float = 0.0, request_seconds: float = 0.0
) -> ResultRow:
    """One block's outcome, the only thing that travels back to the driver."""
    return {
        "start": np.array([shard.start], np.int64),
        "stop": np.array([shard.stop], np.int64),
        "status": np.array([status]),
        "error": np.array([error]),
        "seconds": np.array([seconds]),
        "request_seconds": np.array([request_seconds]),
        "finished_at": np.array([time.time()]),
    }


def _this_node_and_actor() -> tuple[str, str]:
    """The Ray node's IP address and this actor's id ("" outside an actor)."""
    import ray

    context = ray.get_runtime_context()
    node_ip = cast(Callable[[], str], ray.util.get_node_ip_address)()  # untyped in Ray
    return node_ip, context.get_actor_id() or ""


class ShardEncoder:
    """The callable class that ``map_batches`` runs in each actor."""

    def __init__(
        self, config: RayEncodeConfig, manifest: Manifest, node_ip: str | None = None, actor_id: str | None = None
    ) -> None:
        if node_ip is None or actor_id is None:
            node_ip, actor_id = _this_node_and_actor()
        self.config, self.manifest = config, manifest
        self.plan = {s.start: s for s in manifest.shards()}
        self.data = open_dataset(config.data)
        self.labels = label_column(self.data)
        urls = [resolve_url(u, node_ip) for u in config.urls]
        turn = zlib.crc32(actor_id.encode()) % len(urls)  # this actor's first server
        urls = urls[turn:] + urls[:turn]
        self.pool = ServerPool(
            connect_servers(config.job_config(tuple(urls)), self.data),
            cooldown_s=1.0,
            outage_wait_s=config.outage_wait_s,
        )
        # Every server this actor uses serves the model that wrote the manifest.
        check_probe(self.pool, self.data.read(slice(0, 1)), np.asarray(manifest.probe_latent, np.float32), config.out)
        self.started, self.sent = time.monotonic(), 0  # for --max-rate

    def __call__(self, batch: Batch) -> ResultRow:
        rows = np.asarray(batch["row"], np.int64)
        shard = self.plan.get(int(rows[0])) if len(rows) else None
        if shard is None or len(rows) != shard.rows or not np.array_equal(rows, np.arange(shard.start, shard.stop)):
            span = Shard(int(rows.min()), int(rows.max()) + 1) if len(rows) else Shard(0, 0)
            return result_row(
                span, "failed", f"{span.describe()}: a block must hold exactly one planned shard's rows in order"
            )
        return self.encode_shard(shard, cast("npt.NDArray[np.uint8]", batch["image"]))  # the reader's uint8

    def encode_shard(self, shard: Shard, images: npt.NDArray[np.uint8]) -> ResultRow:
        started = time.monotonic()
        error, pause = "", BLOCK_RETRY_PAUSE_S[0]
        for attempt in range(1, self.config.block_attempts + 1):
            request_seconds = 0.0
            try:
                parts: list[npt.NDArray[np.float32]] = []
                for lo in range(0, shard.rows, self.config.batch_size):
                    hi = min(shard.rows, lo + self.config.batch_size)
                    throttle(self.started, self.sent, self.config.max_images_per_second)
                    self.sent += hi - lo
                    sent = time.monotonic()
                    parts.append(self.pool.encode(images[lo:hi], f"images {shard.start + lo}..{shard.start + hi - 1}"))
                    request_seconds += time.monotonic() - sent
                write_shard(self.config.out, self.manifest, shard, np.concatenate(parts), self.labels)
                return result_row(shard, "done", "", time.monotonic() - started, request_seconds)
            except InvalidInputError as e:  # the server refused these images: another try would be refused too
                return result_row(shard, "failed", str(e), time.monotonic() - started)
            except (ClientError, OSError) as e:
                error = f"try {attempt} of {self.config.block_attempts}: {e}"
            if attempt < self.config.block_attempts:
                time.sleep(pause)
                pause = min(2 * pause, BLOCK_RETRY_PAUSE_S[1])
                self.pool.reconnect_all()
        return result_row(shard, "failed", error, time.monotonic() - started)

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()
