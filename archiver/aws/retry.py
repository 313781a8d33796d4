"""Retry policy, rate limiting and waiting: one mechanism for every AWS call we repeat.

* :data:`RETRYABLE_CODES` — throttling and transient server failures, the codes the error
  table (:mod:`archiver.aws.error_table`) maps to ``Throttled`` and ``ServiceUnavailable``. Dropped
  connections and HTTP 5xx are retryable too; anything else (a ``ValidationException``, a
  missing table) is not, however often it is tried.
* :class:`RetryPolicy` — exponential backoff with full jitter (AWS's recommendation), bounded
  by an attempt limit *and* a deadline, whichever comes first; :func:`call` and
  :func:`call_async` run one call under it.
* :class:`RateLimiter` — spreads calls (or items) to at most N per second, for threads and
  coroutines alike; :class:`AdaptiveRate` moves its rate by AIMD (additive increase while
  calls succeed, multiplicative decrease on throttling), under a fixed cap.
* :func:`wait_until` — polls until a resource is ready, giving up at a deadline and at once on
  a failed or absent status.

Which layer retries, so that the two never multiply (a throttled scan page once could be
tried botocore's 5 × our 10 times):

* botocore's standard mode (5 attempts) retries the one-off control-plane calls (CreateBackup,
  RestoreTableToPointInTime, UpdateTable, …): a short burst of retries is all they need.
* A loop that must outlast sustained throttling — stream reads, scan pages, batch writes —
  retries here. Where we create its client ourselves (the poller's Streams client, the
  snapshot's scan client) botocore's retries are off (``AwsSettings.client(service,
  own_retries=True)``), so the consumer's stop and the deadline apply to every attempt. Where
  a client is passed in with botocore's retries on, :class:`Attempts` counts the attempts
  botocore already made (``ResponseMetadata.RetryAttempts``) against the same limit: a call is
  tried at most ``max_attempts`` times in all, whichever layer made them.
* Partial success (``UnprocessedItems``) is never seen by botocore: only our loop retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import botocore.exceptions

from archiver.aws.error_table import (
    ERROR_CODES,
    AwsError,
    ServiceUnavailable,
    Throttled,
    client_error_code,
    translate_client_error,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLING_CODES = frozenset(code for code, cls in ERROR_CODES.items() if cls is Throttled)
TRANSIENT_CODES = frozenset(code for code, cls in ERROR_CODES.items() if cls is ServiceUnavailable)
RETRYABLE_CODES = THROTTLING_CODES | TRANSIENT_CODES


def is_retryable(exc: BaseException) -> bool:
    """Throttling, server-side failures and dropped connections: worth trying again."""
    if isinstance(exc, botocore.exceptions.HTTPClientError):
        return True
    if isinstance(exc, Throttled | ServiceUnavailable):
        return True
    code = client_error_code(exc)
    if code in RETRYABLE_CODES:
        return True
    if code:
        # A 5xx whose code the table does not know; a 4xx never is.
        response = getattr(exc, "response", None) or {}
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return isinstance(status, int) and status >= 500
    return False


class GaveUp(AwsError):
    """A retryable failure lasted past the retry policy's attempt limit or deadline."""


class Stopped(Exception):
    """A call was abandoned while retrying because the caller is stopping."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, up to ``max_attempts`` calls and
    ``give_up_after_seconds`` since the first, whichever comes first (``None``: no such
    limit). The defaults suit the stream poller: at most ~10 minutes of throttling (about 100
    attempts at a 10 s cap) before the failure is reported."""

    base_seconds: float = 0.2
    cap_seconds: float = 10.0
    max_attempts: int | None = 100
    give_up_after_seconds: float | None = 600.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` + 1 (``attempt`` from 0)."""
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** min(attempt, 40)))

    def start(self, what: str, clock: Callable[[], float] = time.monotonic) -> Attempts:
        """The retry state of one call named ``what`` (for messages)."""
        return Attempts(self, what, clock)


# Stream reads: they must survive long throttling while the poller runs (the stop ends them).
STREAMS = RetryPolicy()
# Scan pages and batch writes: a restore or snapshot waits minutes, not forever.
DATA = RetryPolicy(base_seconds=0.05, cap_seconds=5.0, max_attempts=30, give_up_after_seconds=600)


class Attempts:
    """One call's retries under a :class:`RetryPolicy`."""

    def __init__(self, policy: RetryPolicy, what: str, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.what = what
        self.clock = clock
        self.started = clock()
        self.retries = 0  # our retries
        self.calls = 0  # HTTP attempts so far, botocore's included

    def _count(self, answer: BaseException | Mapping[str, Any] | None) -> None:
        response: Any = getattr(answer, "response", answer)
        metadata = response.get("ResponseMetadata", {}) if isinstance(response, Mapping) else {}
        botocore_retries = metadata.get("RetryAttempts", 0)
        self.calls += 1 + (botocore_retries if isinstance(botocore_retries, int) else 0)

    def _exhausted(self) -> str | None:
        elapsed = self.clock() - self.started
        if self.policy.max_attempts is not None and self.calls >= self.policy.max_attempts:
            return f"gave up after {self.calls} attempts in {elapsed:.0f} s"
        limit = self.policy.give_up_after_seconds
        if limit is not None and elapsed > limit:
            return f"gave up after {elapsed:.0f} s ({self.calls} attempts)"
        return None

    def next_delay(
        self, response: Mapping[str, Any] | None = None, reason: str = "unprocessed items"
    ) -> float:
        """The pause before trying again after a partial success (``response``); raises
        :class:`GaveUp` when the policy is exhausted."""
        self._count(response)
        why = self._exhausted()
        if why:
            raise GaveUp(f"{self.what}: {why}: {reason}")
        return self._advance(reason)

    def backoff(self, exc: BaseException) -> float:
        """The pause before trying again after ``exc``.

        Raises ``exc`` itself when it is not retryable (the caller decides what it means),
        and the translated error (message saying the policy gave up) when the policy is
        exhausted.
        """
        if not is_retryable(exc):
            raise exc
        self._count(exc)
        why = self._exhausted()
        if why:
            if client_error_code(exc):
                raise translate_client_error(exc, f"{self.what} ({why})") from exc
            raise GaveUp(f"{self.what}: {why}: {exc}") from exc
        return self._advance(client_error_code(exc) or type(exc).__name__)

    def _advance(self, reason: str) -> float:
        delay = self.policy.delay(self.retries)
        # Quiet for a blip, loud when it persists, never a line per retry.
        level = logging.WARNING if self.retries == 3 or self.retries % 20 == 19 else logging.DEBUG
        log.log(level, "%s: %s, retrying in %.2f s", self.what, reason, delay)
        self.retries += 1
        return delay


def call(
    fn: Callable[[], T],
    what: str,
    policy: RetryPolicy = DATA,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried under ``policy`` while it fails in a retryable way.

    A non-retryable AWS error is raised translated (:func:`translate_client_error`).
    """
    attempts = policy.start(what)
    while True:
        try:
            return fn()
        except Exception as exc:
            try:
                delay = attempts.backoff(exc)
            except botocore.exceptions.ClientError as final:
                raise translate_client_error(final, what) from final
        sleep(delay)


async def call_async(
    fn: Callable[[], Awaitable[T]],
    what: str,
    policy: RetryPolicy = DATA,
    *,
    stop: asyncio.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``await fn()``, retried under ``policy``; a non-retryable failure is raised as the
    client raised it (the caller decides). Raises :class:`Stopped` when ``stop`` is set
    while retrying."""
    attempts = policy.start(what)
    while True:
        try:
            return await fn()
        except Exception as exc:
            delay = attempts.backoff(exc)
            if stop is not None and stop.is_set():
                raise Stopped(what) from exc
            if on_retry is not None:
                on_retry(exc)
        await sleep_unless(stop, delay)


async def sleep_unless(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, returning early when ``stop`` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    if stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# -- rate limiting --------------------------------------------------------------------------


class RateLimiter:
    """At most ``per_second`` units (calls, items) per second, shared by every thread and
    coroutine that uses it (``None``: no limit).

    Each caller reserves its slot under a lock and then sleeps outside it, so a long wait
    never blocks the others' reservations.
    """

    def __init__(
        self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self, units: float = 1) -> float:
        """Book ``units`` and return how long to wait before using them."""
        if not self.per_second:
            return 0.0
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + units / self.per_second
        return start - now

    def acquire(self, units: float = 1, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block this thread until ``units`` may go out."""
        delay = self.reserve(units)
        if delay > 0:
            sleep(delay)

    async def wait(self, units: float = 1) -> None:
        """Suspend this coroutine until ``units`` may go out."""
        delay = self.reserve(units)
        if delay > 0:
            await asyncio.sleep(delay)


class AdaptiveRate:
    """A :class:`RateLimiter` whose rate follows AIMD, as TCP's congestion window does.

    It starts at ``initial`` units per second; every throttle (a throttling error or a reply
    with unprocessed items) divides the rate by ``1 / decrease`` — at most once per
    ``cooldown_seconds``, so that the many calls in flight when a table starts throttling count
    as one signal — and every ``cooldown_seconds`` without a throttle add ``increase`` units.
    The rate never leaves ``[floor, cap]`` (``cap`` None: no upper bound).

    Args:
        initial: the starting rate (what a restore's target takes at once, in items per second).
        cap: the highest rate ever used (``--max-write-rate``), or None.
        increase: units per second added per quiet interval (default: 5 % of ``initial``).
        decrease: the factor applied on a throttle.
        floor: the lowest rate (calls must keep probing the table).
    """

    def __init__(
        self,
        initial: float,
        *,
        cap: float | None = None,
        increase: float | None = None,
        decrease: float = 0.5,
        floor: float = 25.0,
        cooldown_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = cap
        self.floor = min(floor, cap) if cap else floor
        self.increase = increase if increase is not None else max(initial * 0.05, 1.0)
        self.decrease = decrease
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock
        self.limiter = RateLimiter(self._bounded(initial), clock=clock)
        self.throttles = 0
        self._last_change = clock()
        self._lock = threading.Lock()

    @property
    def per_second(self) -> float:
        """The current rate."""
        return float(self.limiter.per_second or 0.0)

    def _bounded(self, rate: float) -> float:
        rate = max(self.floor, rate)
        return min(self.cap, rate) if self.cap else rate

    def acquire(self, units: float = 1, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until ``units`` may go out at the current rate."""
        self.limiter.acquire(units, sleep=sleep)

    def throttled(self) -> None:
        """A call was throttled: back off multiplicatively (once per cooldown)."""
        with self._lock:
            self.throttles += 1
            now = self.clock()
            if now - self._last_change >= self.cooldown_seconds or self.throttles == 1:
                self.limiter.per_second = self._bounded(self.per_second * self.decrease)
                self._last_change = now

    def succeeded(self) -> None:
        """A call went through: add ``increase`` once per quiet cooldown interval."""
        with self._lock:
            now = self.clock()
            if now - self._last_change >= self.cooldown_seconds:
                self.limiter.per_second = self._bounded(self.per_second + self.increase)
                self._last_change = now


# -- waiting --------------------------------------------------------------------------------


class WaitFailed(AwsError):
    """The resource waited for reached a failed status, or is gone."""


class WaitTimedOut(AwsError):
    """The resource waited for was not ready by the deadline."""


def wait_until(
    poll: Callable[[], T],
    *,
    what: str,
    ready: Callable[[T], bool],
    failed: Callable[[T], str | None] = lambda _state: None,
    poll_seconds: float,
    timeout_seconds: float,
    max_poll_seconds: float | None = None,
    growth: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_poll: Callable[[T, float], None] | None = None,
) -> T:
    """Call ``poll()`` every ``poll_seconds`` until ``ready(state)``; return that state.

    The pause grows ``growth`` times after each poll, up to ``max_poll_seconds`` (default: a
    fixed pause), so a short wait ends after a few calls and a long one costs few. Raises
    :class:`WaitFailed` as soon as ``failed(state)`` gives a reason (a FAILED status, ``None``
    for a resource that vanished, …), and :class:`WaitTimedOut` once ``timeout_seconds`` have
    passed without it being ready. ``on_poll(state, elapsed)`` sees every state (progress
    display). A poll that is throttled is retried under the data policy, pausing by ``sleep``
    too. ``sleep`` and ``clock`` are what tests replace.
    """
    started = clock()
    delay = poll_seconds
    while True:
        state = call(poll, what, sleep=sleep)
        elapsed = clock() - started
        if on_poll is not None:
            on_poll(state, elapsed)
        if ready(state):
            return state
        reason = failed(state)
        if reason:
            raise WaitFailed(f"{what}: {reason}")
        if elapsed >= timeout_seconds:
            raise WaitTimedOut(f"{what}: not ready after {timeout_seconds:.0f} s")
        sleep(delay)
        delay = delay * growth
        if max_poll_seconds is not None:
            delay = min(delay, max_poll_seconds)
