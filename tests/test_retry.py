"""The one retry policy, rate limiter and wait helper (``archiver.aws.retry``), and the waits built
on it: the restore target's, a backup's, an export's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from archiver.aws import retry
from archiver.aws.error_table import ERROR_CODES, InvalidRequest, Throttled
from archiver.aws.retry import (
    RETRYABLE_CODES,
    GaveUp,
    RateLimiter,
    RetryPolicy,
    Stopped,
    WaitFailed,
    WaitTimedOut,
    is_retryable,
    wait_until,
)
from archiver.aws.scan import parallel_scan
from archiver.native.backups import create_backup
from archiver.snapshots.base_snapshot import wait_for_export
from replayer.write.target_table import wait_until_active
from tests.helpers import FakeClock, client_error


def failing(errors: list[BaseException], result: Any = "ok") -> Callable[[], Any]:
    """A call that raises ``errors`` in turn, then returns ``result``; counts its calls."""

    def call() -> Any:
        call.calls += 1  # type: ignore[attr-defined]
        if errors:
            raise errors.pop(0)
        return result

    call.calls = 0  # type: ignore[attr-defined]
    return call


# -- which codes are retried -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_throttling_and_transient_codes_are_retryable(code: str) -> None:
    assert code in RETRYABLE_CODES
    assert is_retryable(client_error(code))


@pytest.mark.parametrize(
    "code",
    [
        "ValidationException",
        "ResourceNotFoundException",
        "ConditionalCheckFailedException",
        "AccessDeniedException",
        "ExpiredIteratorException",
    ],
)
def test_errors_of_the_request_are_not_retryable(code: str) -> None:
    assert code not in RETRYABLE_CODES
    assert not is_retryable(client_error(code))


def test_the_retryable_codes_are_the_error_tables_throttling_and_transient_ones() -> None:
    assert {c for c, cls in ERROR_CODES.items() if cls is Throttled} <= RETRYABLE_CODES
    assert all(
        issubclass(ERROR_CODES[c], Throttled | retry.ServiceUnavailable) for c in RETRYABLE_CODES
    )


def test_dropped_connections_and_unknown_5xx_are_retryable() -> None:
    assert is_retryable(ConnectionClosedError(endpoint_url="http://127.0.0.1:1"))
    assert is_retryable(client_error("SomethingNew", status=503))
    assert not is_retryable(client_error("SomethingNew", status=400))
    assert not is_retryable(ValueError("not an AWS error"))


# -- the policy's limits ---------------------------------------------------------------------


def test_a_throttled_call_is_retried_until_it_succeeds() -> None:
    clock = FakeClock()
    call = failing(
        [client_error("ThrottlingException"), client_error("InternalServerError", status=500)]
    )
    policy = RetryPolicy(base_seconds=0.1, cap_seconds=1.0, max_attempts=5)
    assert retry.call(call, "Scan t", policy, sleep=clock.sleep) == "ok"
    assert call.calls == 3  # type: ignore[attr-defined]
    assert len(clock.slept) == 2 and all(0 <= s <= 1.0 for s in clock.slept)


def test_a_validation_error_is_not_retried_and_is_translated_with_its_cause() -> None:
    clock = FakeClock()
    original = client_error("ValidationException")
    call = failing([original])
    with pytest.raises(InvalidRequest, match="Scan t: ValidationException happened") as raised:
        retry.call(call, "Scan t", RetryPolicy(max_attempts=5), sleep=clock.sleep)
    assert call.calls == 1  # type: ignore[attr-defined]
    assert clock.slept == []
    assert raised.value.__cause__ is original
    assert raised.value.code == "ValidationException"


def test_the_policy_gives_up_at_its_attempt_limit() -> None:
    clock = FakeClock()
    call = failing([client_error("ThrottlingException") for _ in range(100)])
    policy = RetryPolicy(max_attempts=4, give_up_after_seconds=None)
    with pytest.raises(Throttled, match="gave up after 4 attempts") as raised:
        retry.call(call, "Scan t", policy, sleep=clock.sleep)
    assert call.calls == 4  # type: ignore[attr-defined]
    assert len(clock.slept) == 3
    assert isinstance(raised.value.__cause__, ClientError)


def test_the_policy_gives_up_at_its_deadline() -> None:
    clock = FakeClock()
    policy = RetryPolicy(base_seconds=4.0, cap_seconds=4.0, give_up_after_seconds=10.0)
    attempts = policy.start("Scan t", clock=clock)
    with pytest.raises(Throttled, match=r"gave up after 1[0-9] s"):
        while True:
            # A fixed 4 s per retry would be 4, 8, 12 s: jitter makes it at most that.
            attempts.backoff(client_error("ThrottlingException"))
            clock.sleep(4.0)
    assert 10.0 < clock.now <= 14.0


def test_attempts_botocore_made_count_against_the_limit() -> None:
    # A client with botocore's retries on already tried 4 times: 1 + 4 reaches the limit of 5,
    # so our layer does not multiply them.
    call = failing([client_error("ThrottlingException", botocore_retries=4), client_error("X")])
    with pytest.raises(Throttled, match="gave up after 5 attempts"):
        retry.call(call, "BatchWriteItem t", RetryPolicy(max_attempts=5), sleep=lambda _s: None)
    assert call.calls == 1  # type: ignore[attr-defined]


def test_partial_success_is_retried_under_the_same_limit() -> None:
    attempts = RetryPolicy(max_attempts=3).start("BatchWriteItem t")
    attempts.next_delay({"UnprocessedItems": {"t": [{}]}})
    attempts.next_delay({"UnprocessedItems": {"t": [{}]}})
    with pytest.raises(GaveUp, match="unprocessed items"):
        attempts.next_delay({"UnprocessedItems": {"t": [{}]}})


def test_an_async_call_stops_retrying_when_asked() -> None:
    async def scenario() -> int:
        stop = asyncio.Event()
        calls = 0

        async def throttled() -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                stop.set()
            raise client_error("ThrottlingException")

        with pytest.raises(Stopped):
            await retry.call_async(
                throttled, "GetRecords", RetryPolicy(base_seconds=0.001), stop=stop
            )
        return calls

    assert asyncio.run(scenario()) == 2


def test_an_async_call_raises_a_non_retryable_error_as_the_client_raised_it() -> None:
    original = client_error("ExpiredIteratorException")

    async def expired() -> None:
        raise original

    with pytest.raises(ClientError) as raised:
        asyncio.run(retry.call_async(expired, "GetRecords", RetryPolicy()))
    assert raised.value is original  # the stream reader decides what it means


# -- the parallel scan's pages go through the policy ------------------------------------------


class ThrottlingScans:
    """A Scan endpoint of one item per segment that throttles each segment's first call."""

    def __init__(self, first: str = "ProvisionedThroughputExceededException") -> None:
        self.first = first
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        segment = kwargs["Segment"]
        with self.lock:
            self.calls.append(segment)
            first = self.calls.count(segment) == 1
        if first:
            raise client_error(self.first)
        assert kwargs["ConsistentRead"] is True
        return {"Items": [{"pk": {"S": f"s{segment}"}}]}


def test_the_parallel_scan_retries_a_throttled_page_and_stops_on_a_rejected_one() -> None:
    fast = RetryPolicy(base_seconds=0.001, cap_seconds=0.002, max_attempts=3)
    client = ThrottlingScans()
    pages = list(parallel_scan(client, "t", segments=3, policy=fast))
    assert sorted(item["pk"]["S"] for page in pages for item in page) == ["s0", "s1", "s2"]
    assert sorted(client.calls) == [0, 0, 1, 1, 2, 2]

    with pytest.raises(InvalidRequest, match="Scan t"):
        list(parallel_scan(ThrottlingScans("ValidationException"), "t", segments=2, policy=fast))


def test_the_table_sink_gives_up_on_endless_throttling_instead_of_looping() -> None:
    import pyarrow as pa

    from replayer.write.sinks import TableSink

    class AlwaysThrottled:
        calls = 0

        def batch_write_item(self, RequestItems: Any) -> Any:
            AlwaysThrottled.calls += 1
            raise client_error("ProvisionedThroughputExceededException")

    rows = pa.record_batch(
        [['{"pk":{"S":"a"}}'], ['{"pk":{"S":"a"}}']],
        schema=pa.schema([("keys", pa.string()), ("item", pa.string())]),
    )
    slept: list[float] = []
    sink = TableSink(
        AlwaysThrottled(),
        "t",
        None,
        workers=1,
        policy=RetryPolicy(max_attempts=3),
        sleep=slept.append,
    )
    with pytest.raises(Throttled, match="gave up after 3 attempts"):
        sink.write([rows])
    assert AlwaysThrottled.calls == 3 and len(slept) == 2


# -- the rate limiter -----------------------------------------------------------------------


def test_the_rate_limiter_spaces_units_out() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100.0, clock=clock)
    assert limiter.reserve(10) == 0.0  # the first batch goes at once
    assert limiter.reserve(10) == pytest.approx(0.1)
    assert limiter.reserve(5) == pytest.approx(0.2)
    clock.now = 10.0  # idle time is not saved up into a burst
    assert limiter.reserve(10) == 0.0
    assert limiter.reserve(1) == pytest.approx(0.1)


def test_no_rate_means_no_waiting() -> None:
    limiter = RateLimiter(None)
    assert [limiter.reserve(1000) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_the_rate_limiter_is_shared_by_threads_and_coroutines() -> None:
    limiter = RateLimiter(50.0)
    started = time.monotonic()
    threads = [threading.Thread(target=limiter.acquire) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def five() -> None:
        await asyncio.gather(*(limiter.wait() for _ in range(5)))

    asyncio.run(five())
    # 11 calls at 50/s: the first is free, the other ten take at least 10/50 s.
    assert time.monotonic() - started >= 0.19


# -- waiting --------------------------------------------------------------------------------


def test_wait_until_returns_once_ready() -> None:
    clock = FakeClock()
    states = iter(["CREATING", "CREATING", "ACTIVE"])
    got = wait_until(
        lambda: next(states),
        what="table t",
        ready=lambda s: s == "ACTIVE",
        poll_seconds=5,
        timeout_seconds=60,
        sleep=clock.sleep,
        clock=clock,
    )
    assert got == "ACTIVE" and clock.slept == [5, 5]


def test_wait_until_gives_up_at_its_deadline() -> None:
    clock = FakeClock()
    polls: list[float] = []

    def poll() -> str:
        polls.append(clock.now)
        return "CREATING"

    with pytest.raises(WaitTimedOut, match="table t: not ready after 30 s"):
        wait_until(
            poll,
            what="table t",
            ready=lambda s: s == "ACTIVE",
            poll_seconds=10,
            timeout_seconds=30,
            sleep=clock.sleep,
            clock=clock,
        )
    assert polls == [0, 10, 20, 30]


def test_wait_until_pauses_grow_to_their_cap() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimedOut):
        wait_until(
            lambda: "RUNNING",
            what="query q",
            ready=lambda s: s == "SUCCEEDED",
            poll_seconds=0.5,
            growth=1.5,
            max_poll_seconds=2.0,
            timeout_seconds=8,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.slept == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]


def test_a_throttled_poll_is_retried_on_the_waits_own_sleep() -> None:
    clock = FakeClock()
    answers = failing([client_error("ThrottlingException")], result="ACTIVE")
    assert (
        wait_until(
            answers,
            what="table t",
            ready=lambda s: s == "ACTIVE",
            poll_seconds=5,
            timeout_seconds=60,
            sleep=clock.sleep,
            clock=clock,
        )
        == "ACTIVE"
    )
    assert len(clock.slept) == 1 and clock.slept[0] < 5  # one retry pause, no poll pause


def test_wait_until_stops_at_once_on_a_failed_status() -> None:
    clock = FakeClock()
    with pytest.raises(WaitFailed, match="export e: FAILED"):
        wait_until(
            lambda: "FAILED",
            what="export e",
            ready=lambda s: s == "COMPLETED",
            failed=lambda s: s if s == "FAILED" else None,
            poll_seconds=10,
            timeout_seconds=3600,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.slept == []


class Tables:
    """DescribeTable answering a fixed sequence of statuses (``None``: the table is absent)."""

    def __init__(self, *statuses: str | None) -> None:
        self.statuses = list(statuses)

    def describe_table(self, TableName: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            raise client_error("ResourceNotFoundException")
        return {"Table": {"TableName": TableName, "TableStatus": status}}


def test_the_target_table_wait_stops_on_a_status_that_never_becomes_active() -> None:
    slept: list[float] = []
    with pytest.raises(WaitFailed, match="table t: table is INACCESSIBLE_ENCRYPTION_CREDENTIALS"):
        wait_until_active(
            Tables("CREATING", "INACCESSIBLE_ENCRYPTION_CREDENTIALS"), "t", sleep=slept.append
        )
    assert len(slept) == 1


def test_the_target_table_wait_stops_when_the_table_is_gone() -> None:
    slept: list[float] = []
    with pytest.raises(WaitFailed, match="does not exist"):
        wait_until_active(Tables("CREATING", None), "t", sleep=slept.append)
    assert len(slept) == 1


def test_a_restored_table_may_appear_late_but_not_after_the_deadline() -> None:
    got = wait_until_active(
        Tables(None, None, "ACTIVE"), "t", appearing=True, sleep=lambda _s: None
    )
    assert got["TableStatus"] == "ACTIVE"
    with pytest.raises(WaitTimedOut):
        wait_until_active(
            Tables(None), "t", appearing=True, timeout_seconds=0, sleep=lambda _s: None
        )


def test_the_target_table_wait_gives_up_at_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimedOut, match="not ready after 0 s"):
        wait_until_active(Tables("CREATING"), "t", poll_seconds=0.01, timeout_seconds=0.05)
    assert time.monotonic() - started < 5


class Backups:
    """CreateBackup, then DescribeBackup answering the statuses given in turn."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)

    def _details(self, status: str) -> dict[str, Any]:
        return {
            "BackupArn": "arn:aws:dynamodb:us-east-1:1:table/t/backup/b",
            "BackupName": "b1",
            "BackupStatus": status,
            "BackupType": "USER",
            "BackupCreationDateTime": "2026-01-31T12:00:00.000Z",
        }

    def create_backup(self, **_kwargs: Any) -> dict[str, Any]:
        return {"BackupDetails": self._details("CREATING")}

    def describe_backup(self, BackupArn: str) -> dict[str, Any]:
        return {
            "BackupDescription": {
                "BackupDetails": self._details(self.statuses.pop(0)),
                "SourceTableDetails": {"TableName": "t"},
            }
        }


def test_a_backup_wait_stops_when_the_backup_is_deleted() -> None:
    with pytest.raises(WaitFailed, match="is DELETED, not AVAILABLE"):
        create_backup(Backups("CREATING", "DELETED"), "t", "nightly", sleep=lambda _s: None)
    done = create_backup(Backups("CREATING", "AVAILABLE"), "t", "nightly", sleep=lambda _s: None)
    assert done.status == "AVAILABLE"


def test_a_backup_wait_gives_up_at_its_deadline() -> None:
    with pytest.raises(WaitTimedOut):
        create_backup(
            Backups(*["CREATING"] * 5), "t", "nightly", timeout_seconds=0, sleep=lambda _s: None
        )


def test_an_export_wait_stops_when_the_export_failed() -> None:
    class Exports:
        def describe_export(self, ExportArn: str) -> dict[str, Any]:
            return {
                "ExportDescription": {
                    "ExportArn": ExportArn,
                    "ExportStatus": "FAILED",
                    "FailureCode": "S3AccessDenied",
                    "FailureMessage": "no access",
                }
            }

    with pytest.raises(WaitFailed, match="S3AccessDenied"):
        wait_for_export(Exports(), "arn:x/export/e1", poll_seconds=1, sleep=lambda _s: None)
