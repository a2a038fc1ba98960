"""``sae encode``: a whole dataset through one or more servers into an HDF5 file of latents, resumable.

Output (``OUT``, e.g. ``latents.h5``)::

    latents    float32 [N, D]   row i = encode(image i)
    labels     float64 [N, K]   copied from the dataset (when it has labels), attrs: factor_names
               (or ``factors`` int64 [N, K] for a dataset whose factors follow from the row index, like MPI3D)
    committed  int64 scalar     images 0..committed-1 are final: the progress marker
    attrs      format, model, source_path, source_images, source_fingerprint, image_shape, probe_latent

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

import hashlib
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TextIO

import h5py
import numpy as np

from clients.datasets import open_dataset
from clients.errors import ClientError, EncodeJobError, InvalidInputError, ServerUnavailableError
from clients.metrics import EncodeMetrics, MetricsServer
from clients.triton_client import DEFAULT_URL, RetryPolicy, SAEClient

FORMAT = "sae-latents/1"
PROBE_RTOL, PROBE_ATOL = 1e-3, 1e-4  # a different model differs by far more; another runtime by less
FINGERPRINT_IMAGES = 64  # images hashed at each end of the dataset, and spread between
LABEL_WINDOW = 65536  # labels copied this many rows at a time


@dataclass(frozen=True)
class EncodeJobConfig:
    data: Path
    out: Path
    model: str = ""  # the name the model set was exported under ("" = unprefixed)
    urls: tuple[str, ...] = (DEFAULT_URL,)
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
            raise ValueError("encode: give at least one --url")
        if self.in_flight < 1:
            raise ValueError(f"encode: --in-flight must be >= 1, got {self.in_flight}")
        if self.batch_size < 1:
            raise ValueError(f"encode: --batch-size must be >= 1, got {self.batch_size}")
        if self.max_images_per_second is not None and self.max_images_per_second <= 0:
            raise ValueError(f"encode: --max-rate must be positive, got {self.max_images_per_second}")
        if not self.outage_wait_s >= 0:
            raise ValueError(f"encode: --outage-wait must be >= 0 seconds, got {self.outage_wait_s}")

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
        return (f"encoded {self.encoded:,} images{resumed} into {self.out} in {self.seconds:.1f} s "
                f"({self.images_per_second:,.0f} images/s; requests per server: {spread}; failed requests: "
                f"{self.failures})")


# --------------------------------------------------------------------------------------------------- datasets


def fingerprint(data) -> str:
    """SHA-1 of the dataset's size, its first and last images and images spread evenly between: tells one input
    from another, cheaply."""
    n = len(data)
    digest = hashlib.sha1(f"{n}:{list(data.shape[1:])}".encode())
    digest.update(np.ascontiguousarray(data.read(slice(0, min(FINGERPRINT_IMAGES, n)))).tobytes())
    for row in np.unique(np.linspace(0, n - 1, FINGERPRINT_IMAGES).astype(np.int64)):
        digest.update(np.ascontiguousarray(data.read(slice(int(row), int(row) + 1))).tobytes())
    digest.update(np.ascontiguousarray(data.read(slice(max(0, n - FINGERPRINT_IMAGES), n))).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------- servers


@dataclass
class _Server:
    url: str
    client: SAEClient
    outstanding: int = 0
    down_until: float = 0.0
    requests: int = 0


OUTAGE_BACKOFF_S = (0.25, 4.0)  # first and longest pause between rounds of tries while every server is down


class ServerPool:
    """Encode requests spread over several servers: each goes to the live server with the fewest outstanding
    requests (ties in turn); a server that fails is rested for ``cooldown_s`` and its chunk tried on another.

    When every server has failed, a chunk waits up to ``outage_wait_s`` (pauses doubling from 0.25 s to 4 s) and
    tries again on fresh connections (a restarted server has lost the old channel's state and its shared-memory
    registrations), so a server restarted within that window lets the job finish."""

    def __init__(self, clients: list[SAEClient], metrics: EncodeMetrics | None = None, cooldown_s: float = 5.0,
                 outage_wait_s: float = 0.0):
        self.servers = [_Server(c.url, c) for c in clients]
        self.metrics = metrics
        self.cooldown_s = cooldown_s
        self.outage_wait_s = outage_wait_s
        self.failures = 0
        self.reconnects = 0
        self._retired: list[SAEClient] = []
        self._turn = 0
        self._lock = threading.Lock()

    def _acquire(self, tried: set[str]) -> _Server | None:
        with self._lock:
            now = time.monotonic()
            n = len(self.servers)
            live = [(s.outstanding, (i - self._turn) % n, s) for i, s in enumerate(self.servers)
                    if s.url not in tried and s.down_until <= now]
            if not live:
                return None
            server = min(live, key=lambda t: t[:2])[2]
            self._turn = (self.servers.index(server) + 1) % n
            server.outstanding += 1
            server.requests += 1
            return server

    def _release(self, server: _Server, failed: bool) -> None:
        with self._lock:
            server.outstanding -= 1
            if failed:
                server.down_until = time.monotonic() + self.cooldown_s
                self.failures += 1

    def reconnect_all(self) -> None:
        """Fresh clients for every server (same settings); the old ones are closed with the pool, since calls of
        other threads may still be using them."""
        with self._lock:
            for server in self.servers:
                old = server.client
                self._retired.append(old)
                server.client = SAEClient(old.url, model=old.model, timeout_s=old.timeout_s, retry=old.retry,
                                          shared_memory=old.shared_memory)
                server.down_until = 0.0
            self.reconnects += 1

    def mark_down(self, url: str) -> None:
        with self._lock:
            for s in self.servers:
                if s.url == url:
                    s.down_until = time.monotonic() + self.cooldown_s

    def encode(self, images: np.ndarray, what: str = "") -> np.ndarray:
        """Latents of ``images`` from the first server that answers; EncodeJobError when none does."""
        tried: set[str] = set()
        errors: list[str] = []
        outage_started, pause = None, OUTAGE_BACKOFF_S[0]
        while True:
            server = self._acquire(tried)
            if server is None:
                now = time.monotonic()
                outage_started = now if outage_started is None else outage_started
                if now + pause > outage_started + self.outage_wait_s:
                    waited = f" (waited {now - outage_started:.0f} s for one to come back)" if self.outage_wait_s else ""
                    raise EncodeJobError(f"encode {what}: no server could encode them{waited}: " + "; ".join(
                        errors[-len(self.servers):] or ["every server failed within the last few seconds"]))
                time.sleep(pause)
                pause = min(2 * pause, OUTAGE_BACKOFF_S[1])
                self.reconnect_all()
                tried.clear()
                continue
            tried.add(server.url)
            started = time.monotonic()
            if self.metrics:
                self.metrics.in_flight.inc()
            failed = True
            try:
                latents = server.client.encode(images)
                failed = False
                if self.metrics:
                    self.metrics.latency.labels(server.url).observe(time.monotonic() - started)
                return latents
            except ServerUnavailableError as e:
                errors.append(str(e))
                if self.metrics:
                    self.metrics.failures.labels(server.url, type(e).__name__).inc()
            except ClientError as e:  # the server refused the request: another would too
                if self.metrics:
                    self.metrics.failures.labels(server.url, type(e).__name__).inc()
                raise
            finally:
                if self.metrics:
                    self.metrics.in_flight.dec()
                self._release(server, failed)

    def requests_per_server(self) -> dict[str, int]:
        return {s.url: s.requests for s in self.servers}

    def close(self) -> None:
        for client in [s.client for s in self.servers] + self._retired:
            client.close()


# --------------------------------------------------------------------------------------------------- progress


class Progress:
    """A small progress line (images, %, images/s, ETA): redrawn in place on a terminal, else printed every
    ``interval_s`` seconds, so logs stay short."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None, interval_s: float | None = None,
                 label: str = "encode"):
        self.total, self.start_done, self.done, self.label = total, done, done, label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 5.0)
        self.started = self._last = time.monotonic()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        left = self.total - self.done
        eta = _clock(left / rate) if rate > 0 else "?"
        share = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.label} {self.done:,}/{self.total:,} images {share:5.1f}% {rate:,.0f} images/s ETA {eta}"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write(self.line(now))

    def finish(self) -> None:
        self._write(self.line())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------------------------------- output file


def identity_of(model: str, data, source_fingerprint: str) -> dict:
    """What a latents file records to tell its input and model from others (checked on resume and merge)."""
    return {"format": FORMAT, "model": model, "source_images": len(data),
            "source_fingerprint": source_fingerprint, "image_shape": list(data.shape[1:])}


def check_identity(path: Path, found: Mapping, wanted: dict) -> None:
    """Refuse an output (its HDF5 attributes or manifest: ``found``) that belongs to another input or model, naming
    what differs."""
    differs = []
    for key, value in wanted.items():
        have = found.get(key)
        have = have.tolist() if isinstance(have, np.ndarray) else have
        have = have.decode() if isinstance(have, bytes) else have
        if have != value:
            differs.append(f"{key}: file has {have!r}, this run {value!r}")
    if differs:
        source = found.get("source_path", "?")
        raise EncodeJobError(f"{path} belongs to another encoding (of {source}, model {found.get('model', '?')!r}): "
                             + "; ".join(differs) + ". Remove it or choose another --out; nothing was changed.")


@dataclass(frozen=True)
class LabelColumn:
    """What is copied beside the latents: ``labels`` (the stored label values) or, for a dataset whose factors follow
    from the row index (MPI3D), ``factors``; ``read`` takes a slice of rows."""

    key: str
    read: Callable[[slice], np.ndarray]
    factor_names: tuple[str, ...] = ()


def label_column(data) -> LabelColumn | None:
    """The dataset's labels (or row-index factors) to store beside its latents; None for a dataset with neither."""
    if data.has_labels:
        return LabelColumn("labels", data.read_labels, tuple(data.factor_names))
    if data.factor_sizes:
        return LabelColumn("factors", data.read_factors, tuple(data.factor_names))
    return None


def latents_attrs(identity: dict, source_path: Path, probe_latent: np.ndarray) -> dict:
    """The attributes of a latents file, in the order they are written."""
    return {**identity, "source_path": str(Path(source_path).resolve()),
            "probe_latent": np.asarray(probe_latent, np.float32)}


def write_latents_layout(path: Path, attrs: dict, rows: int, dim: int, labels: LabelColumn | None,
                         first_row: int = 0) -> None:
    """An HDF5 file of ``rows`` latents in the layout of the module docstring, written at ``path``: the attributes,
    ``latents`` (NaN) and ``committed`` (0) allocated at full size, and the labels of dataset rows
    ``first_row .. first_row + rows - 1`` copied in.

    The one home of the layout: ``sae encode`` writes its output with it, the Ray engine its shards and their merge."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # storage allocated now: later writes touch no metadata
    with h5py.File(path, "w", libver="earliest") as f:  # superblock v0: no "open for writing" flag to trip on
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_dataset("latents", (rows, dim), np.float32, fillvalue=np.nan, dcpl=dcpl)
        f.create_dataset("committed", (), np.int64, data=0)
        if labels is not None:
            first = np.asarray(labels.read(slice(first_row, first_row + 1)))
            column = f.create_dataset(labels.key, (rows, *first.shape[1:]), first.dtype, dcpl=dcpl)
            for start in range(0, rows, LABEL_WINDOW):
                stop = min(rows, start + LABEL_WINDOW)
                column[start:stop] = labels.read(slice(first_row + start, first_row + stop))
            if labels.factor_names:
                column.attrs["factor_names"] = list(labels.factor_names)


def create_latents_file(path: Path, attrs: dict, rows: int, dim: int, labels: LabelColumn | None) -> None:
    """:func:`write_latents_layout` under a temporary name, then renamed to ``path``: creation is atomic."""
    tmp = path.with_name(path.name + ".tmp")
    write_latents_layout(tmp, attrs, rows, dim, labels)
    os.replace(tmp, path)


def _create(path: Path, config: EncodeJobConfig, data, identity: dict, probe_latent: np.ndarray) -> None:
    """The job's full-size output for ``data`` (labels copied from it), created atomically at ``path``."""
    create_latents_file(path, latents_attrs(identity, config.data, probe_latent), len(data), len(probe_latent),
                        label_column(data))


# --------------------------------------------------------------------------------------------------- the job


def connect_servers(config: EncodeJobConfig, data) -> list[SAEClient]:
    """Clients for the servers that answer, each checked to serve an encoder for these images."""
    clients, errors = [], []
    for url in config.urls:
        client = SAEClient(url, model=config.model, timeout_s=config.timeout_s, retry=config.retry,
                           shared_memory=config.shared_memory)
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
        if list(info.input("IMAGE").dims) != list(data.shape[1:]):
            for c in clients + [client]:
                c.close()
            raise InvalidInputError(f"{info.name} at {url}: input IMAGE takes images of shape "
                                    f"{list(info.input('IMAGE').dims)}, but {config.data} holds {list(data.shape[1:])}",
                                    info.name, "IMAGE")
        clients.append(client)
    if not clients:
        raise EncodeJobError("encode: no server reachable: " + "; ".join(errors))
    return clients


def check_probe(pool: ServerPool, probe_image: np.ndarray, stored: np.ndarray | None, where: Path) -> np.ndarray:
    """The probe image's latent from every live server; all must agree (with each other and with ``stored``)."""
    reference = stored
    for server in pool.servers:
        try:
            latent = server.client.encode(probe_image)[0]
        except ServerUnavailableError:
            pool.mark_down(server.url)
            continue
        if reference is None:
            reference = latent
        elif latent.shape != reference.shape or not np.allclose(latent, reference, PROBE_RTOL, PROBE_ATOL):
            whose = f"the model that wrote {where}" if stored is not None else f"the server at {pool.servers[0].url}"
            raise EncodeJobError(f"{server.client.served_name('encode')} at {server.url} serves a different model "
                                 f"than {whose} (the probe image's latents differ); refusing to mix them")
    if reference is None:
        raise EncodeJobError("encode: no server answered the probe request")
    return reference


def throttle(started: float, sent: int, rate: float | None) -> None:
    if rate:
        wait = started + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def run_encode_job(config: EncodeJobConfig, progress_stream: TextIO | None = None,
                   metrics: EncodeMetrics | None = None) -> EncodeReport:
    """Encode ``config.data`` into ``config.out`` (see the module docstring); returns what this run did."""
    data = open_dataset(config.data)
    try:
        return _run(config, data, progress_stream, metrics)
    finally:
        data.close()


def _run(config: EncodeJobConfig, data, progress_stream, metrics) -> EncodeReport:
    n = len(data)
    if n == 0:
        raise EncodeJobError(f"{config.data} holds no images")
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


def _read_existing(path: Path, identity: dict) -> np.ndarray:
    """Check that an existing output belongs to this run; return its probe latent."""
    try:
        with h5py.File(path, "r") as f:
            check_identity(path, f.attrs, identity)
            return np.asarray(f.attrs["probe_latent"], np.float32)
    except (OSError, KeyError) as e:
        raise EncodeJobError(f"{path} exists but is not a readable file of latents ({e}); remove it or choose "
                             "another --out") from e


@dataclass(frozen=True)
class _RawDataset:
    """A contiguous, preallocated HDF5 dataset written as raw bytes at its offset in the file."""

    fd: int
    offset: int
    dtype: np.dtype
    row_bytes: int

    def write(self, row: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, self.dtype).tobytes()
        position, view = self.offset + row * self.row_bytes, memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written


class RawDatasets:
    """``latents`` and ``committed`` of an output file, written with ``pwrite`` instead of through HDF5.

    Only raw bytes of datasets allocated at creation change (the module docstring), so HDF5 metadata is never
    written after creation; and a failed write (a full disk) leaves no HDF5 library state half-flushed, which made
    h5py fail on close and the interpreter crash at exit."""

    def __init__(self, path: Path):
        self.path = path
        with h5py.File(path, "r") as f:
            layout = {key: (f[key].id.get_offset(), f[key].dtype, f[key].shape) for key in ("latents", "committed")}
            self.committed_value = int(f["committed"][()])
        if any(offset is None for offset, _, _ in layout.values()):
            raise EncodeJobError(f"{path} has no preallocated latents/committed datasets; remove it and run again")
        self.fd = os.open(path, os.O_WRONLY)
        (l_off, l_dtype, l_shape), (c_off, c_dtype, _) = layout["latents"], layout["committed"]
        self.latents = _RawDataset(self.fd, l_off, l_dtype, l_dtype.itemsize * int(np.prod(l_shape[1:])))
        self.committed = _RawDataset(self.fd, c_off, c_dtype, c_dtype.itemsize)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def __enter__(self) -> "RawDatasets":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _encode_chunks(config: EncodeJobConfig, data, pool: ServerPool, metrics: EncodeMetrics,
                   progress_stream) -> EncodeReport:
    n = len(data)
    started = time.monotonic()
    with RawDatasets(config.partial) as f:
        latents, committed_marker = f.latents, f.committed
        resumed_from = committed = f.committed_value
        metrics.total.set(n)
        metrics.committed.set(committed)
        progress = Progress(n, committed, progress_stream) if config.progress else None
        if progress and committed:
            progress.stream.write(f"resuming {config.partial} at image {committed:,} of {n:,}\n")
        pending: deque[tuple[int, int, Future]] = deque()
        executor = ThreadPoolExecutor(max_workers=config.in_flight, thread_name_prefix="sae-encode")
        next_start = committed
        try:
            while committed < n:
                while next_start < n and len(pending) < config.in_flight:
                    throttle(started, next_start - resumed_from, config.max_images_per_second)
                    stop = min(n, next_start + config.batch_size)
                    images = data.read(slice(next_start, stop))
                    pending.append((next_start, stop, executor.submit(
                        pool.encode, images, f"images {next_start}..{stop - 1}")))
                    next_start = stop
                start, stop, future = pending.popleft()
                try:
                    chunk = future.result()
                except ClientError as e:
                    raise EncodeJobError(f"{e}. {committed:,} of {n:,} images are committed in {config.partial}; "
                                         "run the same command again to resume") from e
                try:
                    latents.write(start, chunk)
                    f.sync()  # the chunk's bytes first ...
                    committed_marker.write(0, np.array(stop))
                    f.sync()  # ... then the marker that says they are final
                except OSError as e:  # a full disk, a quota: what was committed before stays committed
                    raise EncodeJobError(f"writing images {start:,}..{stop - 1:,} into {config.partial} failed "
                                         f"({e}); {committed:,} of {n:,} images are committed: make room and run "
                                         "the same command again to resume") from None
                committed = stop
                metrics.images.inc(stop - start)
                metrics.committed.set(committed)
                if progress:
                    progress.update(committed)
        finally:
            for _, _, future in pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)
        if progress:
            progress.finish()
    return EncodeReport(config.out, n, resumed_from, n - resumed_from, time.monotonic() - started,
                        pool.requests_per_server(), pool.failures)
