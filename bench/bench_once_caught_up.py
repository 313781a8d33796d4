"""What the caught-up rule costs ``ddb-archiver run --once``, in seconds, at the default pace.

    python -m bench.bench_once_caught_up [--poll-seconds 1.0] [--only NAME]

Runs ``run --once`` (the real runner and consumer) against the DynamoDB Streams test double
(``tests/streams_double.py``; DescribeTable from moto's server, started in this process on
loopback) with the default ``--poll-seconds`` of 1 s, over these streams:

* ``one-shard``: one open shard whose records are read at once (what moto gives);
* ``empty-shard``: one open shard that never returned a record;
* ``split``: three root shards, one closed and split into two children, records minutes old;
* ``split-recent``: the same with records written since the stream was created, so the
  shards that are not the newest are "behind";
* ``empty-runs``: the same, plus three empty pages in the middle of the closed parent's range
  and three before the first records of an open shard.

Prints, for each, the wall time of the run, the empty pages it read, and whether every record
was archived. Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from archiver.aws.clients import AwsSettings
from archiver.capture.runner import RunConfig, execute
from archiver.format import layout
from archiver.format.storage import Archive
from archiver.format.timefmt import utcnow
from tests.conftest import create_table
from tests.streams_double import DoubleShard, DoubleStream, StreamsDouble

TABLE = "orders"


def put(stream: DoubleStream, shard: DoubleShard, n: int, at: datetime, step: float) -> None:
    for i in range(n):
        key = {"pk": {"S": f"{shard.shard_id[-8:]}-{len(shard.records)}"}}
        stream.put(shard, key, new={**key, "n": {"N": str(i)}}, at=at + timedelta(seconds=i * step))


def split_model(
    double: StreamsDouble, label: str, *, recent: bool, parent_empty: int = 0, quiet_empty: int = 0
) -> None:
    stream = double.add_stream(TABLE, label)
    created = datetime.fromisoformat(label).replace(tzinfo=UTC, microsecond=0)
    start, step = (created, 0.0) if recent else (utcnow() - timedelta(minutes=10), 1.0)
    parent, busy, quiet = stream.add_shard(), stream.add_shard(), stream.add_shard()
    put(stream, parent, 10, start, step)
    if parent_empty:
        parent.empty_run(parent_empty, before=5)
    for child in stream.split(parent):
        put(stream, child, 4, start + timedelta(seconds=20 * step), step)
    put(stream, busy, 20, start, step)
    if quiet_empty:
        quiet.empty_run(quiet_empty, before=0)
    put(stream, quiet, 6, start + timedelta(seconds=10 * step), step)


def one_shard(double: StreamsDouble, label: str, *, records: int) -> None:
    stream = double.add_stream(TABLE, label)
    put(stream, stream.add_shard(), records, utcnow() - timedelta(minutes=5), 1.0)


SCENARIOS: dict[str, Callable[[StreamsDouble, str], None]] = {
    "one-shard": lambda d, label: one_shard(d, label, records=20),
    "empty-shard": lambda d, label: one_shard(d, label, records=0),
    "split": lambda d, label: split_model(d, label, recent=False),
    "split-recent": lambda d, label: split_model(d, label, recent=True),
    "empty-runs": lambda d, label: split_model(
        d, label, recent=True, parent_empty=3, quiet_empty=3
    ),
}


def measure(name: str, poll_seconds: float, moto_url: str, folder: str) -> str:
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_url)
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=TABLE)
    table = create_table(ddb, TABLE)
    double = StreamsDouble()
    SCENARIOS[name](double, table["LatestStreamLabel"])
    written = sum(len(s.records) for st in double.streams.values() for s in st.shards.values())
    archive = Archive.open(os.path.join(folder, name))
    config = RunConfig(
        table_name=TABLE, archive_url=archive.url, once=True, poll_seconds=poll_seconds
    )

    async def go() -> int:
        return await asyncio.wait_for(
            execute(config, AwsSettings(), archive, streams_client=double), timeout=120
        )

    started = time.monotonic()
    try:
        code: Any = asyncio.run(go())
    except TimeoutError:
        code = "did not finish in 120 s"
    seconds = time.monotonic() - started
    archived = sum(
        archive.read_parquet(rel).num_rows
        for rel in archive.find(layout.changes_table_dir(TABLE), ".parquet")
    )
    empty = sum(1 for p in double.pages if not p.records and not p.ended)
    return (
        f"{name:13s} {seconds:6.1f} s  exit {code}  empty pages {empty:3d}  "
        f"archived {archived}/{written}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    for name in [n for n in os.environ if n.startswith(("AWS_", "BOTO"))]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=moto_url,
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            empty = os.path.join(folder, "aws-config")
            open(empty, "w").close()  # no profile, no credentials file
            os.environ.update(AWS_CONFIG_FILE=empty, AWS_SHARED_CREDENTIALS_FILE=empty)
            for name in args.only or list(SCENARIOS):
                print(measure(name, args.poll_seconds, moto_url, folder), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
