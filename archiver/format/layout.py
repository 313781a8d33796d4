"""Every path and file name in the archive (DESIGN.md "Archive layout"). Nobody else formats a key.

All paths here are relative to the archive root; :class:`storage.Archive` joins them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from archiver.format.timefmt import as_utc, stamp

CHANGES = "changes"
SNAPSHOTS = "snapshots"
EXPORTS = "exports"
STATE = "_state"
LAMBDA_SHARD = "lambda"
SEQ_WIDTH = 40

_CHANGE_FILE = re.compile(
    r"^(?P<label>\d{8}T\d{9}Z)_(?P<shard>.+)_(?P<first>\d{40})_(?P<last>\d{40})\.parquet$"
)


def pad_seq(sequence_number: str | int) -> str:
    """A sequence number zero-padded to 40 digits, so string order is numeric order."""
    text = str(sequence_number)
    if not text.isdigit():
        raise ValueError(f"not a sequence number: {text!r}")
    return text.lstrip("0").zfill(SEQ_WIDTH)


def label_stamp(stream_label: str) -> str:
    """A stream label (``2026-01-31T12:00:00.000``, colons and all) as a path-safe UTC stamp."""
    return stamp(as_utc(datetime.fromisoformat(stream_label.replace("Z", "+00:00"))))


def stream_label_of(stream_arn: str) -> str:
    """The label at the end of a stream ARN (``…/stream/<label>``)."""
    return stream_arn.rsplit("/stream/", 1)[-1]


def dt_of(event_time: datetime) -> str:
    """The ``dt`` partition value: the UTC date of ``event_time``."""
    return as_utc(event_time).strftime("%Y-%m-%d")


# -- changes -------------------------------------------------------------------------------


def changes_table_dir(table: str) -> str:
    return f"{CHANGES}/table_name={table}"


def changes_partition(table: str, dt: str) -> str:
    return f"{changes_table_dir(table)}/dt={dt}"


@dataclass(frozen=True)
class ChangeFileName:
    """What a change file's name says about its content."""

    label: str  # path-safe stamp of the stream label
    shard_id: str
    first_seq: str  # 40 digits
    last_seq: str  # 40 digits

    @property
    def name(self) -> str:
        return f"{self.label}_{self.shard_id}_{self.first_seq}_{self.last_seq}.parquet"

    @classmethod
    def parse(cls, name: str) -> ChangeFileName | None:
        """Parse a file name (a path's last part); ``None`` for anything else."""
        match = _CHANGE_FILE.match(name.rsplit("/", 1)[-1])
        if not match:
            return None
        return cls(match["label"], match["shard"], match["first"], match["last"])


def change_file(
    table: str, dt: str, stream_label: str, shard_id: str, first_seq: str, last_seq: str
) -> str:
    """The path of one shard's contiguous range of records within one ``dt``: a function of its
    content, so re-archiving the same records rewrites the same object."""
    name = ChangeFileName(
        label_stamp(stream_label), shard_id, pad_seq(first_seq), pad_seq(last_seq)
    ).name
    return f"{changes_partition(table, dt)}/{name}"


# -- snapshots -----------------------------------------------------------------------------


def new_snapshot_id(at: datetime) -> str:
    """A UTC stamp plus a short random suffix: sortable by time, unique across writers."""
    return f"{stamp(at)}-{secrets.token_hex(3)}"


def snapshots_table_dir(table: str) -> str:
    return f"{SNAPSHOTS}/table_name={table}"


def snapshot_dir(table: str, snapshot_id: str) -> str:
    return f"{snapshots_table_dir(table)}/snapshot_id={snapshot_id}"


def snapshot_part_name(n: int) -> str:
    return f"part-{n:05d}.parquet"


def snapshot_part(table: str, snapshot_id: str, n: int) -> str:
    return f"{snapshot_dir(table, snapshot_id)}/{snapshot_part_name(n)}"


def snapshot_part_number(name: str) -> int | None:
    """``n`` of a part file's name ``part-<n>.parquet``; ``None`` for anything else."""
    match = re.match(r"^part-(\d+)\.parquet$", name.rsplit("/", 1)[-1])
    return int(match[1]) if match else None


def snapshot_manifest(table: str, snapshot_id: str) -> str:
    """Written last: a snapshot without it does not exist."""
    return f"{snapshot_dir(table, snapshot_id)}/_manifest.json"


# -- native exports ------------------------------------------------------------------------


def exports_dir() -> str:
    """Where native exports land, in AWS's own layout (``AWSDynamoDB/<export_id>/…``)."""
    return f"{EXPORTS}/AWSDynamoDB"


# -- state ---------------------------------------------------------------------------------


def state_dir(table: str) -> str:
    return f"{STATE}/{table}"


def checkpoints_dir(table: str) -> str:
    return f"{state_dir(table)}/checkpoints"


def checkpoint(table: str, stream_label: str, shard_id: str) -> str:
    return f"{checkpoints_dir(table)}/{label_stamp(stream_label)}/{shard_id}.json"


def coverage(table: str) -> str:
    return f"{state_dir(table)}/coverage.json"


def gaps(table: str) -> str:
    return f"{state_dir(table)}/gaps.jsonl"


TABLE_DESCRIPTION_PREFIX = "table-description-"


def table_description(table: str, at: datetime) -> str:
    return f"{state_dir(table)}/{TABLE_DESCRIPTION_PREFIX}{stamp(at)}.json"


def compaction_pending(table: str) -> str:
    """Compaction inputs in their grace period (``archiver.compact``)."""
    return f"{state_dir(table)}/compaction-pending.json"


def restore_stats(table: str) -> str:
    """The measured write rate of the last restore into DynamoDB (for restore estimates)."""
    return f"{state_dir(table)}/restore-stats.json"


def lambda_deployment(table: str) -> str:
    """What the Lambda function says of itself (function name, iterator-age threshold)."""
    return f"{state_dir(table)}/lambda.json"


def lambda_redrives(table: str) -> str:
    """One line per on-failure object handled by ``ddb-archiver redrive``."""
    return f"{state_dir(table)}/lambda-redrives.jsonl"


# -- erasure and retention -----------------------------------------------------------------

STAGING = "_staging"
# Archive-wide state lives under a name no DynamoDB table can have ('@' is not allowed in
# table names), so it never collides with a table's ``_state/<table>/``.
ARCHIVE_STATE = f"{STATE}/@archive"


def staging_dir(table: str) -> str:
    """Intermediate copies of a table's items (restore staging), swept by ``forget`` too."""
    return f"{STAGING}/{table}"


def erasure_secret() -> str:
    """The per-archive HMAC key the erasure log hashes keys with (created on first use)."""
    return f"{ARCHIVE_STATE}/erasure-secret.json"


def erasures(table: str) -> str:
    """One JSON line per finished erasure (``ddb-archiver forget``): never a key itself."""
    return f"{state_dir(table)}/erasures.jsonl"


def forget_pending(table: str) -> str:
    """An erasure in progress: what it must still rewrite, so a re-run finishes it."""
    return f"{state_dir(table)}/forget-pending.json"


def expire_pending(table: str) -> str:
    """An expiry in progress: the objects it must still delete."""
    return f"{state_dir(table)}/expire-pending.json"


def retention(table: str) -> str:
    """What ``ddb-archiver expire`` last deleted: the horizon restores before it are refused at."""
    return f"{state_dir(table)}/retention.json"
