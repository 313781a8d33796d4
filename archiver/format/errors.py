"""The exceptions of the archive format, each carrying the CLI exit code DESIGN.md assigns.

They are the base of every archiver error (``archiver.aws.error_table`` adds the ones about AWS),
and live here because the format imports nothing else of the project.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIFFERENCES = 3
EXIT_REFUSED = 4
EXIT_NEW_GAP = 5


class ArchiverError(Exception):
    """Base of every error the archiver reports to a user as one line."""

    exit_code: int = EXIT_FAILURE


class UsageError(ArchiverError):
    """Bad input: a malformed flag, time, URL or key."""

    exit_code = EXIT_USAGE


class ArchiveOwnedElsewhere(UsageError):
    """The archive already holds this table name for another account or region."""


class CorruptArchive(ArchiverError):
    """A file in the archive does not match what its manifest or name promises."""

    exit_code = EXIT_USAGE


class PoisonRecord(UsageError):
    """A stream record that cannot be archived as it is: a part missing (``dynamodb``,
    ``SequenceNumber``, ``Keys``, the ``NewImage`` of an INSERT or MODIFY) or an attribute
    value that is not valid DynamoDB JSON. Archiving it would write a row that later folds
    wrongly (an INSERT without its image folds as a delete) or fails every restore past it,
    so it is refused, never skipped: the Lambda handler reports it as a batch item failure,
    the poller stops."""

    def __init__(
        self,
        reason: str,
        *,
        event_id: str | None,
        sequence_number: str | None,
        shard_id: str | None = None,
        after: str | None = None,
    ) -> None:
        where = [f"event id {event_id or '?'}"]
        if shard_id:
            where.append(f"shard {shard_id}")
        if sequence_number or not after:
            where.append(f"sequence number {sequence_number or '?'}")
        else:
            where.append(f"the record after sequence number {after}")
        super().__init__(f"stream record ({', '.join(where)}) cannot be archived: {reason}")
        self.reason = reason
        self.event_id = event_id
        self.sequence_number = sequence_number
        self.shard_id = shard_id
