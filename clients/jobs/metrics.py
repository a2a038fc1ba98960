"""Prometheus metrics of client-side jobs (``sae encode --metrics-port``), served on the loopback interface only.

Each :class:`EncodeMetrics` has its own registry, so several jobs (or tests) in one process do not collide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sae.core.errors import UsageError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class MetricsServer:
    """A running /metrics endpoint; ``close()`` stops it."""

    host: str
    port: int
    _server: WSGIServer  # what prometheus_client's start_http_server runs

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class EncodeMetrics:
    """Counters of one ``sae encode`` run: images committed, failed requests, request latency per server."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.images = Counter(
            "sae_encode_images", "Images encoded and committed to the output file", registry=self.registry
        )
        self.failures = Counter(
            "sae_encode_failures",
            "Encode requests that failed (after the client's retries)",
            ["server", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sae_encode_request_seconds",
            "Latency of successful encode requests",
            ["server"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.committed = Gauge(
            "sae_encode_committed_images",
            "Images committed to the output file so far (earlier runs of a resumed job included)",
            registry=self.registry,
        )
        self.total = Gauge("sae_encode_dataset_images", "Images in the dataset being encoded", registry=self.registry)
        self.in_flight = Gauge(
            "sae_encode_in_flight_requests", "Encode requests sent and not yet answered", registry=self.registry
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` (port 0: a free one; see the returned ``port``)."""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:  # a name other than localhost
            loopback = False
        if not loopback:
            raise UsageError(f"metrics host {host!r} is not a loopback address")
        if not 0 <= port <= 65535:
            raise UsageError(f"--metrics-port {port} is not a port number")
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {e}") from e
        return MetricsServer(host, server.server_port, server)
