"""One capture source per table generation: its DynamoDB stream, or a Kinesis data stream.

The two order a table's records differently — a DynamoDB stream by its own sequence numbers,
Kinesis rows by creation time — and the fold ranks whole sources by their label, not records
by time (docs/format.md "Kinesis Data Streams records"). So the archiver refuses to add
records of one source to a table generation ``coverage.json`` says is archived from the other
(``mode``): ``poller`` or ``lambda`` for DynamoDB Streams, ``kinesis`` or ``kinesis-lambda``
for Kinesis. A generation known only from incremental exports takes either.
"""

from __future__ import annotations

from archiver.aws.error_table import EXIT_REFUSED, ArchiverError
from archiver.format import coverage
from archiver.format.storage import Archive


class SourceConflict(ArchiverError):
    """The table generation is archived from another source already (exit 4)."""

    exit_code = EXIT_REFUSED


def refuse_other_source(archive: Archive, table: str, table_id: str, kinesis: bool) -> None:
    """Refuse to add Kinesis records (``kinesis``) to a generation archived from its DynamoDB
    stream, or DynamoDB Streams records to one archived from Kinesis (blocking I/O).

    Raises:
        SourceConflict: exit 4.
    """
    current = coverage.generation_of(archive, table, table_id)
    mode = str(current.get("mode") or "") if current else ""
    if not mode or mode == "incremental":
        return
    if kinesis and mode not in coverage.KINESIS_MODES:
        raise SourceConflict(
            f"table {table!r} (table id {table_id}) is archived from its DynamoDB stream "
            f"(mode {mode}) in {archive.url}: one source per table generation; archive the "
            "Kinesis data stream into another archive, or stop the stream archiver first and "
            "start a new archive"
        )
    if not kinesis and mode in coverage.KINESIS_MODES:
        raise SourceConflict(
            f"table {table!r} (table id {table_id}) is archived from a Kinesis data stream "
            f"(mode {mode}) in {archive.url}: run with --kinesis-stream-arn, or use another "
            "archive for its DynamoDB stream"
        )
