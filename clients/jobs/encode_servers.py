"""Encode requests spread over several servers (:class:`ServerPool`), the probe that checks they serve one model,
and the rate limit on sending."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sae.clients.jobs.metrics import EncodeMetrics
from sae.clients.triton_client import SAEClient
from sae.core.errors import ClientError, EncodeJobError, ServerUnavailableError

PROBE_RTOL, PROBE_ATOL = 1e-3, 1e-4  # a different model differs by far more; another runtime by less


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

    def __init__(
        self,
        clients: list[SAEClient],
        metrics: EncodeMetrics | None = None,
        cooldown_s: float = 5.0,
        outage_wait_s: float = 0.0,
    ):
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
            live = [
                (s.outstanding, (i - self._turn) % n, s)
                for i, s in enumerate(self.servers)
                if s.url not in tried and s.down_until <= now
            ]
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
                server.client = SAEClient(
                    old.url, model=old.model, timeout_s=old.timeout_s, retry=old.retry, shared_memory=old.shared_memory
                )
                server.down_until = 0.0
            self.reconnects += 1

    def mark_down(self, url: str) -> None:
        with self._lock:
            for s in self.servers:
                if s.url == url:
                    s.down_until = time.monotonic() + self.cooldown_s

    def encode(self, images: npt.NDArray[np.uint8], what: str = "") -> npt.NDArray[np.float32]:
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
                    waited = (
                        f" (waited {now - outage_started:.0f} s for one to come back)" if self.outage_wait_s else ""
                    )
                    raise EncodeJobError(
                        f"encode {what}: no server could encode them{waited}: "
                        + "; ".join(errors[-len(self.servers) :] or ["every server failed within the last few seconds"])
                    )
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


def check_probe(
    pool: ServerPool, probe_image: npt.NDArray[np.uint8], stored: npt.NDArray[np.float32] | None, where: Path
) -> npt.NDArray[np.float32]:
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
            raise EncodeJobError(
                f"{server.client.served_name('encode')} at {server.url} serves a different model "
                f"than {whose} (the probe image's latents differ); refusing to mix them"
            )
    if reference is None:
        raise EncodeJobError("encode: no server answered the probe request")
    return reference


def throttle(started: float, sent: int, rate: float | None) -> None:
    if rate:
        wait = started + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
