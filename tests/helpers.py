"""Small helpers many test files share, one copy each: a clock tests move by hand, a botocore
error as AWS would raise it, the archive's rows and folded state, a stream's records and their
Lambda-event shape."""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from archiver.format import layout
from archiver.format.storage import Archive


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client_error(
    code: str,
    message: str | None = None,
    operation: str = "AnyOperation",
    *,
    status: int = 400,
    botocore_retries: int = 0,
) -> ClientError:
    """The ``ClientError`` botocore raises for an AWS error ``code`` (``message`` defaults to
    one naming the code; ``botocore_retries``: the attempts botocore already made)."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened" if message is None else message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": botocore_retries},
        },
        operation,
    )


# -- the archive ------------------------------------------------------------------------------


def rows_of(archive: Archive, table: str, *, each_event_once: bool = False) -> list[dict[str, Any]]:
    """Every archived change row of ``table``, in stream order (``each_event_once``: a record
    archived twice counts once — else a double shows)."""
    rows: list[dict[str, Any]] = []
    for rel in archive.find(layout.changes_table_dir(table), ".parquet"):
        rows.extend(archive.read_parquet(rel).to_pylist())
    if each_event_once:
        rows = list({row["event_id"]: row for row in reversed(rows)}.values())
    return sorted(rows, key=lambda r: (r["stream_arn"], r["sequence_number"]))


def state_at(archive: Archive, table: str, at: datetime) -> dict[str, str]:
    """The table as the fold gives it at ``at``: canonical key → canonical item."""
    from replayer.engines.fold import Fold
    from replayer.planning.plan import plan_restore

    plan = plan_restore(archive, table, at, convert=False)
    with Fold(archive) as fold:
        result = fold.state_at(plan)
        return {str(r["keys"]): str(r["item"]) for b in result.batches() for r in b.to_pylist()}


# -- streams and Lambda events ----------------------------------------------------------------


def stream_records(table: str) -> tuple[str, str, list[dict[str, Any]]]:
    """What moto's stream of ``table`` holds, as boto3's GetRecords returns it: (stream ARN,
    shard id, records) of its latest stream's first shard."""
    from tests.conftest import REGION

    ddb = boto3.client("dynamodb", region_name=REGION)
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return arn, shard, streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]


def lambda_value(value: Any) -> Any:
    """A boto3-shaped value as a Lambda event carries it (plain JSON): binary as base64 text,
    times as epoch seconds, numbers as floats, at any depth — records and attribute values
    alike."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: lambda_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lambda_value(v) for v in value]
    return value
