"""One parallel Scan of a live table, page by page: what snapshots and ``verify`` both read.

``TotalSegments`` threads each scan one segment (DynamoDB's parallel scan) through a shared,
thread-safe boto3 client and hand their pages, in no particular order, to the one consumer
iterating :func:`parallel_scan` — through a bounded queue, so memory stays bounded whatever
the table's size. Every page is retried under :mod:`archiver.aws.retry`'s data policy (give the
client botocore's retries off: ``AwsSettings.client("dynamodb", own_retries=True)``) and
errors are translated by the one error table. ``observe`` sees each response with the instants
its request was sent and its answer read (the snapshot's clock-skew check). When the consumer
stops early or a segment fails, the other segments stop after at most one more page.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.aws import retry
from archiver.format.timefmt import utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Page = list[dict[str, Any]]
Observer = Callable[[Mapping[str, Any], datetime, datetime], None]


def parallel_scan(
    client: DynamoDBClient,
    table: str,
    *,
    segments: int,
    consistent: bool = True,
    page_size: int | None = None,
    policy: retry.RetryPolicy = retry.DATA,
    observe: Observer | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Generator[Page, None, None]:
    """Every item of ``table`` as pages of wire-form items (``Scan``'s ``Items``).

    Args:
        client: a boto3 DynamoDB client.
        table: the table.
        segments: parallel segments (threads).
        consistent: strongly consistent reads (``ConsistentRead``).
        page_size: ``Limit`` per page (None: DynamoDB's 1 MB pages).
        policy: how throttled pages are retried.
        observe: called with each response and the instants around it.
        clock: times ``observe``'s instants.
    """
    segments = max(1, segments)
    pages: queue.Queue[Page | BaseException | None] = queue.Queue(maxsize=segments * 2)
    stop = threading.Event()

    def scan_segment(segment: int) -> None:
        try:
            kwargs: dict[str, Any] = {
                "TableName": table,
                "Segment": segment,
                "TotalSegments": segments,
                "ConsistentRead": consistent,
            }
            if page_size:
                kwargs["Limit"] = page_size
            while not stop.is_set():
                sent_at = clock()
                page = retry.call(lambda: client.scan(**kwargs), f"Scan {table}", policy)
                if observe is not None:
                    observe(page, sent_at, clock())
                if page.get("Items"):
                    pages.put(list(page["Items"]))
                if not page.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except BaseException as exc:  # handed to the consumer, raised there
            pages.put(exc)
            return
        pages.put(None)

    with ThreadPoolExecutor(segments, thread_name_prefix="scan") as pool:
        for segment in range(segments):
            pool.submit(scan_segment, segment)
        running = segments
        try:
            while running:
                item = pages.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            while True:  # unblock producers waiting on a full queue
                try:
                    pages.get_nowait()
                except queue.Empty:
                    break
