"""A live DynamoDB Streams endpoint: shards that keep receiving records at a set rate.

    python -m bench.live_streams --table-name T --label LABEL [--shards 10] [--rate 1000]
        [--split-every S] [--backlog-seconds B] [--port 0]

Speaks DynamoDB Streams' JSON protocol over HTTP on loopback (``ListStreams``,
``DescribeStream``, ``GetShardIterator``, ``GetRecords``), for one stream of one table, and
prints ``URL http://127.0.0.1:<port>`` once it listens. Each of ``--shards`` open shards gets
``--rate`` records a second from the moment it opens (``--backlog-seconds`` earlier for the
first shards: a backlog to drain); a ``GetRecords`` page holds what has arrived, up to its
``Limit``. With ``--split-every`` an open shard is closed every S seconds, in turn, and a child
opens in its place (AWS rolls shards over every few hours), so lineage is exercised under load.
``GET /stats`` answers ``{"produced", "read", "pages", "shards", "closed"}``: records that
have arrived, records handed out (the furthest position each shard was read to), GetRecords
pages answered, shards listed and closed.

Records are generated when asked for, from their shard and position, so the server's memory
stays flat however long it runs: a ``MODIFY`` with new and old images of about 700 bytes of
JSON (strings, numbers, a binary value, a string set, a nested map holding a list).
Sequence numbers increase by a fixed step (not contiguous); ``ApproximateCreationDateTime`` is
whole seconds, as on AWS.

What it cannot model: throttling, expired iterators, trims, empty pages where records are
(see ``tests/streams_double.py`` for those), the 1 MB page limit, inserts and deletes, and
GetRecords' own latency (it answers at once).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

ACCOUNT = "123456789012"
REGION = "us-east-1"
STEP = 100  # between consecutive sequence numbers of a shard
_TARGET = "DynamoDBStreams_20120810."


@dataclass
class LiveShard:
    index: int
    shard_id: str
    parent_shard_id: str | None
    starting_seq: int
    opened: float  # time.time() of its first record
    rate: float
    closed_count: int | None = None  # records it holds once closed
    read_to: int = 0
    pages: int = 0

    def available(self, now: float) -> int:
        if self.closed_count is not None:
            return self.closed_count
        return max(0, math.floor((now - self.opened) * self.rate))

    def seq(self, position: int) -> int:
        return self.starting_seq + position * STEP

    @property
    def ending_seq(self) -> int | None:
        if self.closed_count is None:
            return None
        return self.seq(self.closed_count - 1) if self.closed_count else self.starting_seq

    def describe(self) -> dict[str, Any]:
        seq_range = {"StartingSequenceNumber": str(self.starting_seq)}
        if self.ending_seq is not None:
            seq_range["EndingSequenceNumber"] = str(self.ending_seq)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": seq_range}
        if self.parent_shard_id:
            out["ParentShardId"] = self.parent_shard_id
        return out


def record_json(shard: LiveShard, position: int) -> str:
    """Record ``position`` of ``shard``, as GetRecords writes it."""
    k, i = shard.index, position
    second = int(shard.opened + position / shard.rate)
    user = f"user#{k:04d}-{i % 100_000:06d}"
    keys = f'{{"pk":{{"S":"{user}"}},"sk":{{"N":"{i % 7}"}}}}'

    def image(version: int) -> str:
        return (
            f'{{"pk":{{"S":"{user}"}},"sk":{{"N":"{i % 7}"}},'
            f'"name":{{"S":"Customer {i} of shard {k}"}},"email":{{"S":"c{i}@example.com"}},'
            f'"version":{{"N":"{version}"}},"balance":{{"N":"{i % 10_000}.{version:02d}5"}},'
            '"active":{"BOOL":true},"avatar":{"B":"iVBORw0KGgoAAAANSUhEUgAAAAE="},'
            '"tags":{"SS":["retail","gold","emea"]},'
            f'"address":{{"M":{{"city":{{"S":"Malmö"}},"zip":{{"N":"{21100 + k}"}},'
            f'"lines":{{"L":[{{"S":"Storgatan {i % 90}"}},{{"S":"lgh {version}"}}]}}}}}}}}'
        )

    return (
        f'{{"awsRegion":"{REGION}","dynamodb":{{"ApproximateCreationDateTime":{second},'
        f'"Keys":{keys},"NewImage":{image(i // 7 + 1)},"OldImage":{image(i // 7)},'
        f'"SequenceNumber":"{shard.seq(position)}","SizeBytes":{420 + i % 50},'
        f'"StreamViewType":"NEW_AND_OLD_IMAGES"}},"eventID":"{k:08x}{i:024x}",'
        '"eventName":"MODIFY","eventSource":"aws:dynamodb","eventVersion":"1.1"}'
    )


class LiveStream:
    """One stream whose shards receive records at a set rate (see the module doc)."""

    def __init__(
        self,
        table: str,
        label: str,
        *,
        shards: int,
        rate: float,
        split_every: float | None = None,
        backlog_seconds: float = 0.0,
    ) -> None:
        self.table = table
        self.label = label
        self.arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/{label}"
        self.rate = rate
        self.split_every = split_every
        self.shards: list[LiveShard] = []
        self._next_split = 0
        now = time.time()
        for _ in range(shards):
            self._open(None, now - backlog_seconds)

    def _open(self, parent: LiveShard | None, at: float) -> LiveShard:
        index = len(self.shards)
        shard_id = f"shardId-{int(at * 1000):020d}-{index:08x}"
        if parent is None:
            start = 4 * 10**21 + index * 10**18
        else:
            assert parent.ending_seq is not None
            start = parent.ending_seq + 10 * STEP
        shard = LiveShard(
            index, shard_id, parent.shard_id if parent else None, start, at, self.rate
        )
        self.shards.append(shard)
        return shard

    def split_one(self) -> LiveShard:
        """Close the next open shard (in turn) and open its child."""
        now = time.time()
        open_shards = [s for s in self.shards if s.closed_count is None]
        parent = open_shards[self._next_split % len(open_shards)]
        self._next_split += 1
        parent.closed_count = parent.available(now)
        return self._open(parent, now)

    def stats(self) -> dict[str, Any]:
        now = time.time()
        return {
            "produced": sum(s.available(now) for s in self.shards),
            "read": sum(s.read_to for s in self.shards),
            "pages": sum(s.pages for s in self.shards),
            "shards": len(self.shards),
            "closed": sum(s.closed_count is not None for s in self.shards),
        }

    # -- the API --------------------------------------------------------------------------

    def list_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        streams = []
        if params.get("TableName") in (None, self.table):
            streams.append(
                {"StreamArn": self.arn, "TableName": self.table, "StreamLabel": self.label}
            )
        return {"Streams": streams}

    def describe_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("StreamArn") != self.arn:
            raise _Error(_NOT_FOUND, f"no stream {params.get('StreamArn')}")
        shards = self.shards
        start = params.get("ExclusiveStartShardId")
        if start:
            ids = [s.shard_id for s in shards]
            shards = shards[ids.index(start) + 1 :] if start in ids else []
        limit = min(params.get("Limit") or 100, 100)
        description: dict[str, Any] = {
            "StreamArn": self.arn,
            "StreamLabel": self.label,
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "TableName": self.table,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Shards": [s.describe() for s in shards[:limit]],
        }
        if len(shards) > limit:
            description["LastEvaluatedShardId"] = shards[limit - 1].shard_id
        return {"StreamDescription": description}

    def _shard(self, shard_id: str) -> LiveShard:
        for shard in self.shards:
            if shard.shard_id == shard_id:
                return shard
        raise _Error(_NOT_FOUND, f"no shard {shard_id}")

    def get_shard_iterator(self, params: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(params["ShardId"])
        kind = params["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            position = 0
        elif kind == "LATEST":
            position = shard.available(time.time())
        else:
            offset = (int(params["SequenceNumber"]) - shard.starting_seq) // STEP
            position = offset + 1 if kind == "AFTER_SEQUENCE_NUMBER" else offset
        return {"ShardIterator": f"{shard.index}:{max(position, 0)}"}

    def get_records(self, params: dict[str, Any]) -> bytes:
        index, _, position_text = str(params["ShardIterator"]).partition(":")
        shard = self.shards[int(index)]
        position = int(position_text)
        available = shard.available(time.time())
        end = max(position, min(position + int(params.get("Limit") or 1000), available))
        shard.read_to = max(shard.read_to, end)
        shard.pages += 1
        records = ",".join(record_json(shard, p) for p in range(position, end))
        if shard.closed_count is not None and end >= shard.closed_count:
            return f'{{"Records":[{records}]}}'.encode()
        return f'{{"NextShardIterator":"{shard.index}:{end}","Records":[{records}]}}'.encode()


# The error type as DynamoDB Streams sends it (botocore reads the part after '#').
_NOT_FOUND = "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"


class _Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def serve(stream: LiveStream, port: int = 0) -> None:
    async def handle(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        name = target[len(_TARGET) :] if target.startswith(_TARGET) else ""
        method = {
            "ListStreams": stream.list_streams,
            "DescribeStream": stream.describe_stream,
            "GetShardIterator": stream.get_shard_iterator,
            "GetRecords": stream.get_records,
        }.get(name)
        try:
            if method is None:
                raise _Error("UnknownOperationException", target)
            result = method(orjson.loads(await request.read() or b"{}"))
        except _Error as exc:
            body = orjson.dumps(
                {"__type": f"com.amazonaws.dynamodb.v20120810#{exc.code}", "message": str(exc)}
            )
            return web.Response(status=400, body=body, content_type="application/x-amz-json-1.0")
        body = result if isinstance(result, bytes) else orjson.dumps(result)
        return web.Response(body=body, content_type="application/x-amz-json-1.0")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(stream.stats())

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/", handle)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"URL http://127.0.0.1:{bound}", flush=True)
    while True:
        await asyncio.sleep(stream.split_every or 3600)
        if stream.split_every:
            child = stream.split_one()
            print(
                f"split: {child.parent_shard_id} -> {child.shard_id}", file=sys.stderr, flush=True
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-name", required=True)
    parser.add_argument("--label", required=True, help="the stream label (LatestStreamLabel)")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s per shard")
    parser.add_argument("--split-every", type=float, default=None, metavar="S")
    parser.add_argument("--backlog-seconds", type=float, default=0.0, metavar="B")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stream = LiveStream(
        args.table_name,
        args.label,
        shards=args.shards,
        rate=args.rate,
        split_every=args.split_every,
        backlog_seconds=args.backlog_seconds,
    )
    asyncio.run(serve(stream, args.port))


if __name__ == "__main__":
    main()
