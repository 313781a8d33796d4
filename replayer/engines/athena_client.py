"""Running one Athena query: start, poll with progress, stop on Ctrl-C, read its results.

The boto3 Athena client is passed in (tests hand it one pointed at ``tests/athena_double.py``).
A query that ends FAILED or CANCELLED raises :class:`AthenaQueryFailed` with Athena's own
reason and the query id, as one line; an API call that Athena refuses (no permission, no such
workgroup) raises the translated ``ClientError``. While the query runs, progress lines (state,
elapsed time, data scanned) go to ``say``; a ``KeyboardInterrupt`` while waiting stops the
query (``StopQueryExecution``) before it propagates, so no query keeps scanning unobserved.

Polling goes through the one wait (:func:`archiver.aws.retry.wait_until`): 0.5 s at first, growing
1.5 times to 5 s, under an overall deadline (``timeout_seconds``, :data:`QUERY_TIMEOUT_SECONDS`
by default: past Athena's own longest DML timeout, so a query Athena still runs is never
abandoned early). A query still running at the deadline is stopped before the wait gives up,
like one interrupted. The workgroup's ``BytesScannedCutoffPerQuery`` bounds what it scans.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from archiver.aws.error_table import client_error_code, translate_client_error
from archiver.aws.retry import WaitTimedOut, wait_until
from replayer.exceptions import ReplayError

log = logging.getLogger(__name__)

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
# GetQueryExecution every POLL_FIRST seconds at first, 1.5 times longer each time, up to
# POLL_MAX: short queries end after a few calls, long ones cost few.
POLL_FIRST = 0.5
POLL_MAX = 5.0
POLL_GROWTH = 1.5
# Athena's DML query timeout is 30 minutes by default and can be raised to some hours (a
# service quota); past this the wait stops the query and gives up.
QUERY_TIMEOUT_SECONDS = 6 * 3600.0
# Athena SQL queries are billed per byte scanned, rounded up to 10 MB per query
# (https://aws.amazon.com/athena/pricing/, "SQL queries"). USD per TB (2**40 bytes) by region;
# regions not listed use the default. Look the current rates up before relying on a figure.
PRICE_PER_TB_USD = {
    "default": 5.00,
    "us-east-1": 5.00,
    "us-east-2": 5.00,
    "us-west-2": 5.00,
    "eu-west-1": 5.00,
    "eu-central-1": 5.00,
    "ap-northeast-1": 5.00,
}
MINIMUM_BILLED_BYTES = 10 * 1000 * 1000
_TB = 2**40


class AthenaQueryFailed(ReplayError):
    """An Athena query ended FAILED or CANCELLED (the message carries Athena's reason)."""

    def __init__(self, message: str, query_id: str, state: str) -> None:
        super().__init__(message)
        self.query_id = query_id
        self.state = state


def query_cost_usd(scanned_bytes: int, region: str | None) -> float:
    """What Athena bills for a query that scanned this much (the 10 MB minimum applied)."""
    rate = PRICE_PER_TB_USD.get(region or "", PRICE_PER_TB_USD["default"])
    return max(scanned_bytes, MINIMUM_BILLED_BYTES) / _TB * rate


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AthenaConfig:
    """Where queries run: the workgroup, the Glue database, the results location (S3 URL)."""

    workgroup: str
    database: str
    output: str


@dataclass
class QueryOutcome:
    """A finished query: its id, final state and what ``GetQueryExecution`` said."""

    query_id: str
    state: str
    scanned_bytes: int = 0
    seconds: float = 0.0
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_location(self) -> str | None:
        """The data manifest (the files an UNLOAD wrote), in the results location."""
        stats = self.execution.get("Statistics") or {}
        location = stats.get("DataManifestLocation")
        return str(location) if location else None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Athena:
    """One Athena workgroup and database, through a boto3 client.

    Args:
        client: a boto3 Athena client.
        config: workgroup, database and results location.
        region: for the cost shown after a query.
        say: where progress lines go (stderr by default).
        progress_seconds: at most one "still running" line this often (state changes always).
        timeout_seconds: stop the query and give up (``WaitTimedOut``) past this.
        sleep / clock: injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        config: AthenaConfig,
        *,
        region: str | None = None,
        say: Callable[[str], None] = _stderr,
        progress_seconds: float = 10.0,
        timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.config = config
        self.region = region
        self.say = say
        self.progress_seconds = progress_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep
        self.clock = clock

    def _call(self, what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            if client_error_code(exc):
                raise translate_client_error(exc, f"Athena {what}") from exc
            raise

    def start(self, sql: str) -> str:
        """Submit ``sql``; returns the query execution id."""
        response = self._call(
            "StartQueryExecution",
            self.client.start_query_execution,
            QueryString=sql,
            QueryExecutionContext={"Database": self.config.database},
            WorkGroup=self.config.workgroup,
            ResultConfiguration={"OutputLocation": self.config.output},
        )
        return str(response["QueryExecutionId"])

    def execution(self, query_id: str) -> dict[str, Any]:
        response = self._call(
            "GetQueryExecution", self.client.get_query_execution, QueryExecutionId=query_id
        )
        execution: dict[str, Any] = response["QueryExecution"]
        return execution

    def stop(self, query_id: str) -> None:
        self._call(
            "StopQueryExecution", self.client.stop_query_execution, QueryExecutionId=query_id
        )

    def wait(self, query_id: str) -> QueryOutcome:
        """Poll until the query ends, saying its progress; Ctrl-C, or the deadline passing,
        stops the query."""
        last: dict[str, Any] = {"state": "", "said": self.clock()}

        def progress(execution: dict[str, Any], elapsed: float) -> None:
            state = _state(execution)
            now = self.clock()
            if state in TERMINAL_STATES:
                return
            if state != last["state"] or now - last["said"] >= self.progress_seconds:
                self.say(
                    f"athena {query_id}: {state}, {elapsed:.0f} s, "
                    f"{human_bytes(_scanned(execution))} scanned"
                )
                last["state"], last["said"] = state, now

        started = self.clock()
        try:
            execution = wait_until(
                lambda: self.execution(query_id),
                what=f"Athena query {query_id}",
                ready=lambda execution: _state(execution) in TERMINAL_STATES,
                poll_seconds=POLL_FIRST,
                growth=POLL_GROWTH,
                max_poll_seconds=POLL_MAX,
                timeout_seconds=self.timeout_seconds,
                sleep=self.sleep,
                clock=self.clock,
                on_poll=progress,
            )
        except KeyboardInterrupt:
            self.say(f"athena {query_id}: interrupted, stopping the query")
            self._stop_quietly(query_id)
            raise
        except WaitTimedOut:
            self.say(f"athena {query_id}: still running after the deadline, stopping the query")
            self._stop_quietly(query_id)
            raise
        elapsed = self.clock() - started
        return QueryOutcome(query_id, _state(execution), _scanned(execution), elapsed, execution)

    def _stop_quietly(self, query_id: str) -> None:
        try:
            self.stop(query_id)
        except Exception as exc:  # the interrupt or deadline matters more than the stop's failure
            log.warning("could not stop Athena query %s: %s", query_id, exc)

    def run(self, sql: str) -> QueryOutcome:
        """Start ``sql`` and wait for it; raises :class:`AthenaQueryFailed` unless it succeeded."""
        query_id = self.start(sql)
        outcome = self.wait(query_id)
        if outcome.state != "SUCCEEDED":
            raise failure(outcome)
        cost = query_cost_usd(outcome.scanned_bytes, self.region)
        self.say(
            f"athena {query_id}: SUCCEEDED in {outcome.seconds:.1f} s, "
            f"{human_bytes(outcome.scanned_bytes)} scanned, about ${cost:.4f}"
        )
        return outcome

    def update_count(self, query_id: str) -> int | None:
        """The rows a write (UNLOAD, CTAS, INSERT) reported writing: ``UpdateCount``."""
        page = self._call(
            "GetQueryResults", self.client.get_query_results, QueryExecutionId=query_id
        )
        count = page.get("UpdateCount")
        return None if count is None else int(count)

    def rows(self, query_id: str) -> Iterator[list[str | None]]:
        """Every result row (the header row of a SELECT's first page included), as text."""
        kwargs: dict[str, Any] = {"QueryExecutionId": query_id}
        while True:
            page = self._call("GetQueryResults", self.client.get_query_results, **kwargs)
            for row in (page.get("ResultSet") or {}).get("Rows", []):
                yield [cell.get("VarCharValue") for cell in row.get("Data", [])]
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token


def _state(execution: dict[str, Any]) -> str:
    return str((execution.get("Status") or {}).get("State", ""))


def _scanned(execution: dict[str, Any]) -> int:
    return int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)


def failure(outcome: QueryOutcome) -> AthenaQueryFailed:
    """The one-line error for a query that did not succeed."""
    status = outcome.execution.get("Status") or {}
    reason = str(status.get("StateChangeReason") or "").strip()
    error = status.get("AthenaError") or {}
    if not reason:
        reason = str(error.get("ErrorMessage") or "").strip()
    if outcome.state == "CANCELLED" and not reason:
        reason = "stopped by a user, or by the workgroup's data-scanned limit"
    reason = " ".join(reason.split()) or "no reason given"
    return AthenaQueryFailed(
        f"Athena query {outcome.query_id} {outcome.state}: {reason}",
        outcome.query_id,
        outcome.state,
    )
