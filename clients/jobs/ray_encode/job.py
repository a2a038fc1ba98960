"""The driver of ``sae encode --engine ray``: plans the shards, runs the Ray Data pipeline, keeps the manifest.

Pipeline: a :class:`ray.data.Datasource` with one read task per missing shard (each opens the dataset with
:func:`sae.core.datasets.open_dataset` and reads only its row range) → ``map_batches`` over an actor pool of
:class:`~sae.clients.jobs.ray_encode.actor.ShardEncoder` s (one block per call) → one small result row per block back
to the
driver. The driver never holds images or latents: only the plan, the manifest and those rows.

Failures: a lost actor is restarted and its block retried, ``actor_restarts`` times; a block whose servers fail is
retried inside the actor (``block_attempts``). A block that still fails is dropped by Ray Data
(``max_errored_blocks`` unlimited) or comes back as a ``failed`` row; either way the other blocks go on, and the
report (and ``manifest.json``) names the failed row ranges. Running the same command again encodes only the shards
whose files are missing.

Bitwise equality with the single-process job needs the same batches (``shard_rows`` is a multiple of
``batch_size``) and requests that the server's dynamic batcher never merges: at most as many actors per server as
the encoder has instances (2 in the exported configs, so a request never waits in the queue), or a batch size above
half the encoder's ``max_batch_size`` (the default 256 is the whole of it), with which no two requests fit one batch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import numpy as np

from sae.clients.jobs.encode_job import connect_servers
from sae.clients.jobs.encode_servers import ServerPool, check_probe
from sae.clients.jobs.ray_encode.config import RayEncodeConfig, resolve_url
from sae.clients.jobs.ray_encode.shards import (
    FailedShard,
    Manifest,
    Shard,
    check_manifest,
    describe_ranges,
    missing_shards,
    read_manifest,
    write_manifest,
)
from sae.core.datasets import ImageSource, open_dataset
from sae.core.errors import EncodeJobError
from sae.core.latents_file import fingerprint, identity_of, label_column
from sae.core.progress_bar import encode_progress

if TYPE_CHECKING:
    from ray.data import Datasource, ReadTask
    from ray.data.block import Block
    from ray.data.context import DataContext

ACTOR_CPUS = 0.25  # an encoder actor mostly waits for its server; the rest of the CPUs read and decode blocks
TASKS_QUEUED_PER_ACTOR = 2  # one block being encoded, the next one waiting beside it


@dataclass
class RayEncodeReport:
    out: Path
    images: int  # in the dataset
    shards: int  # in the plan
    skipped: int  # shards complete before this run
    encoded: int  # shards this run wrote
    encoded_images: int
    seconds: float  # the pipeline, from the first read task to the last result (no cluster start-up)
    block_seconds: list[float] = field(default_factory=list)  # per block, in its actor: requests and shard write
    request_seconds: list[float] = field(default_factory=list)  # per block, waiting for the servers
    block_finished_at: list[float] = field(default_factory=list)  # per block, time.time() in its actor
    started_at: float = 0.0  # time.time() when the pipeline started
    failed: list[FailedShard] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.encoded_images / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if not self.encoded and not self.failed:
            return (
                f"{self.out} already holds all {self.shards:,} shards; nothing to do. Join them with "
                f"`sae encode --merge {self.out} --out latents.h5`"
            )
        skipped = f", {self.skipped:,} were already done" if self.skipped else ""
        line = (
            f"encoded {self.encoded:,} of {self.shards:,} shards ({self.encoded_images:,} images){skipped} into "
            f"{self.out} in {self.seconds:.1f} s ({self.images_per_second:,.0f} images/s)"
        )
        if self.failed:
            ranges = "; ".join(f"images {f['start']:,}..{f['stop'] - 1:,}: {f['error']}" for f in self.failed[:8])
            shards = f"{len(self.failed)} shard{'s' if len(self.failed) != 1 else ''}"
            return f"{line}; {shards} FAILED ({ranges}); run the same command again to encode them"
        return f"{line}. Join them with `sae encode --merge {self.out} --out latents.h5`"


def run_ray_encode(config: RayEncodeConfig, progress_stream: TextIO | None = None) -> RayEncodeReport:
    """Encode ``config.data`` into shards under ``config.out`` on the Ray cluster at ``config.address`` (a local one
    when None; an initialised Ray is used as it is)."""
    try:
        import ray
    except ImportError as e:
        raise EncodeJobError(f"--engine ray needs Ray ({e}): pip install 'sae-serving[scale]'") from None

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")  # type: ignore[arg-type]  # Ray takes level names too (its default is "info")
    try:
        return _run(config, progress_stream)
    finally:
        if started_here:
            ray.shutdown()


def _manifest_for(config: RayEncodeConfig, data: ImageSource) -> Manifest:
    """This run's manifest, without its probe latent yet (the servers give it)."""
    labels = label_column(data)
    return Manifest(
        identity=identity_of(config.model, data, fingerprint(data)),
        source_path=str(config.data.resolve()),
        probe_latent=[],
        batch_size=config.batch_size,
        shard_rows=config.shard_rows,
        label_key=labels.key if labels else None,
        factor_names=list(labels.factor_names) if labels else [],
    )


def _probe(config: RayEncodeConfig, data: ImageSource, stored: list[float] | None) -> list[float]:
    """The probe image's latent from the servers the driver reaches (``node:PORT`` on its own node), checked
    against the manifest's when it has one; every actor checks its own servers the same way."""
    import ray

    node_ip = cast(Callable[[], str], ray.util.get_node_ip_address)()  # untyped in Ray
    urls = tuple(resolve_url(u, node_ip) for u in config.urls)
    pool = ServerPool(connect_servers(config.job_config(urls), data))
    try:
        reference = None if stored is None else np.asarray(stored, np.float32)
        probe = check_probe(pool, data.read(slice(0, 1)), reference, config.out)
        latent: list[float] = probe.astype(np.float32).tolist()
        return latent
    finally:
        pool.close()


def _run(config: RayEncodeConfig, progress_stream: TextIO | None) -> RayEncodeReport:
    data = open_dataset(config.data)
    try:
        if len(data) == 0:
            raise EncodeJobError(f"{config.data} holds no images")
        wanted = _manifest_for(config, data)
        manifest = read_manifest(config.out)
        if manifest is not None:
            check_manifest(config.out, manifest, wanted)  # before any request
        wanted.probe_latent = _probe(config, data, manifest.probe_latent if manifest else None)
        image_shape = tuple(data.shape[1:])
    finally:
        data.close()
    if manifest is None:
        manifest = wanted
    manifest.failed = []
    write_manifest(config.out, manifest)
    shards = manifest.shards()
    todo = missing_shards(config.out, manifest)
    skipped = len(shards) - len(todo)
    report = RayEncodeReport(config.out, manifest.images, len(shards), skipped, 0, 0, 0.0)
    if todo:
        _encode(config, manifest, todo, image_shape, report, progress_stream)
    write_manifest(config.out, manifest)
    return report


def _encode(
    config: RayEncodeConfig,
    manifest: Manifest,
    todo: list[Shard],
    image_shape: tuple[int, ...],
    report: RayEncodeReport,
    progress_stream: TextIO | None,
) -> None:
    import ray

    from sae.clients.jobs.ray_encode.actor import ShardEncoder

    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = -1  # a block that fails for good is dropped; the others go on
    block_bytes = config.shard_rows * int(np.prod(image_shape)) + 8 * config.shard_rows
    context.target_max_block_size = max(context.target_max_block_size or 0, 2 * block_bytes)  # one block per shard
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    blocks = ray.data.read_datasource(shard_datasource(config.data, todo, image_shape), override_num_blocks=len(todo))
    results = blocks.map_batches(
        ShardEncoder,
        fn_constructor_kwargs={"config": config, "manifest": manifest},
        batch_size=None,
        batch_format="numpy",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=config.actors, max_tasks_in_flight_per_actor=TASKS_QUEUED_PER_ACTOR),
        num_cpus=ACTOR_CPUS,
        scheduling_strategy="SPREAD",  # actors over the nodes, each near its node's server
        max_restarts=config.actor_restarts,
        max_task_retries=config.actor_restarts,
    )
    done_images = manifest.images - sum(s.rows for s in todo)
    progress = encode_progress(manifest.images, config.progress, progress_stream, done_images)
    answered: set[int] = set()
    started, report.started_at = time.monotonic(), time.time()
    for row in results.iter_rows():
        start, stop = int(row["start"]), int(row["stop"])
        answered.add(start)
        if row["status"] == "done":
            report.encoded += 1
            report.encoded_images += stop - start
            report.block_seconds.append(float(row["seconds"]))
            report.request_seconds.append(float(row["request_seconds"]))
            report.block_finished_at.append(float(row["finished_at"]))
            done_images += stop - start
            progress.update_to(done_images)
        else:
            report.failed.append({"start": start, "stop": stop, "error": str(row["error"])})
    report.seconds = time.monotonic() - started
    progress.close()
    lost = [s for s in todo if s.start not in answered]
    report.failed += [
        {
            "start": s.start,
            "stop": s.stop,
            "error": f"its task failed after {config.actor_restarts} actor restarts (see the Ray logs)",
        }
        for s in lost
    ]
    report.failed.sort(key=lambda f: f["start"])
    manifest.failed = report.failed
    if report.failed and progress_stream is not None:
        failed = [Shard(f["start"], f["stop"]) for f in report.failed]
        progress_stream.write(f"failed: {describe_ranges(failed)}\n")


@functools.lru_cache(maxsize=4)
def _reader(data_path: Path) -> ImageSource:
    """One reader per dataset per Ray worker process: its workers run many read tasks, and opening a reader costs
    (a JPEG folder is listed, the usable rows are computed)."""
    return open_dataset(data_path)


def _read_block(data_path: Path, shard: Shard) -> Iterator[Block]:
    """One read task: the shard's rows, by the dataset's own reader, as one block (row numbers beside images)."""
    from ray.data.block import BlockAccessor

    images = _reader(data_path).read(slice(shard.start, shard.stop))
    yield BlockAccessor.batch_to_block({"row": np.arange(shard.start, shard.stop, dtype=np.int64), "image": images})


def shard_datasource(data_path: Path, shards: list[Shard], image_shape: tuple[int, ...]) -> Datasource:
    """A Ray Data source with one read task per shard (defined here, so that importing this module needs no Ray)."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    image_bytes = int(np.prod(image_shape))

    class ShardSource(Datasource):
        def estimate_inmemory_data_size(self) -> int:
            return sum(s.rows for s in shards) * (image_bytes + 8)

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
        ) -> list[ReadTask]:
            return [
                ReadTask(
                    functools.partial(_read_block, data_path, s),
                    BlockMetadata(
                        num_rows=s.rows, size_bytes=s.rows * (image_bytes + 8), exec_stats=None, input_files=None
                    ),
                )
                for s in shards
            ]

        def get_name(self) -> str:
            return "ShardedImages"

    return cast(Callable[[], "Datasource"], ShardSource)()  # Ray's Datasource leaves __init__ unannotated
