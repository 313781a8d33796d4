"""A stalled Lambda function: where its IteratorAge broke the watermark's promise.

In Lambda mode the watermark is *now − MaxIteratorAgeSeconds*: true only while the function is
less than that far behind the stream. When it falls further behind (throttled, erroring,
stuck), the watermark passes records that are not archived yet — and if the stall outlasts the
stream's 24 h retention, records are trimmed before they ever reach the function. So the time
ranges in which the function's ``IteratorAge`` exceeded the threshold are uncertain: planning
refuses them like gaps.

CloudWatch: namespace ``AWS/Lambda``, metric ``IteratorAge`` (milliseconds; "the age of the
last record in the batch when processing finished"), dimension ``FunctionName``; statistic
``Maximum``. A datapoint at ``t`` whose maximum age is ``A`` says records written at
``t − A`` were only being handled at ``t``: the range ``[t − A, t + period]`` is uncertain.
Records written at ``x`` are handled between ``x`` and ``x + 24 h`` (retention), so a restore
range ``[start, end]`` needs the datapoints of ``[start, end + 24 h]``. ``Errors`` and
``Throttles`` (``Sum``) over the same window are reported alongside: they are why a function
falls behind, and failed batches themselves are found by ``archiver.lambda_mode.failures``.

CloudWatch keeps 1-minute datapoints for 15 days, 5-minute ones for 63 days and hourly ones
for 15 months; the period asked for follows the age of the range (coarser periods only widen
the uncertain intervals). Older than that there are no datapoints, and nothing is refused.

Which function and threshold: ``_state/<table>/lambda.json`` (written by the function), else
``DDB_ARCHIVE_LAMBDA_FUNCTION`` / ``MAX_ITERATOR_AGE_SECONDS``. IAM:
``cloudwatch:GetMetricStatistics``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from archiver.aws.error_table import ArchiverError
from archiver.format import gap_log, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, utcnow

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.literals import StatisticType

ENV_FUNCTION = "DDB_ARCHIVE_LAMBDA_FUNCTION"
# 1 (true, yes, on): trust the watermark, read no IteratorAge (--trust-lambda-watermark).
ENV_TRUST = "DDB_ARCHIVE_TRUST_LAMBDA_WATERMARK"
DEFAULT_MAX_ITERATOR_AGE = timedelta(seconds=600)
GAP_REASON = gap_log.GAP_LAMBDA_STALLED
STREAM_RETENTION = timedelta(hours=24)
NAMESPACE = "AWS/Lambda"
# GetMetricStatistics answers at most 1,440 datapoints per call.
_MAX_DATAPOINTS = 1440


class CloudWatchUnreadable(ArchiverError):
    """The function's metrics could not be read: how far behind it was is unknown."""


@dataclass(frozen=True)
class Deployment:
    """Which function archives the table, and the iterator age its watermark assumes."""

    function_name: str | None
    max_iterator_age: timedelta


def deployment(archive: Archive, table: str, function_name: str | None = None) -> Deployment:
    """``function_name`` (or ``DDB_ARCHIVE_LAMBDA_FUNCTION``, or what the function wrote in
    ``_state/<table>/lambda.json``) and the threshold from that file (else
    ``MAX_ITERATOR_AGE_SECONDS``, else 600 s)."""
    doc: Mapping[str, Any] = statefiles.read_lambda_deployment(archive, table)
    name = function_name or os.environ.get(ENV_FUNCTION) or doc.get("function_name") or None
    seconds = doc.get("max_iterator_age_seconds") or os.environ.get("MAX_ITERATOR_AGE_SECONDS")
    age = timedelta(seconds=float(seconds)) if seconds else DEFAULT_MAX_ITERATOR_AGE
    return Deployment(function_name=str(name) if name else None, max_iterator_age=age)


@dataclass(frozen=True)
class Stall:
    """A range of record times the function handled later than its threshold allows."""

    start: datetime
    end: datetime
    max_age: timedelta  # the largest IteratorAge seen for it

    def gap(self, table: str, table_id: str | None, threshold: timedelta) -> dict[str, Any]:
        """As a gap line (the shape of ``gaps.jsonl``)."""
        return {
            "table": table,
            "table_id": table_id,
            "stream_arn": None,
            "shard_id": None,
            "from": iso_ms(self.start),
            "to": iso_ms(self.end),
            "detected_at": iso_ms(utcnow()),
            "reason": GAP_REASON,
            "max_iterator_age_seconds": self.max_age.total_seconds(),
            "threshold_seconds": threshold.total_seconds(),
        }


@dataclass
class Health:
    """What CloudWatch says of the function over a restore's range."""

    function_name: str
    threshold: timedelta
    stalls: list[Stall] = field(default_factory=list)
    errors: float = 0.0
    throttles: float = 0.0


def _period(start: datetime, end: datetime, now: datetime) -> int:
    """A period CloudWatch keeps for data this old, with at most 1,440 datapoints a call."""
    seconds = max(60, math.ceil((end - start).total_seconds() / _MAX_DATAPOINTS))
    age = now - start
    floor = 60 if age <= timedelta(days=15) else 300 if age <= timedelta(days=63) else 3600
    return max(floor, math.ceil(seconds / floor) * floor)


# What each metric says, and the statistic that says it.
_METRICS: tuple[tuple[str, StatisticType], ...] = (
    ("IteratorAge", "Maximum"),
    ("Errors", "Sum"),
    ("Throttles", "Sum"),
)


def _datapoints(
    cloudwatch: CloudWatchClient,
    metric: str,
    function_name: str,
    start: datetime,
    end: datetime,
    period: int,
    statistic: StatisticType,
) -> list[Mapping[str, Any]]:
    try:
        answer = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=[{"Name": "FunctionName", "Value": function_name}],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=[statistic],
        )
    except Exception as exc:  # access denied, no endpoint, no credentials: all mean "unknown"
        raise CloudWatchUnreadable(
            f"cannot read {NAMESPACE} {metric} of function {function_name!r} from CloudWatch "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    points: list[Mapping[str, Any]] = list(answer.get("Datapoints") or [])
    return points


def _merge(stalls: list[Stall]) -> list[Stall]:
    merged: list[Stall] = []
    for stall in sorted(stalls, key=lambda s: s.start):
        if merged and stall.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Stall(
                last.start, max(last.end, stall.end), max(last.max_age, stall.max_age)
            )
        else:
            merged.append(stall)
    return merged


def function_health(
    cloudwatch: CloudWatchClient,
    function_name: str,
    start: datetime,
    end: datetime,
    threshold: timedelta,
    *,
    now: datetime | None = None,
) -> Health:
    """Where the function's IteratorAge exceeded ``threshold`` for records in ``[start, end]``.

    Raises:
        CloudWatchUnreadable: a metric could not be read (permissions, endpoint, credentials).
    """
    now = as_utc(now or utcnow())
    start, end = as_utc(start), as_utc(end)
    window_end = min(now, end + STREAM_RETENTION)
    health = Health(function_name=function_name, threshold=threshold)
    if window_end <= start:
        return health
    period = _period(start, window_end, now)
    step = timedelta(seconds=period * _MAX_DATAPOINTS)
    stalls = []
    chunk_start = start
    while chunk_start < window_end:
        chunk_end = min(window_end, chunk_start + step)
        for metric, statistic in _METRICS:
            for point in _datapoints(
                cloudwatch, metric, function_name, chunk_start, chunk_end, period, statistic
            ):
                value = float(point.get(statistic) or 0.0)
                if metric == "Errors":
                    health.errors += value
                elif metric == "Throttles":
                    health.throttles += value
                elif value / 1000 > threshold.total_seconds():
                    at = as_utc(point["Timestamp"])
                    age = timedelta(milliseconds=value)
                    stall = Stall(at - age, at + timedelta(seconds=period), age)
                    if stall.start < end and stall.end > start:
                        stalls.append(stall)
        chunk_start = chunk_end
    health.stalls = _merge(stalls)
    return health


__all__ = [
    "ENV_FUNCTION",
    "ENV_TRUST",
    "GAP_REASON",
    "CloudWatchUnreadable",
    "Deployment",
    "Health",
    "Stall",
    "deployment",
    "function_health",
]
