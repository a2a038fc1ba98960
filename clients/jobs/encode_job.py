"""``sae encode``: a whole dataset through one or more servers into an HDF5 file of latents, resumable.

Output (``OUT``, e.g. ``latents.h5``): the file of latents of :mod:`sae.core.latents_file` (``latents``, ``labels`` or
``factors``, the ``committed`` marker and the identity attributes).

Why it survives SIGKILL at any moment: the file is created complete (every dataset at full size, storage allocated
up front, attributes written) under ``OUT.partial.tmp`` and renamed to ``OUT.partial``; after that the job only
overwrites raw bytes of preallocated contiguous datasets, never HDF5 metadata. Chunks are committed in order: the
chunk's latents are written and flushed, then ``committed`` is advanced and flushed. A run that starts on an existing
``OUT.partial`` checks that it belongs to the same input (fingerprint of the images) and the same model (the name,
and the latent of a probe image re-encoded by every server) and goes on from ``committed``. When the last chunk is
committed the file is renamed to ``OUT``, so ``OUT`` only ever holds a finished encoding.

Bitwise equality: ONNX Runtime's CPU kernels give latents that differ in the last bit (~1e-7) with the batch an image
was computed in. With the same ``--batch-size`` and at most one request in flight per server (``--in-flight`` no
larger than the number of ``--url``), every run computes the same batches, so a resumed file equals an uninterrupted
run's bit for bit; with more in flight, a server's dynamic batcher may merge requests, and runs agree to ~1e-7.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np
import numpy.typing as npt

from sae.clients.jobs.encode_servers import ServerPool, check_probe, throttle
from sae.clients.jobs.metrics import EncodeMetrics, MetricsServer
from sae.clients.retry import RetryPolicy
from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.datasets import ImageSource, open_dataset
from sae.core.errors import (
    ClientError,
    EncodeInputError,
    EncodeJobError,
    InvalidInputError,
    ServerUnavailableError,
    UsageError,
)
from sae.core.latents_file import (
    RawDatasets,
    check_identity,
    create_latents_file,
    fingerprint,
    identity_of,
    label_column,
    latents_attrs,
)
from sae.core.progress_bar import encode_progress

__all__ = ["EncodeJobConfig", "EncodeReport", "run_encode_job", "connect_servers"]


@dataclass(frozen=True)
class EncodeJobConfig:
    data: Path
    out: Path
    model: str = ""  # the name the model set was exported under ("" = unprefixed)
    urls: tuple[str, ...] = (wire.DEFAULT_URL,)
    in_flight: int = 4  # requests sent and not yet answered, over all servers
    batch_size: int = 256  # images per request, and per committed chunk
    timeout_s: float = 60.0  # per request, retries included
    shared_memory: bool = False
    metrics_port: int | None = None  # serve Prometheus metrics on 127.0.0.1:PORT while the job runs
    max_images_per_second: float | None = None  # send no faster than this (share a server politely)
    server_cooldown_s: float = 5.0  # a server that failed gets no request for this long
    outage_wait_s: float = 60.0  # every server down: wait this long (bounded backoff, fresh connections) for one
    retry: RetryPolicy = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.5)
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "urls", tuple(dict.fromkeys(self.urls)))  # each server once
        if not self.urls:
            raise UsageError("encode: give at least one --url")
        if self.in_flight < 1:
            raise UsageError(f"encode: --in-flight must be >= 1, got {self.in_flight}")
        if self.batch_size < 1:
            raise UsageError(f"encode: --batch-size must be >= 1, got {self.batch_size}")
        if self.max_images_per_second is not None and self.max_images_per_second <= 0:
            raise UsageError(f"encode: --max-rate must be positive, got {self.max_images_per_second}")
        if not self.outage_wait_s >= 0:
            raise UsageError(f"encode: --outage-wait must be >= 0 seconds, got {self.outage_wait_s}")

    @property
    def partial(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")


@dataclass
class EncodeReport:
    out: Path
    images: int  # in the dataset
    resumed_from: int  # images already committed when this run started
    encoded: int  # images this run committed
    seconds: float
    requests_per_server: dict[str, int] = field(default_factory=dict)
    failures: int = 0

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        resumed = f" (resumed at image {self.resumed_from:,})" if self.resumed_from else ""
        if self.encoded == 0:
            return f"{self.out} already holds all {self.images:,} latents; nothing to do"
        spread = ", ".join(f"{url}: {n}" for url, n in self.requests_per_server.items())
        return (
            f"encoded {self.encoded:,} images{resumed} into {self.out} in {self.seconds:.1f} s "
            f"({self.images_per_second:,.0f} images/s; requests per server: {spread}; failed requests: "
            f"{self.failures})"
        )


def _create(
    path: Path,
    config: EncodeJobConfig,
    data: ImageSource,
    identity: Mapping[str, object],
    probe_latent: npt.NDArray[np.float32],
) -> None:
    """The job's full-size output for ``data`` (labels copied from it), created atomically at ``path``."""
    create_latents_file(
        path, latents_attrs(identity, config.data, probe_latent), len(data), len(probe_latent), label_column(data)
    )


def connect_servers(config: EncodeJobConfig, data: ImageSource) -> list[SAEClient]:
    """Clients for the servers that answer, each checked to serve an encoder for these images."""
    clients: list[SAEClient] = []
    errors: list[str] = []
    for url in config.urls:
        client = SAEClient(
            url, model=config.model, timeout_s=config.timeout_s, retry=config.retry, shared_memory=config.shared_memory
        )
        try:
            info = client.model_info("encode")
        except ServerUnavailableError as e:
            errors.append(str(e))
            client.close()
            continue
        except ClientError:
            client.close()
            for c in clients:
                c.close()
            raise
        if list(info.input(wire.IMAGE).dims) != list(data.shape[1:]):
            for c in clients + [client]:
                c.close()
            raise InvalidInputError(
                f"{info.name} at {url}: input IMAGE takes images of shape "
                f"{list(info.input('IMAGE').dims)}, but {config.data} holds {list(data.shape[1:])}",
                info.name,
                wire.IMAGE,
            )
        clients.append(client)
    if not clients:
        raise EncodeJobError("encode: no server reachable: " + "; ".join(errors))
    return clients


def run_encode_job(
    config: EncodeJobConfig, progress_stream: TextIO | None = None, metrics: EncodeMetrics | None = None
) -> EncodeReport:
    """Encode ``config.data`` into ``config.out`` (see the module docstring); returns what this run did."""
    data = open_dataset(config.data)
    try:
        return _run(config, data, progress_stream, metrics)
    finally:
        data.close()


def _run(
    config: EncodeJobConfig, data: ImageSource, progress_stream: TextIO | None, metrics: EncodeMetrics | None
) -> EncodeReport:
    n = len(data)
    if n == 0:
        raise EncodeInputError(f"{config.data} holds no images")
    identity = identity_of(config.model, data, fingerprint(data))
    if config.out.exists():
        _read_existing(config.out, identity)
        return EncodeReport(config.out, n, n, 0, 0.0)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.partial.with_name(config.partial.name + ".tmp").unlink(missing_ok=True)  # a creation that was cut off
    stored_probe = _read_existing(config.partial, identity) if config.partial.exists() else None

    metrics = metrics or EncodeMetrics()
    pool = ServerPool(connect_servers(config, data), metrics, config.server_cooldown_s, config.outage_wait_s)
    metrics_server: MetricsServer | None = None
    try:
        if config.metrics_port is not None:
            metrics_server = metrics.serve(config.metrics_port)
        probe = check_probe(pool, data.read(slice(0, 1)), stored_probe, config.partial)
        if stored_probe is None:
            _create(config.partial, config, data, identity, probe)
        report = _encode_chunks(config, data, pool, metrics, progress_stream)
    finally:
        pool.close()
        if metrics_server is not None:
            metrics_server.close()
    os.replace(config.partial, config.out)
    return report


def _read_existing(path: Path, identity: Mapping[str, object]) -> npt.NDArray[np.float32]:
    """Check that an existing output belongs to this run; return its probe latent."""
    try:
        with h5py.File(path, "r") as f:
            check_identity(path, f.attrs, identity)
            return np.asarray(f.attrs["probe_latent"], np.float32)
    except (OSError, KeyError) as e:
        raise EncodeInputError(
            f"{path} exists but is not a readable file of latents ({e}); remove it or choose another --out"
        ) from e


def _encode_chunks(
    config: EncodeJobConfig, data: ImageSource, pool: ServerPool, metrics: EncodeMetrics, progress_stream: TextIO | None
) -> EncodeReport:
    n = len(data)
    started = time.monotonic()
    with RawDatasets(config.partial) as f:
        latents, committed_marker = f.latents, f.committed
        resumed_from = committed = f.committed_value
        metrics.total.set(n)
        metrics.committed.set(committed)
        progress = encode_progress(n, config.progress, progress_stream, committed)
        if committed:
            progress.write(f"resuming {config.partial} at image {committed:,} of {n:,}")
        pending: deque[tuple[int, int, Future[npt.NDArray[np.float32]]]] = deque()
        executor = ThreadPoolExecutor(max_workers=config.in_flight, thread_name_prefix="sae-encode")
        next_start = committed
        try:
            while committed < n:
                while next_start < n and len(pending) < config.in_flight:
                    throttle(started, next_start - resumed_from, config.max_images_per_second)
                    stop = min(n, next_start + config.batch_size)
                    images = data.read(slice(next_start, stop))
                    pending.append(
                        (next_start, stop, executor.submit(pool.encode, images, f"images {next_start}..{stop - 1}"))
                    )
                    next_start = stop
                start, stop, future = pending.popleft()
                try:
                    chunk = future.result()
                except ClientError as e:
                    raise EncodeJobError(
                        f"{e}. {committed:,} of {n:,} images are committed in {config.partial}; "
                        "run the same command again to resume"
                    ) from e
                try:
                    latents.write(start, chunk)
                    f.sync()  # the chunk's bytes first ...
                    committed_marker.write(0, np.array(stop))
                    f.sync()  # ... then the marker that says they are final
                except OSError as e:  # a full disk, a quota: what was committed before stays committed
                    raise EncodeJobError(
                        f"writing images {start:,}..{stop - 1:,} into {config.partial} failed "
                        f"({e}); {committed:,} of {n:,} images are committed: make room and run "
                        "the same command again to resume"
                    ) from None
                committed = stop
                metrics.images.inc(stop - start)
                metrics.committed.set(committed)
                progress.update_to(committed)
        finally:
            for _, _, future in pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)
        progress.close()
    return EncodeReport(
        config.out,
        n,
        resumed_from,
        n - resumed_from,
        time.monotonic() - started,
        pool.requests_per_server(),
        pool.failures,
    )
