"""Lambda mode's own holes, for planning: failed batches and a stalled function.

A table archived by the Lambda function (``coverage.json`` mode ``lambda``) has two kinds of
hole that no ``gaps.jsonl`` line records, because the function cannot see them:

- **failed batches** — after ``MaximumRetryAttempts`` a batch goes to the on-failure
  destination and the stream moves on; each such object that ``ddb-archiver redrive`` has not
  archived yet is a gap over its shard's records (``archiver.lambda_mode.failures``);
- **a stalled function** — where its ``IteratorAge`` exceeded ``MaxIteratorAgeSeconds``, the
  watermark (*now − MaxIteratorAgeSeconds*) claimed records it had not archived
  (``archiver.lambda_mode.stall``).

:func:`gaps_met` returns both as gap lines, which planning refuses like any gap (exit 4)
unless ``--allow-gaps``. When CloudWatch cannot be read, how far behind the function was is
unknown: planning refuses (:class:`LambdaHealthUnknown`, exit 4) unless
``--trust-lambda-watermark``. Failed batches are looked for in Lambda mode, and in any mode
when a location is given (``--lambda-failures`` / ``DDB_ARCHIVE_LAMBDA_FAILURES``). In Lambda
mode with no location known (a local archive, neither given), whether a batch failed is
unknown, which is not "none": planning refuses (:class:`LambdaFailuresUnknown`, exit 4).

A table archived by the Kinesis Lambda function (mode ``kinesis-lambda``) is checked the same
way: its failed batches carry ``KinesisBatchInfo`` (``archiver.lambda_mode.failures`` reads
both kinds), and its function's IteratorAge is in CloudWatch under the same metric.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.aws.clients import AwsSettings
from archiver.format import coverage
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso
from archiver.lambda_mode import failures as lambda_failures
from archiver.lambda_mode import stall as lambda_stall
from replayer.exceptions import Refused

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

log = logging.getLogger(__name__)

ENV_TRUST = lambda_stall.ENV_TRUST
_TRUE = {"1", "true", "yes", "on"}


class LambdaHealthUnknown(Refused):
    """Lambda mode, and the function's IteratorAge could not be read from CloudWatch."""


class LambdaFailuresUnknown(Refused):
    """Lambda mode, and where the function's failed batches go is unknown."""


@dataclass(frozen=True)
class LambdaChecks:
    """How planning checks a Lambda-archived table (defaults: the environment, then the stack).

    Attributes:
        failures_url: where the on-failure objects are (``--lambda-failures``).
        function_name: the archiving function (default: ``_state/<table>/lambda.json``).
        trust_watermark: skip CloudWatch (``--trust-lambda-watermark``).
        settings: AWS settings for S3 and CloudWatch.
        cloudwatch: a CloudWatch client to use instead of one made from ``settings``.
    """

    failures_url: str | None = None
    function_name: str | None = None
    trust_watermark: bool = False
    settings: AwsSettings | None = None
    cloudwatch: CloudWatchClient | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LambdaChecks:
        return cls(
            failures_url=getattr(args, "lambda_failures", None),
            function_name=getattr(args, "lambda_function_name", None),
            trust_watermark=bool(getattr(args, "trust_lambda_watermark", False)),
            settings=AwsSettings.from_args(args),
        )

    @property
    def trusted(self) -> bool:
        return self.trust_watermark or os.environ.get(ENV_TRUST, "").strip().lower() in _TRUE

    def cloudwatch_client(self) -> CloudWatchClient:
        if self.cloudwatch is not None:
            return self.cloudwatch
        return (self.settings or AwsSettings()).client("cloudwatch")


def _mode(archive: Archive, table: str, table_id: str) -> str | None:
    generation = coverage.generation_of(archive, table, table_id)
    return str(generation.get("mode")) if generation and generation.get("mode") else None


def failure_gaps(
    archive: Archive, table: str, table_id: str, checks: LambdaChecks
) -> list[dict[str, Any]]:
    """The table's failed batches not redriven yet (all generations: a batch's records are
    of the generation whose stream it names, and a restore of any of them must not pass).

    Raises:
        LambdaFailuresUnknown: no on-failure location is known (a local archive, and neither
            ``--lambda-failures`` nor ``DDB_ARCHIVE_LAMBDA_FAILURES``).
    """
    endpoint = checks.settings.endpoint_url if checks.settings else None
    report = lambda_failures.lambda_failure_gaps(
        archive, table, location=checks.failures_url, table_id=None, endpoint_url=endpoint
    )
    if report.location is None:
        raise LambdaFailuresUnknown(
            f"table {table!r} is archived by a Lambda function, but "
            f"{lambda_failures.location_unknown(archive)}: a batch that failed would be a hole "
            "this plan cannot see"
        )
    return report.gaps


def stall_gaps(
    archive: Archive,
    table: str,
    table_id: str,
    start: datetime,
    end: datetime,
    checks: LambdaChecks,
) -> list[dict[str, Any]]:
    """Where the function's IteratorAge broke the watermark's promise within ``[start, end]``.

    Raises:
        LambdaHealthUnknown: CloudWatch could not be read (or no function is known), and the
            watermark is not trusted.
    """
    if checks.trusted:
        log.warning(
            "WARNING: --trust-lambda-watermark: not checking the function's IteratorAge; a "
            "stall past MaxIteratorAgeSeconds would go unnoticed"
        )
        return []
    deployment = lambda_stall.deployment(archive, table, checks.function_name)
    override = "--trust-lambda-watermark restores trusting the watermark"
    if deployment.function_name is None:
        raise LambdaHealthUnknown(
            f"table {table!r} is archived by a Lambda function, but which one is unknown (the "
            f"archive has no {table}/lambda.json): give --lambda-function-name to check its "
            f"IteratorAge in [{iso_ms(start)}, {iso_ms(end)}], or {override}"
        )
    try:
        health = lambda_stall.function_health(
            checks.cloudwatch_client(),
            deployment.function_name,
            start,
            end,
            deployment.max_iterator_age,
        )
    except lambda_stall.CloudWatchUnreadable as exc:
        raise LambdaHealthUnknown(
            f"{exc}: whether the function stalled in [{iso_ms(start)}, {iso_ms(end)}] is "
            f"unknown (it needs cloudwatch:GetMetricStatistics); {override}"
        ) from exc
    if health.errors or health.throttles:
        log.info(
            "function %s: %d error(s) and %d throttle(s) in the range",
            health.function_name,
            health.errors,
            health.throttles,
        )
    return [s.gap(table, table_id, deployment.max_iterator_age) for s in health.stalls]


def gaps_met(
    archive: Archive,
    table: str,
    table_id: str,
    start: datetime,
    end: datetime,
    checks: LambdaChecks | None = None,
) -> list[dict[str, Any]]:
    """Lambda mode's holes that meet ``[start, end]``, as gap lines (none in poller mode,
    unless a failure location is given).

    Raises:
        LambdaFailuresUnknown: see :func:`failure_gaps`.
        LambdaHealthUnknown: see :func:`stall_gaps`.
    """
    checks = checks or LambdaChecks()
    lambda_mode = _mode(archive, table, table_id) in lambda_failures.LAMBDA_MODES
    explicit = bool(checks.failures_url or os.environ.get(lambda_failures.ENV_LOCATION))
    met: list[dict[str, Any]] = []
    if lambda_mode or explicit:
        met += [g for g in failure_gaps(archive, table, table_id, checks) if meets(g, start, end)]
    if lambda_mode:
        met += stall_gaps(archive, table, table_id, start, end, checks)
    return met


def meets(gap: dict[str, Any], start: datetime, end: datetime) -> bool:
    """Whether an open gap ``(from, to)`` meets ``[start, end]``."""
    lo, hi = parse_iso(str(gap["from"])), parse_iso(str(gap["to"]))
    return lo < end and hi > start


def describe(gap: dict[str, Any]) -> str:
    """What to do about a Lambda gap, for refusals and ``status``."""
    if gap.get("reason") == lambda_failures.GAP_REASON:
        what = f"batch of {gap.get('batch_size')} record(s) of shard {gap.get('shard_id')}"
        if gap.get("status") == lambda_failures.STATUS_MALFORMED:
            ids = ", ".join(str(m.get("event_id")) for m in gap.get("malformed") or [])
            return f"{what} in {gap.get('object')} has malformed record(s) {ids}: fix or accept"
        if gap.get("status") == lambda_failures.STATUS_UNAVAILABLE:
            return f"{what} in {gap.get('object')} cannot be redriven: {gap.get('detail')}"
        return f"{what} in {gap.get('object')}: run `{gap.get('redrive')}`"
    if gap.get("reason") == lambda_stall.GAP_REASON:
        return (
            f"IteratorAge reached {gap.get('max_iterator_age_seconds'):.0f} s, above "
            f"{gap.get('threshold_seconds'):.0f} s"
        )
    return ""


__all__ = [
    "ENV_TRUST",
    "LambdaChecks",
    "LambdaFailuresUnknown",
    "LambdaHealthUnknown",
    "describe",
    "gaps_met",
]
