"""Lambda entry point that prunes a table's on-demand backups on a schedule.

It ships in the archiver's container image (deploy/lambda/Dockerfile copies it beside the
``archiver`` package) and applies ``archiver.native.backups.prune_backups`` — the same rules as
``ddb-archiver backup prune``: only USER backups of the table, a backup is kept when it is
younger than ``KEEP_DAYS`` or among the ``KEEP_LAST`` newest, and the newest is never deleted.

Environment: ``TABLE_NAME``, ``KEEP_DAYS`` (0 = no age rule), ``KEEP_LAST`` (0 = no count rule).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3

from archiver.native.backups import prune_backups

log = logging.getLogger()
log.setLevel(logging.INFO)


def _optional_number(name: str) -> float | None:
    value = float(os.environ.get(name, "0") or 0)
    return value if value > 0 else None


def handler(event: Any, context: Any, *, ddb: Any = None) -> dict[str, Any]:
    """Delete what the retention rules do not keep; returns the deleted backups' ARNs."""
    table = os.environ["TABLE_NAME"]
    keep_days = _optional_number("KEEP_DAYS")
    keep_last = _optional_number("KEEP_LAST")
    deleted = prune_backups(
        ddb or boto3.client("dynamodb"),
        table,
        keep_days=keep_days,
        keep_last=int(keep_last) if keep_last is not None else None,
    )
    for backup in deleted:
        log.info("deleted backup %s (%s, created %s)", backup.name, backup.arn, backup.created_at)
    log.info("%s: %d backups deleted", table, len(deleted))
    return {"table": table, "deleted": [backup.arn for backup in deleted]}
