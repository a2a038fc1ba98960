"""Settings of ``sae encode --engine ray``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sae.clients.jobs.encode_job import EncodeJobConfig
from sae.clients.retry import RetryPolicy
from sae.core.errors import EncodeInputError, UsageError
from sae.core.wire import DEFAULT_URL

NODE_URL_PREFIX = "node:"  # "node:8001": the server listening on port 8001 of each actor's own Ray node


def resolve_url(url: str, node_ip: str) -> str:
    """``node:PORT`` → ``NODE_IP:PORT`` (the server on the actor's own node); any other address unchanged."""
    if not url.startswith(NODE_URL_PREFIX):
        return url
    port = url[len(NODE_URL_PREFIX) :]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"encode: --url {url!r}: expected node:PORT with a port in 1..65535")
    return f"{node_ip}:{port}"


@dataclass(frozen=True)
class RayEncodeConfig:
    data: Path
    out: Path  # a folder: manifest.json and shards/ (on a file system every node sees)
    model: str = ""  # the name the model set was exported under ("" = unprefixed)
    urls: tuple[str, ...] = (DEFAULT_URL,)  # each actor starts at its own one and fails over to the others
    address: str | None = None  # ray.init address: None starts a local cluster, "auto" joins one, "ray://..."
    actors: int = 2  # encoder actors (one request in flight each)
    batch_size: int = 256  # images per request
    shard_rows: int = 4096  # images per Ray block and per shard file; a multiple of batch_size
    timeout_s: float = 60.0  # per request, retries included
    block_attempts: int = 3  # tries of a block whose servers failed, before it is reported as failed
    actor_restarts: int = 3  # times a lost actor is restarted and its block retried
    max_images_per_second: float | None = None  # per actor: send no faster than this (share servers politely)
    outage_wait_s: float = 10.0  # within one try: every server down, wait this long for one to come back
    retry: RetryPolicy = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.5)
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "urls", tuple(dict.fromkeys(self.urls)))
        if not self.urls:
            raise UsageError("encode: give at least one --url")
        for url in self.urls:
            resolve_url(url, "127.0.0.1")  # a malformed node:PORT is refused here, not in an actor
        for name, value in (
            ("--actors", self.actors),
            ("--batch-size", self.batch_size),
            ("--shard-rows", self.shard_rows),
            ("--block-attempts", self.block_attempts),
        ):
            if value < 1:
                raise UsageError(f"encode: {name} must be >= 1, got {value}")
        if self.actor_restarts < 0:
            raise UsageError(f"encode: --actor-restarts must be >= 0, got {self.actor_restarts}")
        if self.max_images_per_second is not None and self.max_images_per_second <= 0:
            raise UsageError(f"encode: --max-rate must be positive, got {self.max_images_per_second}")
        if self.shard_rows % self.batch_size:
            raise UsageError(
                f"encode: --shard-rows ({self.shard_rows}) must be a multiple of --batch-size "
                f"({self.batch_size}), so that every request holds the images a single-process run "
                "sends together"
            )
        if self.out.suffix.lower() in (".h5", ".hdf5"):
            raise EncodeInputError(
                f"encode --engine ray: --out {self.out} must be a folder for the shards and their "
                "manifest; `sae encode --merge DIR --out latents.h5` writes the single file"
            )

    def job_config(self, urls: tuple[str, ...] | None = None) -> EncodeJobConfig:
        """The single-process job's settings for the same servers and batches: its server checks and probe are
        reused, and it is what the Ray path is compared with."""
        return EncodeJobConfig(
            data=self.data,
            out=self.out / "latents.h5",
            model=self.model,
            urls=urls or self.urls,
            in_flight=1,
            batch_size=self.batch_size,
            timeout_s=self.timeout_s,
            outage_wait_s=self.outage_wait_s,
            retry=self.retry,
            progress=False,
        )
