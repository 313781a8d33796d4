"""A null DynamoDB endpoint: answers ``BatchWriteItem`` at once, so a client's own cost shows.

    python -m bench.null_dynamodb [--port 0] [--throttle 0.1] [--unprocessed 0.1]
                                  [--forward http://127.0.0.1:5000]

It speaks DynamoDB's JSON protocol over HTTP/1.1 with keep-alive on loopback, as the real
service does, and answers each ``BatchWriteItem``:

* with ``ProvisionedThroughputExceededException`` (HTTP 400) for a fraction ``throttle`` of
  calls, or while more than ``capacity`` items per second arrive (a table at its limit);
* with a fraction ``unprocessed`` of the call's requests returned as ``UnprocessedItems``;
* otherwise with ``{"UnprocessedItems": {}}``.

With ``record=True`` it parses every body and keeps how often each put item was accepted
(``accepted``) and when each accepted call arrived (``arrivals``: ``time.monotonic()`` and
its puts), so a test can check that every item arrived exactly once, or that none arrived
after a moment. Without it only throttled or partially answered calls are parsed: the server
stays cheap.

Given a ``table`` (a ``DescribeTable`` ``Table``) and its ``items`` (kept in ``stored``), it
also answers what an item-level repair (``ddb-replayer undo``) calls: ``DescribeTable``;
``BatchGetItem`` from the items; ``PutItem`` and ``DeleteItem`` by storing or dropping the item
and appending ``(key text, item or None)`` to ``writes`` — so a benchmark can archive them as a
stream would; served from a process of its own (:meth:`NullDynamoDB.serve_in_process`), it
hands them over through the operation ``TakeWrites`` (:meth:`NullDynamoDB.take_writes`).

With ``forward`` (the URL of another DynamoDB endpoint, e.g. moto's server) every other
operation is passed there and its answer returned, so a whole ``ddb-replayer restore`` can run
against it: tables are created, described and tagged there, while their writes end here.
``DescribeLimits`` is answered here, with AWS's default quotas (40,000 write units per table,
80,000 per account; moto answers 10,000 and 20,000), so a target warmed for a fast restore is
warmed as it would be on AWS.

What it cannot model: signatures are not checked, condition expressions are not evaluated
(every conditional write succeeds), ``BatchWriteItem`` stores nothing (a restore against it
needs ``--no-verify``), without ``forward`` or a ``table`` no other operation is answered
(any other target gets HTTP 400 ``UnknownOperationException``), partitions,
item-size limits and CRC32 headers do not exist.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }
).encode()
_OK = b'{"UnprocessedItems":{}}'
_LIMITS = json.dumps(
    {
        "AccountMaxReadCapacityUnits": 80_000,
        "AccountMaxWriteCapacityUnits": 80_000,
        "TableMaxReadCapacityUnits": 40_000,
        "TableMaxWriteCapacityUnits": 40_000,
    }
).encode()


class NullDynamoDB:
    """The endpoint (``url``) and what it saw (``calls``, ``throttled``, ``accepted``)."""

    def __init__(
        self,
        *,
        throttle: float = 0.0,
        unprocessed: float = 0.0,
        capacity: float | None = None,
        record: bool = False,
        seed: int = 0,
        port: int = 0,
        table: dict[str, Any] | None = None,
        items: dict[str, dict[str, Any]] | None = None,
        forward: str | None = None,
    ) -> None:
        self.throttle = throttle
        self.forward = forward
        self.unprocessed = unprocessed
        self.capacity = capacity
        self.record = record
        self.random = random.Random(seed)
        self.calls = 0
        self.throttled = 0
        self.items = 0
        self.accepted: Counter[str] = Counter()
        self.table = table
        self.stored = items if items is not None else {}  # key text (sorted JSON) → item
        self.writes: list[tuple[str, dict[str, Any] | None]] = []
        self.arrivals: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self._window = (time.monotonic(), 0)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every call.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if endpoint.forward and target.endswith(".DescribeLimits"):
                    status, answer = 200, _LIMITS
                elif endpoint.forward and not target.endswith(".BatchWriteItem"):
                    status, answer = endpoint.passed_on(self.path, dict(self.headers), body)
                else:
                    status, answer = endpoint.answer(target, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> NullDynamoDB:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve_in_process(self) -> multiprocessing.Process:
        """Serve from a forked process of its own (so that it does not share the client's
        GIL); what it sees stays there: ask for the writes with ``take_writes``."""
        process = multiprocessing.get_context("fork").Process(
            target=self.server.serve_forever, daemon=True
        )
        process.start()
        return process

    def take_writes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """The writes the endpoint took since the last call (from its own process too)."""
        request = urllib.request.Request(
            self.url,
            data=b"{}",
            headers={"X-Amz-Target": "DynamoDB_20120810.TakeWrites"},
            method="POST",
        )
        with urllib.request.urlopen(request) as answer:
            return [(key, item) for key, item in json.loads(answer.read())]

    def __enter__(self) -> NullDynamoDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _over_capacity(self, items: int) -> bool:
        if self.capacity is None:
            return False
        start, seen = self._window
        now = time.monotonic()
        if now - start >= 1.0:
            start, seen = now, 0
        if seen + items > self.capacity:
            self._window = (start, seen)
            return True
        self._window = (start, seen + items)
        return False

    @staticmethod
    def key_text(key: dict[str, Any]) -> str:
        """How ``items`` is keyed: the key's JSON, names sorted, no spaces (canonical for
        ``S`` and ``B`` keys and for numbers in normal form)."""
        return json.dumps(key, sort_keys=True, separators=(",", ":"))

    def _item_call(self, operation: str, body: bytes) -> tuple[int, bytes] | None:
        if self.table is None:
            return None
        names = [k["AttributeName"] for k in self.table["KeySchema"]]
        request = json.loads(body)
        with self.lock:
            self.calls += 1
            if operation == "TakeWrites":
                writes, self.writes = self.writes, []
                return 200, json.dumps(writes).encode()
            if operation == "DescribeTable":
                return 200, json.dumps({"Table": self.table}).encode()
            if operation == "BatchGetItem":
                ((name, spec),) = request["RequestItems"].items()
                texts = [self.key_text(key) for key in spec["Keys"]]
                found = [self.stored[text] for text in texts if text in self.stored]
                answer = {"Responses": {name: found}, "UnprocessedKeys": {}}
                return 200, json.dumps(answer).encode()
            if operation == "PutItem":
                item = request["Item"]
                text = self.key_text({n: item[n] for n in names})
                self.stored[text] = item
                self.writes.append((text, item))
                return 200, b"{}"
            if operation == "DeleteItem":
                text = self.key_text(request["Key"])
                self.stored.pop(text, None)
                self.writes.append((text, None))
                return 200, b"{}"
        return None

    def passed_on(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """The answer of the ``forward`` endpoint to the same request."""
        kept = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(
            f"{self.forward}{path}", data=body, headers=kept, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def answer(self, target: str, body: bytes) -> tuple[int, bytes]:
        if not target.endswith(".BatchWriteItem"):
            answered = self._item_call(target.rpartition(".")[2], body)
            if answered is not None:
                return answered
            return 400, b'{"__type":"UnknownOperationException","message":"null endpoint"}'
        parse = self.record or self.unprocessed or self.capacity is not None
        request = json.loads(body) if parse else None
        with self.lock:
            self.calls += 1
            requests = []
            table = ""
            if request is not None:
                ((table, requests),) = request["RequestItems"].items()
            if self.random.random() < self.throttle or self._over_capacity(len(requests)):
                self.throttled += 1
                return 400, _THROTTLED
            if not self.unprocessed and not self.record:
                return 200, _OK
            back = [r for r in requests if self.random.random() < self.unprocessed]
            kept = [r for r in requests if not any(r is b for b in back)]
            self.items += len(kept)
            if self.record:
                puts = sum(1 for r in kept if "PutRequest" in r)
                self.arrivals.append((time.monotonic(), puts))
                for r in kept:
                    if "PutRequest" in r:
                        self.accepted[json.dumps(r["PutRequest"]["Item"], sort_keys=True)] += 1
        if not back:
            return 200, _OK
        return 200, json.dumps({"UnprocessedItems": {table: back}}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle", type=float, default=0.0)
    parser.add_argument("--unprocessed", type=float, default=0.0)
    parser.add_argument("--forward", help="pass every other operation to this endpoint")
    args = parser.parse_args(argv)
    endpoint = NullDynamoDB(
        throttle=args.throttle, unprocessed=args.unprocessed, port=args.port, forward=args.forward
    )
    print(endpoint.url, flush=True)
    endpoint.server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
