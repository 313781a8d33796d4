"""Every path and file name in the archive (DESIGN.md "Archive layout"), built *and* parsed.

Nobody else formats or splits a key: each kind of path has a builder here and a ``parse_…``
function that returns what the path says (a small dataclass) or ``None`` for anything that is
not that kind of path (a foreign or temporary file, another folder). All paths are relative
to the archive root; :class:`storage.Archive` joins them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from archiver.format.timefmt import as_utc, parse_stamp, stamp

CHANGES = "changes"
SNAPSHOTS = "snapshots"
EXPORTS = "exports"
STATE = "_state"
TOP_LEVEL = (CHANGES, SNAPSHOTS, STATE)
# The folder AWS puts under an export's S3 prefix: <prefix>/AWSDynamoDB/<export_id>/…
AWS_EXPORTS = "AWSDynamoDB"
STAGING = "_staging"
LAMBDA_SHARD = "lambda"
SEQ_WIDTH = 40
# Kinesis Data Streams for DynamoDB (``archiver.capture.kinesis``). A Kinesis stream ARN has no
# creation time in it, and its records are ordered by time, not by a stream's own sequence: all
# of a table's Kinesis files share this one label (so the fold orders them by
# ``sequence_number`` alone, across Kinesis streams), and the stream and shard are in the
# file's shard part (:func:`kinesis_chain_shard`). The label is the epoch, so no plan ever
# leaves Kinesis files out as "created after the restore time".
KINESIS_STREAM_LABEL = "1970-01-01T00:00:00.000"
KINESIS_LABEL = "19700101T000000000Z"
KINESIS_SHARD_PREFIX = "kinesis-"

_CHANGE_FILE = re.compile(
    r"^(?P<label>\d{8}T\d{9}Z)_(?P<shard>.+)_(?P<first>\d{40})_(?P<last>\d{40})\.parquet$"
)
_PART = re.compile(r"^part-(?P<n>\d{5,})\.parquet$")
_STAMP = r"\d{8}T\d{9}Z"
TABLE_DESCRIPTION_PREFIX = "table-description-"
_TABLE_DESCRIPTION = re.compile(
    "^" + TABLE_DESCRIPTION_PREFIX + r"(?P<stamp>" + _STAMP + r")\.json$"
)
TABLE_NAME_KEY = "table_name"
DT_KEY = "dt"
SNAPSHOT_ID_KEY = "snapshot_id"
MANIFEST_NAME = "_manifest.json"
COVERAGE_NAME = "coverage.json"
GAPS_NAME = "gaps.jsonl"
RESTORE_STATS_NAME = "restore-stats.json"
COMPACTION_PENDING_NAME = "compaction-pending.json"
CHECKPOINTS = "checkpoints"


def _parts(rel: str) -> list[str]:
    return rel.strip("/").split("/")


def _hive_value(part: str, key: str) -> str | None:
    """The value of a Hive partition folder name ``<key>=<value>``; ``None`` for anything else."""
    prefix = key + "="
    if not part.startswith(prefix) or len(part) == len(prefix):
        return None
    return part[len(prefix) :]


def _visible(name: str) -> bool:
    """Names starting with ``.`` are temporary (a local write in progress)."""
    return bool(name) and not name.startswith(".")


def pad_seq(sequence_number: str | int) -> str:
    """A sequence number zero-padded to 40 digits, so string order is numeric order."""
    text = str(sequence_number)
    if not text.isdigit():
        raise ValueError(f"not a sequence number: {text!r}")
    return text.lstrip("0").zfill(SEQ_WIDTH)


def stream_label_time(stream_label: str) -> datetime:
    """When a stream was created: its label (``2026-01-31T12:00:00.000``, UTC without a zone)."""
    return as_utc(datetime.fromisoformat(stream_label.replace("Z", "+00:00")))


def label_stamp(stream_label: str) -> str:
    """A stream label (``2026-01-31T12:00:00.000``, colons and all) as a path-safe UTC stamp."""
    return stamp(stream_label_time(stream_label))


def is_kinesis_arn(arn: str) -> bool:
    """Whether ``arn`` is a Kinesis data stream's (``arn:<partition>:kinesis:…:stream/<name>``)."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "kinesis" and parts[5].startswith("stream/")


def stream_label_of(stream_arn: str) -> str:
    """The label at the end of a stream ARN (``…/stream/<label>``); for a Kinesis data stream,
    which has none, :data:`KINESIS_STREAM_LABEL`."""
    if is_kinesis_arn(stream_arn):
        return KINESIS_STREAM_LABEL
    return stream_arn.rsplit("/stream/", 1)[-1]


def kinesis_stream_name(stream_arn: str) -> str:
    """The name at the end of a Kinesis stream ARN."""
    return stream_arn.split(":", 5)[-1].split("/", 2)[1]


def kinesis_chain_shard(stream_arn: str, created_at: datetime, shard_id: str) -> str:
    """The shard part of the names of one Kinesis shard's change files (and its checkpoint):
    ``kinesis-<stream name>-<stamp(stream creation)>-<shard id>``. Shard ids repeat across
    streams and across a stream deleted and created again under the same name; the name and
    the creation time tell them apart."""
    return f"{KINESIS_SHARD_PREFIX}{kinesis_stream_name(stream_arn)}-{stamp(created_at)}-{shard_id}"


def is_kinesis_file(rel: str) -> bool:
    """Whether a change file holds rows captured from Kinesis Data Streams (poller or Lambda)."""
    parsed = ChangeFileName.parse(rel)
    return parsed is not None and parsed.label == KINESIS_LABEL


def stream_arn(table_arn: str, stream_label: str) -> str:
    """``<table ARN>/stream/<label>``: the ARN of a table's stream."""
    return f"{table_arn}/stream/{stream_label}"


@dataclass(frozen=True)
class StreamArn:
    """``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``."""

    table: str
    label: str


def parse_stream_arn(arn: str) -> StreamArn | None:
    """What a DynamoDB stream ARN names; ``None`` for any other text."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "dynamodb":
        return None
    resource = parts[5].split("/", 3)
    if len(resource) != 4 or resource[0] != "table" or resource[2] != "stream":
        return None
    if not resource[1] or not resource[3]:
        return None
    return StreamArn(resource[1], resource[3])


def table_of_arn(arn: str) -> str | None:
    """The table a DynamoDB ARN names: the table's own (``…:table/<name>``) or one under it
    (its stream, export or backup: ``…:table/<name>/…``); ``None`` for any other text."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "dynamodb":
        return None
    resource = parts[5].split("/")
    if len(resource) < 2 or resource[0] != "table" or not resource[1]:
        return None
    return resource[1]


def dt_of(event_time: datetime) -> str:
    """The ``dt`` partition value: the UTC date of ``event_time``."""
    return as_utc(event_time).strftime("%Y-%m-%d")


# -- changes -------------------------------------------------------------------------------


def changes_table_dir(table: str) -> str:
    return f"{CHANGES}/{TABLE_NAME_KEY}={table}"


def changes_partition(table: str, dt: str) -> str:
    return f"{changes_table_dir(table)}/{DT_KEY}={dt}"


@dataclass(frozen=True)
class TableDir:
    """``changes/table_name=<table>``, ``snapshots/table_name=<table>`` or ``_state/<table>``."""

    root: str  # CHANGES, SNAPSHOTS or STATE
    table: str


def parse_table_dir(rel: str) -> TableDir | None:
    """What a table's folder under ``changes/``, ``snapshots/`` or ``_state/`` says."""
    parts = _parts(rel)
    if len(parts) != 2 or not _visible(parts[1]):
        return None
    root, entry = parts
    if root == STATE:
        return TableDir(STATE, entry)
    if root in (CHANGES, SNAPSHOTS):
        table = _hive_value(entry, TABLE_NAME_KEY)
        return None if table is None else TableDir(root, table)
    return None


@dataclass(frozen=True)
class ChangesPartition:
    """``changes/table_name=<table>/dt=<YYYY-MM-DD>``."""

    table: str
    dt: str


def parse_changes_partition(rel: str) -> ChangesPartition | None:
    parts = _parts(rel)
    if len(parts) != 3 or parts[0] != CHANGES:
        return None
    table = _hive_value(parts[1], TABLE_NAME_KEY)
    dt = _hive_value(parts[2], DT_KEY)
    if table is None or dt is None:
        return None
    return ChangesPartition(table, dt)


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
    )
    return change_file_in(table, dt, name)


def change_file_in(table: str, dt: str, name: ChangeFileName) -> str:
    """The path of a change file whose name parts are already known (compaction's output)."""
    return f"{changes_partition(table, dt)}/{name.name}"


@dataclass(frozen=True)
class ChangeFilePath:
    """A Parquet file in a ``dt`` partition of the change log.

    ``name`` is ``None`` when the file's name is not a change file name (a file put there by
    someone else): it is still part of the log for readers, but says nothing about its content.
    """

    table: str
    dt: str
    name: ChangeFileName | None


def parse_change_file(rel: str) -> ChangeFilePath | None:
    """What a path under ``changes/`` says; ``None`` unless it is a visible Parquet file
    directly inside a ``table_name=…/dt=…`` partition."""
    parts = _parts(rel)
    if len(parts) != 4 or not _visible(parts[3]) or not parts[3].endswith(".parquet"):
        return None
    partition = parse_changes_partition("/".join(parts[:3]))
    if partition is None:
        return None
    return ChangeFilePath(partition.table, partition.dt, ChangeFileName.parse(parts[3]))


# -- snapshots -----------------------------------------------------------------------------


def _time_ordered_id(at: datetime) -> str:
    """A UTC stamp plus a short random suffix: sortable by time, unique across writers."""
    return f"{stamp(at)}-{secrets.token_hex(3)}"


def new_snapshot_id(at: datetime) -> str:
    """A snapshot's id (its folder's name): sortable by time, unique across writers."""
    return _time_ordered_id(at)


def new_erasure_id(at: datetime) -> str:
    """An erasure's id (its line in ``erasures.jsonl``): sortable by time, unique."""
    return _time_ordered_id(at)


def snapshots_table_dir(table: str) -> str:
    return f"{SNAPSHOTS}/{TABLE_NAME_KEY}={table}"


def snapshot_dir(table: str, snapshot_id: str) -> str:
    return f"{snapshots_table_dir(table)}/{SNAPSHOT_ID_KEY}={snapshot_id}"


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
    return f"{snapshot_dir(table, snapshot_id)}/{MANIFEST_NAME}"


@dataclass(frozen=True)
class SnapshotDir:
    """``snapshots/table_name=<table>/snapshot_id=<id>``: one snapshot's folder."""

    table: str
    snapshot_id: str

    @property
    def manifest(self) -> str:
        return snapshot_manifest(self.table, self.snapshot_id)


def parse_snapshot_dir(rel: str) -> SnapshotDir | None:
    parts = _parts(rel)
    if len(parts) != 3 or parts[0] != SNAPSHOTS:
        return None
    table = _hive_value(parts[1], TABLE_NAME_KEY)
    snapshot_id = _hive_value(parts[2], SNAPSHOT_ID_KEY)
    if table is None or snapshot_id is None:
        return None
    return SnapshotDir(table, snapshot_id)


@dataclass(frozen=True)
class SnapshotFile:
    """A snapshot's manifest or one of its Parquet files."""

    table: str
    snapshot_id: str
    name: str

    @property
    def folder(self) -> SnapshotDir:
        return SnapshotDir(self.table, self.snapshot_id)

    @property
    def is_manifest(self) -> bool:
        return self.name == MANIFEST_NAME

    @property
    def part(self) -> int | None:
        """The number of a part file named as the archiver names them, else ``None``."""
        match = _PART.match(self.name)
        return None if match is None else int(match["n"])


def parse_snapshot_file(rel: str) -> SnapshotFile | None:
    """The manifest or a visible Parquet file of a snapshot; ``None`` for any other file."""
    parts = _parts(rel)
    if len(parts) != 4 or not _visible(parts[3]):
        return None
    if parts[3] != MANIFEST_NAME and not parts[3].endswith(".parquet"):
        return None
    folder = parse_snapshot_dir("/".join(parts[:3]))
    if folder is None:
        return None
    return SnapshotFile(folder.table, folder.snapshot_id, parts[3])


# -- native exports ------------------------------------------------------------------------


def exports_dir() -> str:
    """Where native exports land, in AWS's own layout (``AWSDynamoDB/<export_id>/…``)."""
    return f"{EXPORTS}/{AWS_EXPORTS}"


def export_folder(export_id: str, prefix: str = EXPORTS) -> str:
    """``<prefix>/AWSDynamoDB/<export_id>``: the folder AWS writes one export into under the
    S3 prefix it was given (the archive's ``exports``, or ``""`` relative to that prefix)."""
    folder = f"{AWS_EXPORTS}/{export_id}"
    return f"{prefix.rstrip('/')}/{folder}" if prefix else folder


# What AWS writes into an export's folder.
EXPORT_SUMMARY = "manifest-summary.json"  # written when the export completed
EXPORT_FILES = "manifest-files.json"  # one JSON line per data file
EXPORT_STARTED = "_started"
EXPORT_DATA = "data"


@dataclass(frozen=True)
class ExportFolderPath:
    """``<prefix>/AWSDynamoDB/<export_id>``: a path, key or URL of one export's folder."""

    prefix: str  # everything before AWSDynamoDB/, possibly empty (no trailing slash)
    export_id: str

    @property
    def path(self) -> str:
        """The folder itself (as given: a relative path, a key or a URL)."""
        return export_folder(self.export_id, self.prefix)

    @property
    def summary(self) -> str:
        return export_summary(self.path)

    @property
    def files_manifest(self) -> str:
        return export_files_manifest(self.path)

    @property
    def data_dir(self) -> str:
        return f"{self.path}/{EXPORT_DATA}"


def export_summary(folder: str) -> str:
    """An export folder's ``manifest-summary.json`` (``folder`` relative, or ``""``)."""
    return f"{folder}/{EXPORT_SUMMARY}" if folder else EXPORT_SUMMARY


def export_files_manifest(folder: str) -> str:
    """An export folder's ``manifest-files.json`` (``folder`` relative, or ``""``)."""
    return f"{folder}/{EXPORT_FILES}" if folder else EXPORT_FILES


def parse_export_folder(path: str) -> ExportFolderPath | None:
    """What a folder path, key or URL says, when it ends in ``AWSDynamoDB/<export_id>``."""
    parts = path.rstrip("/").rsplit("/", 2)
    if len(parts) < 2 or parts[-2] != AWS_EXPORTS or not _visible(parts[-1]):
        return None
    return ExportFolderPath(parts[0] if len(parts) == 3 else "", parts[-1])


def export_relative_key(key: str, export_id: str) -> str | None:
    """The part of an S3 key after ``AWSDynamoDB/<export_id>/`` (the same wherever the folder
    is read from: its bucket, a copy in a local archive); ``None`` outside that export."""
    marker = f"{export_folder(export_id, '')}/"
    at = key.find(marker)
    if at < 0 or (at > 0 and key[at - 1] != "/"):
        return None
    return key[at + len(marker) :]


# -- staging -------------------------------------------------------------------------------

STAGING_DATA = "data"  # the files ImportTable reads: its S3KeyPrefix is <staging>/data/
STAGING_MARKER = "_restore.json"  # whose staging this is, and how far it got


def staging_dir(table: str, restore_id: str) -> str:
    """Where ``restore --strategy import`` of ``table`` stages DynamoDB JSON for ``ImportTable``
    by default (an S3 archive; a local archive needs ``--staging``): inside the table's staging
    folder, which ``forget`` sweeps. Relative to the staging root below:
    ``data/part-NNNNN.json.gz`` and :data:`STAGING_MARKER`."""
    return f"{table_staging_dir(table)}/{restore_id}"


# -- state ---------------------------------------------------------------------------------


def state_dir(table: str) -> str:
    return f"{STATE}/{table}"


def checkpoints_dir(table: str) -> str:
    return f"{state_dir(table)}/{CHECKPOINTS}"


def checkpoints_stream_dir(table: str, label: str) -> str:
    """One stream's checkpoints; ``label`` is the stream label's path-safe stamp."""
    return f"{checkpoints_dir(table)}/{label}"


def checkpoint(table: str, stream_label: str, shard_id: str) -> str:
    return f"{checkpoints_stream_dir(table, label_stamp(stream_label))}/{shard_id}.json"


@dataclass(frozen=True)
class CheckpointStreamDir:
    """``_state/<table>/checkpoints/<label>``: one stream's checkpoints."""

    table: str
    label: str  # path-safe stamp of the stream label


def parse_checkpoints_stream_dir(rel: str) -> CheckpointStreamDir | None:
    parts = _parts(rel)
    if len(parts) != 4 or parts[0] != STATE or parts[2] != CHECKPOINTS:
        return None
    if not _visible(parts[1]) or not _visible(parts[3]):
        return None
    return CheckpointStreamDir(parts[1], parts[3])


@dataclass(frozen=True)
class CheckpointPath:
    """``_state/<table>/checkpoints/<label>/<shard_id>.json``: one shard's checkpoint."""

    table: str
    label: str  # path-safe stamp of the stream label
    shard_id: str


def parse_checkpoint(rel: str) -> CheckpointPath | None:
    parts = _parts(rel)
    if len(parts) != 5 or not parts[4].endswith(".json") or not _visible(parts[4]):
        return None
    stream = parse_checkpoints_stream_dir("/".join(parts[:4]))
    shard_id = parts[4][: -len(".json")]
    if stream is None or not shard_id:
        return None
    return CheckpointPath(stream.table, stream.label, shard_id)


def coverage(table: str) -> str:
    return f"{state_dir(table)}/{COVERAGE_NAME}"


def gaps(table: str) -> str:
    return f"{state_dir(table)}/{GAPS_NAME}"


def table_description(table: str, at: datetime) -> str:
    return f"{state_dir(table)}/{TABLE_DESCRIPTION_PREFIX}{stamp(at)}.json"


@dataclass(frozen=True)
class TableDescriptionPath:
    """``_state/<table>/table-description-<stamp>.json``: one archived table description."""

    table: str
    stamp: str  # when it was captured, as a path-safe UTC stamp (names sort by time)


def parse_table_description(rel: str) -> TableDescriptionPath | None:
    parts = _parts(rel)
    if len(parts) != 3 or parts[0] != STATE or not _visible(parts[1]):
        return None
    match = _TABLE_DESCRIPTION.match(parts[2])
    return None if match is None else TableDescriptionPath(parts[1], match["stamp"])


def restore_stats(table: str) -> str:
    """The measured write rate of the last restore into DynamoDB (for restore estimates)."""
    return f"{state_dir(table)}/{RESTORE_STATS_NAME}"


def restores_dir(table: str) -> str:
    return f"{state_dir(table)}/restores"


def restore_progress(table: str, restore_id: str) -> str:
    """How far restore ``restore_id`` of ``table`` has durably written its target (``--resume``)."""
    return f"{restores_dir(table)}/{restore_id}.json"


def lambda_deployment(table: str) -> str:
    """What the Lambda function says of itself (function name, iterator-age threshold)."""
    return f"{state_dir(table)}/lambda.json"


def lambda_redrives(table: str) -> str:
    """One line per on-failure object handled by ``ddb-archiver redrive``."""
    return f"{state_dir(table)}/lambda-redrives.jsonl"


def kinesis_state(table: str) -> str:
    """What the Kinesis capture knows of the table's destination (precision, status seen)."""
    return f"{state_dir(table)}/kinesis.json"


def kinesis_ties(table: str) -> str:
    """Records of one key with the same creation time, as the Kinesis capture ordered them."""
    return f"{state_dir(table)}/kinesis-ties.jsonl"


def compaction_pending(table: str) -> str:
    """Compaction inputs waiting for their grace period before they are deleted."""
    return f"{state_dir(table)}/{COMPACTION_PENDING_NAME}"


def drills(table: str) -> str:
    """One JSON line per drill of the archive against AWS's own copy (``ddb-replayer drill``)."""
    return f"{state_dir(table)}/drills.jsonl"


# The state files of one table that have one fixed name each.
STATE_FILES = (COVERAGE_NAME, GAPS_NAME, RESTORE_STATS_NAME, COMPACTION_PENDING_NAME)


@dataclass(frozen=True)
class StateFilePath:
    """``_state/<table>/<name>`` for one of :data:`STATE_FILES`."""

    table: str
    name: str


def parse_state_file(rel: str) -> StateFilePath | None:
    parts = _parts(rel)
    if len(parts) != 3 or parts[0] != STATE or not _visible(parts[1]):
        return None
    return StateFilePath(parts[1], parts[2]) if parts[2] in STATE_FILES else None


# -- incremental exports -------------------------------------------------------------------

INCREMENTAL_SHARD_PREFIX = "incremental-"

_INCREMENTAL_SHARD = re.compile(
    r"^incremental-(?P<start>\d{8}T\d{9}Z)-(?P<end>\d{8}T\d{9}Z)(?:-(?P<part>\d{5}))?$"
)


def incremental_shard(start: datetime, end: datetime) -> str:
    """The ``shard_id`` of rows converted from the incremental export of window [start, end)."""
    return f"{INCREMENTAL_SHARD_PREFIX}{stamp(start)}-{stamp(end)}"


@dataclass(frozen=True)
class IncrementalFileName:
    """What the name of a change file converted from an incremental export says.

    ``<stamp(start)>_incremental-<stamp(start)>-<stamp(end)>-<part>_<first>_<last>.parquet``:
    a :class:`ChangeFileName` whose label is the window's start, whose shard is the window
    plus a part number, and whose sequence numbers are the first and last write times
    (microseconds) in it.
    """

    start: str  # stamps
    end: str
    part: int
    first_seq: str
    last_seq: str

    @property
    def window(self) -> tuple[datetime, datetime]:
        return parse_stamp(self.start), parse_stamp(self.end)

    @classmethod
    def parse(cls, name: str) -> IncrementalFileName | None:
        """Parse a path or name; ``None`` for anything that is not an incremental change file."""
        parsed = ChangeFileName.parse(name)
        if parsed is None:
            return None
        match = _INCREMENTAL_SHARD.match(parsed.shard_id)
        if not match or match["part"] is None:
            return None
        return cls(
            match["start"], match["end"], int(match["part"]), parsed.first_seq, parsed.last_seq
        )


def is_incremental_file(rel: str) -> bool:
    """Whether a change file holds rows converted from an incremental export."""
    parsed = ChangeFileName.parse(rel)
    return parsed is not None and parsed.shard_id.startswith(INCREMENTAL_SHARD_PREFIX)


def incremental_change_file(
    table: str, dt: str, start: datetime, end: datetime, part: int, first_seq: int, last_seq: int
) -> str:
    """The path of part ``part`` of window [start, end)'s rows within one ``dt``.

    A function of the window, the part number (parts are cut in the export's own line
    order, so converting the same export again gives the same parts) and the part's first
    and last write times: re-converting rewrites the same objects.
    """
    name = ChangeFileName(
        stamp(start),
        f"{incremental_shard(start, end)}-{part:05d}",
        pad_seq(first_seq),
        pad_seq(last_seq),
    ).name
    return f"{changes_partition(table, dt)}/{name}"


def incremental_dir(table: str) -> str:
    """Where the commit records of converted incremental-export windows live."""
    return f"{state_dir(table)}/incremental"


def incremental_window(table: str, start: datetime, end: datetime) -> str:
    """One converted window's commit record (written last: a window without it does not
    exist for restores)."""
    return f"{incremental_dir(table)}/{stamp(start)}_{stamp(end)}.json"


def backfill_plan(table: str) -> str:
    """What ``ddb-archiver backfill`` decided to export, written before anything is requested
    (a rerun continues the same plan)."""
    return f"{state_dir(table)}/backfill.json"


# -- erasure and retention -----------------------------------------------------------------

# Archive-wide state lives under a name no DynamoDB table can have ('@' is not allowed in
# table names), so it never collides with a table's ``_state/<table>/``.
ARCHIVE_STATE = f"{STATE}/@archive"


def table_staging_dir(table: str) -> str:
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
