"""Lambda entry point that keeps a table's history from incremental exports, on a schedule.

It ships in the archiver's container image (deploy/lambda/Dockerfile copies it beside the
``archiver`` package) and runs the same chain as ``ddb-archiver incremental --once``
(``archiver.snapshots.export_chain.Chain``) without ever waiting for an export: each invocation
converts the windows whose exports have completed, requests the next window that is due, and
returns. The next invocation finds a running export again by its client token (derived from the
table and the window), so invocations may overlap or fail at any point without losing or
duplicating anything; where the chain stands is read from the archive each time.

Environment: ``ARCHIVE_URL`` (``s3://bucket[/prefix]``; exports land in its ``exports/``),
``TABLE_NAME``, ``EVERY`` (the window length, ``15m`` to ``24h``; default ``1h``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import boto3

from archiver.aws.clients import AwsSettings
from archiver.aws.describe import capture_description, describe_or_none
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from archiver.snapshots.base_snapshot import export_destination
from archiver.snapshots.export_chain import Chain, window_length

log = logging.getLogger()
log.setLevel(logging.INFO)


def handler(event: Any, context: Any, *, ddb: Any = None) -> dict[str, Any]:
    """Convert completed windows and request the next one due; returns where the chain is."""
    table = os.environ["TABLE_NAME"]
    archive = Archive.open(os.environ["ARCHIVE_URL"])
    ddb = ddb or boto3.client("dynamodb")
    description = describe_or_none(ddb, table)
    if description is None:
        raise RuntimeError(f"table {table} does not exist")
    asyncio.run(capture_description(AwsSettings(), archive, table))
    chain = Chain(
        ddb,
        archive,
        table,
        description,
        dest=export_destination(archive, None),
        every=window_length(os.environ.get("EVERY", "1h")),
        say=log.info,
        wait=False,
    )
    steps = chain.run(once=True)
    position = chain.position()
    log.info(
        "%s: %d step(s); history from incremental exports reaches %s",
        table,
        steps,
        iso_ms(position) if position else "nothing yet",
    )
    return {"table": table, "steps": steps, "reaches": iso_ms(position) if position else None}
