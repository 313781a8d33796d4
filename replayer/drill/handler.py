"""Lambda entry point of the scheduled drill (the stack's ``DrillFunction``).

Runs ``ddb-replayer drill --random --method export`` for ``TABLE_NAME`` in ``ARCHIVE_URL``
(the export lands under ``DRILL_STAGING`` and is kept: the stack expires that prefix after a
day, so the function needs no delete permission), records it in
``drills.jsonl`` like the command, and writes its result as CloudWatch Embedded Metric Format
lines (``DrillDifferences``, ``DrillItemsCompared``; namespace ``DdbStreamArchive``, dimension
``Table``), which the stack's ``DrillDifferencesAlarm`` watches. ``DRILL_MARGIN_SECONDS``
(optional; default the export's 60 s) sets the margin as ``--margin`` does; below 60 s the
function logs the same one-line warning, and a value not above 0 fails the invocation. A
refusal (no drillable instant, a gap) raises: the invocation fails and the function's
errors show it.

A Lambda invocation lasts at most 15 minutes: the export must complete within that (tables of
a few GB); larger tables run the same command as a scheduled container task.
"""

from __future__ import annotations

import logging
import os
import random
from datetime import timedelta
from typing import Any

import boto3

from archiver.aws import metrics
from archiver.format.errors import UsageError
from archiver.format.storage import Archive
from archiver.native.pitr import describe_pitr
from replayer.drill import native
from replayer.drill.run import drill_margin, margin_risk, new_drill_id, run_drill
from replayer.drill.window import drill_window, random_time

log = logging.getLogger()
log.setLevel(logging.INFO)


def margin_from_env() -> timedelta:
    """``DRILL_MARGIN_SECONDS`` as the export drill's margin (unset or blank: the export's own).

    Raises:
        UsageError: it is not a number above 0 (and at most a day).
    """
    text = os.environ.get("DRILL_MARGIN_SECONDS", "").strip()
    if not text:
        return drill_margin("export")
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"DRILL_MARGIN_SECONDS={text!r} is not a number of seconds") from None
    try:
        return drill_margin("export", seconds)
    except UsageError as exc:
        raise UsageError(f"DRILL_MARGIN_SECONDS={text!r}: {exc}") from None


def handler(event: Any, context: Any, *, ddb: Any = None) -> dict[str, Any]:
    """One drill at a random instant; returns its ``drills.jsonl`` line."""
    margin = margin_from_env()  # a bad setting fails before anything is read or requested
    table = os.environ["TABLE_NAME"]
    archive = Archive.open(os.environ["ARCHIVE_URL"])
    ddb = ddb or boto3.client("dynamodb")
    poll = float(os.environ.get("DRILL_POLL_SECONDS", "15"))
    risk = margin_risk("export", margin)
    if risk:
        log.warning("warning: %s", risk)
    with metrics.emf_at_end():
        window = drill_window(archive, table, describe_pitr(ddb, table), margin)
        at = random_time(window, random.SystemRandom())
        table_arn, _ = native.table_size(ddb, table)
        drill_id = new_drill_id(at)
        store = native.staging_store(archive, table, os.environ.get("DRILL_STAGING"), drill_id)
        result = run_drill(
            archive,
            table,
            at,
            method="export",
            margin=margin,
            drill_id=drill_id,
            native_side=lambda when: native.export_copy(
                ddb, table_arn, table, when, store, keep=True, poll_seconds=poll
            ),
        )
    log.info("%s", result.report())
    return result.to_json()
