"""Reading some items of a live table by key: strongly consistent ``BatchGetItem``, retried.

``verify`` of a key selection reads just those items of its target instead of scanning it,
and ``undo`` reads each key's live item (``now``) before deciding what to write. Keys go 100 to
a call (DynamoDB's limit), calls run on a few threads, and ``UnprocessedKeys`` and throttling
are retried under :mod:`archiver.aws.retry`'s data policy (full-jitter backoff, an attempt limit
and a deadline), so no key is silently left unread: the call gives up with one clear error
instead. Items come back as canonical DynamoDB JSON keyed by their canonical key; a key that
is not in the table is absent from the result.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from archiver.aws.retry import DATA, RetryPolicy
from archiver.format.codec import canonical_json, key_of, to_wire
from replayer.exceptions import replay_error

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100  # keys per BatchGetItem call (a DynamoDB limit)
READERS = 8


def _chunks(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def get_items(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[str],
    *,
    threads: int = READERS,
    policy: RetryPolicy = DATA,
) -> dict[str, str]:
    """The live items of ``keys`` (canonical key JSON): canonical key → canonical item.

    Raises:
        ReplayError (or the archiver's translated AWS error): a call failed for good, or
            its retries ran out.
    """
    if not keys:
        return {}
    names = list(orjson.loads(keys[0]))
    what = f"BatchGetItem {table}"

    def one(chunk: Sequence[str]) -> dict[str, str]:
        request: Any = {table: {"Keys": [to_wire(k) for k in chunk], "ConsistentRead": True}}
        attempts = policy.start(what)
        found: dict[str, str] = {}
        while request:
            try:
                response = client.batch_get_item(RequestItems=request)
            except Exception as exc:
                try:
                    delay = attempts.backoff(exc)
                except Exception as final:
                    raise replay_error(final, what) from final
                time.sleep(delay)
                continue
            items: list[Any] = response.get("Responses", {}).get(table, [])
            for item in items:
                found[canonical_json(key_of(item, names))] = canonical_json(item)
            request = response.get("UnprocessedKeys") or None
            if request:
                time.sleep(attempts.next_delay(dict(response), "unprocessed keys"))
        return found

    out: dict[str, str] = {}
    chunks = list(_chunks(keys, BATCH_GET_LIMIT))
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(chunks)))) as pool:
        for found in pool.map(one, chunks):
            out.update(found)
    return out
