"""Bounded, jittered retries of UNAVAILABLE and DEADLINE_EXCEEDED, and the client error each final gRPC error
becomes (shared by the sync and asyncio clients): :func:`call_with_retries` and its asyncio twin
:func:`call_with_retries_async` drive one call through the same :class:`Retrier` decisions."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tritonclient.utils import InferenceServerException

from sae.core.errors import ClientError, ClientTimeoutError, InferenceError, ModelNotServedError, ServerUnavailableError

_RETRYABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of UNAVAILABLE / DEADLINE_EXCEEDED with full-jitter exponential backoff."""

    attempts: int = 4  # tries in all, the first included
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if not 0 <= self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("RetryPolicy needs 0 <= initial_backoff_s <= max_backoff_s")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_backoff_s, self.initial_backoff_s * 2**retry))


class Retrier:
    """One call's retry state: its deadline and the tries made so far (shared by the sync and asyncio clients)."""

    def __init__(self, policy: RetryPolicy, timeout_s: float, model: str, url: str, rng: random.Random):
        self.policy, self.timeout_s, self.model, self.url, self.rng = policy, timeout_s, model, url, rng
        self.deadline = time.monotonic() + timeout_s
        self.tries = 0

    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 1e-3)

    def next_delay(self, error: InferenceServerException) -> float:
        """Seconds to wait before the next try, or raise the client error for ``error`` when it is final."""
        self.tries += 1
        status = str(error.status())
        if status in _RETRYABLE and self.tries < self.policy.attempts:
            delay = self.policy.backoff_s(self.tries - 1, self.rng)
            if time.monotonic() + delay < self.deadline:
                return delay
        raise client_error(error, self.model, self.url, self.tries, self.timeout_s)


def call_with_retries(call: Callable[[float], T], retrier: Retrier) -> T:
    """``call(timeout_s)`` until it returns, given the time left before the deadline; a gRPC error is retried after
    the retrier's backoff, or raised as its client error when the retrier says it is final."""
    while True:
        try:
            return call(retrier.remaining_s())
        except InferenceServerException as e:
            time.sleep(retrier.next_delay(e))


async def call_with_retries_async(call: Callable[[float], Awaitable[T]], retrier: Retrier) -> T:
    """The asyncio twin of :func:`call_with_retries`: ``await call(timeout_s)``, backing off with ``asyncio.sleep``."""
    while True:
        try:
            return await call(retrier.remaining_s())
        except InferenceServerException as e:
            await asyncio.sleep(retrier.next_delay(e))


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def client_error(
    error: InferenceServerException, model: str, url: str, tries: int = 1, timeout_s: float | None = None
) -> ClientError:
    status, message = str(error.status()), error.message() or str(error)
    if status == "StatusCode.UNAVAILABLE":
        return ServerUnavailableError(f"{model}: server at {url} unavailable after {_tries(tries)}: {message}")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return ClientTimeoutError(
            f"{model}: no answer from {url} within the {timeout_s:g} s timeout ({_tries(tries)}): {message}"
        )
    if status == "StatusCode.NOT_FOUND" or "unknown model" in message:
        return ModelNotServedError(
            f"{model}: not served at {url} ({message}); check the client's model= prefix "
            "and that `sae export --name` wrote it",
            model,
            status,
        )
    return InferenceError(f"{model}: server at {url} refused the request: {message}", model, status)
