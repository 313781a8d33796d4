"""``restore --strategy import``: the folded state staged in S3, then loaded by ``ImportTable``.

No write capacity is used: DynamoDB creates the table and loads it itself. The steps:

1. **Stage**: the fold's items as GZIP DynamoDB JSON lines (``{"Item": …}``, the format
   ``ImportTable`` reads as it is) under the staging prefix — ``--staging s3://bucket/prefix``,
   by default ``<archive>/_staging/<restore id>/`` for an S3 archive (a local archive needs
   ``--staging``: ``ImportTable`` reads only S3). Data files go under ``data/``, which is the
   import's ``S3KeyPrefix``; ``_restore.json`` beside it says whose staging this is and how far
   it got. A prefix that already holds files is refused (exit 4) unless it is this restore's
   own, which is resumed: staged files are reused, a started import is waited for again.
2. **Import**: ``ImportTable`` with ``TableCreationParameters`` taken from the same request
   builder as replay's ``CreateTable`` (:func:`replayer.write.target_table.create_table_request`):
   keys, attribute definitions, GSIs with projections and capacity, billing mode, SSE. The
   restore id is the ``ClientToken``, so a call whose reply was lost is asked again without
   starting a second import (AWS keeps a token for 8 hours).
3. **Wait** on ``DescribeImport`` with a progress bar and a deadline, then require
   ``COMPLETED``, ``ErrorCount`` 0 and ``ImportedItemCount`` equal to the fold's count; anything
   else is exit 3 naming the import's CloudWatch log group (``/aws-dynamodb/imports``) and the
   staging files, which are kept.
4. **Verify** item by item; the staging files are deleted after a verified restore.

``ImportTable`` cannot create LSIs, a stream, TTL, a table class or deletion protection: a
source with LSIs is refused (``auto`` says so and skips ``import``); the rest is what
``--copy-settings`` applies afterwards.

Restore ids are a function of the restore (source, table generation, T, target), so running
the same command again finds its own staging and import.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from archiver.aws import retry
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import EXIT_DIFFERENCES, EXIT_OK
from archiver.format import layout, tables
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, stamp, utcnow
from replayer.engines import athena_engine
from replayer.engines.athena_engine import AthenaFolder
from replayer.engines.fold import Fold, FoldSettings
from replayer.exceptions import BadInput, Refused, ReplayError, replay_error
from replayer.planning.model import Plan
from replayer.read.verify import Comparison, verify_table
from replayer.strategies.import_model import record_import
from replayer.write.sinks import DynamoDBJsonSink, WriteResult
from replayer.write.target_table import (
    create_table_request,
    refuse_if_exists,
    wait_until_active,
)

log = logging.getLogger(__name__)

IMPORT_LOG_GROUP = "/aws-dynamodb/imports"  # where ImportTable logs its errors (AWS's name)
IMPORT_TIMEOUT_SECONDS = 48 * 3600.0
POLL_SECONDS = 15.0  # DescribeImport calls while waiting
# ImportTable takes a subset of CreateTable's parameters: no LSIs, stream, table class,
# deletion protection or tags. Anything else the CreateTable builder adds stays out too.
_TABLE_CREATION_PARAMETERS = (
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "SSESpecification",
    "GlobalSecondaryIndexes",
)
_BUSY = frozenset({"IN_PROGRESS", "CANCELLING"})
# AWS advises up to ~4M items of < 1 KB per object (its best practices for imports).
ITEMS_PER_FILE = 1_000_000


class ImportFailed(ReplayError):
    """``ImportTable`` did not load every item: the target is not the state at T (exit 3)."""

    exit_code = EXIT_DIFFERENCES


# -- what an import needs --------------------------------------------------------------------


def restore_id(source: str, table_id: str, at: datetime, target: str) -> str:
    """This restore's id — the staging folder and the ``ClientToken``: T's stamp and a hash of
    what makes the restore (the same command gives the same id)."""
    digest = hashlib.sha256(f"{source}\n{table_id}\n{iso_ms(at)}\n{target}".encode()).hexdigest()
    return f"{stamp(at)}-{digest[:12]}"


def lsi_refusal(description: Mapping[str, Any]) -> str | None:
    """Why ``import`` cannot rebuild this table, if it cannot: ImportTable creates no LSIs."""
    lsis = [i["IndexName"] for i in description.get("LocalSecondaryIndexes") or []]
    if lsis:
        return (
            f"the source has local secondary indexes ({', '.join(lsis)}), which ImportTable "
            "cannot create"
        )
    return None


def staging_url(archive: Archive, staging: str | None, table: str, rid: str) -> str:
    """The staging prefix: ``staging`` (``--staging``), else ``<archive>/_staging/<table>/<id>``.

    Raises:
        BadInput: the archive is local and no ``--staging`` was given, or it is not ``s3://``.
    """
    if staging is None:
        if archive.s3_location() is None:
            raise BadInput(
                "--strategy import needs --staging s3://bucket/prefix: the archive is local "
                "and ImportTable reads only from S3"
            )
        return archive.uri(layout.staging_dir(table, rid))
    if not staging.startswith("s3://") or not staging[len("s3://") :].strip("/"):
        raise BadInput(
            f"--staging {staging!r}: ImportTable reads only from S3 (s3://bucket/prefix)"
        )
    return staging.rstrip("/")


def import_request(
    description: Mapping[str, Any], target: str, staging: Archive, client_token: str
) -> dict[str, Any]:
    """The ``ImportTable`` request loading ``staging``'s data files into the new ``target``."""
    table = create_table_request(description, target)
    bucket, _, prefix = staging.root.partition("/")
    key_prefix = f"{prefix}/{layout.STAGING_DATA}/" if prefix else f"{layout.STAGING_DATA}/"
    return {
        "ClientToken": client_token,
        "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": key_prefix},
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "GZIP",
        "TableCreationParameters": {k: table[k] for k in _TABLE_CREATION_PARAMETERS if k in table},
    }


class StagingSink(DynamoDBJsonSink):
    """The DynamoDB JSON sink, counting the uncompressed bytes it stages (what an import is
    billed for)."""

    def __init__(self, output: Archive, *, items_per_file: int | None = None) -> None:
        super().__init__(output, items_per_file=items_per_file or ITEMS_PER_FILE)
        self.source_bytes = 0

    def prepare(self) -> None:
        """Staging is checked by the restore (its own files are resumed, not refused)."""

    def part(self, n: int) -> str:
        return f"{layout.STAGING_DATA}/part-{n:05d}.{self.extension}"

    def write_part(self, rel: str, rows: pa.Table) -> None:
        buffer = io.BytesIO()
        size = 0
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
            for item in rows.column("item").to_pylist():
                line = b'{"Item":' + item.encode("utf-8") + b"}\n"
                size += len(line)
                gz.write(line)
        self.output.put_bytes(rel, buffer.getvalue())
        self.source_bytes += size


# -- ImportTable and DescribeImport ----------------------------------------------------------


def start_import(
    ddb: Any,
    request: Mapping[str, Any],
    *,
    policy: retry.RetryPolicy = retry.DATA,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """``ImportTable``; returns its ``ImportTableDescription``.

    A call that fails without an answer (a dropped connection, a timeout, a 5xx) may have
    started the import: it is asked again with the same ``ClientToken``, which AWS answers
    with the import already started rather than a second one.
    """
    what = f"ImportTable {request['TableCreationParameters']['TableName']}"
    attempts = policy.start(what)
    while True:
        try:
            response: dict[str, Any] = ddb.import_table(**request)
            return dict(response["ImportTableDescription"])
        except Exception as exc:
            try:
                delay = attempts.backoff(exc)
            except Exception as final:
                raise replay_error(final, what)  # noqa: B904 (keeps its own cause)
            log.warning(
                "%s: no answer (%s); asking again with the same ClientToken",
                what,
                type(exc).__name__,
            )
            sleep(delay)


def describe_import(ddb: Any, import_arn: str) -> dict[str, Any]:
    response: dict[str, Any] = ddb.describe_import(ImportArn=import_arn)
    return dict(response["ImportTableDescription"])


def wait_for_import(
    ddb: Any,
    import_arn: str,
    *,
    total: int | None,
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float = IMPORT_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``DescribeImport`` until the import ends (any final status), with a progress bar
    of processed items; :class:`archiver.aws.retry.WaitTimedOut` past the deadline."""
    with tqdm(
        total=total,
        desc="importing",
        unit=" items",
        unit_scale=True,
        file=sys.stderr,
        disable=None,
    ) as bar:

        def show(description: Mapping[str, Any], elapsed: float) -> None:
            processed = int(description.get("ProcessedItemCount") or 0)
            bar.update(max(0, processed - bar.n))
            bar.set_postfix_str(str(description.get("ImportStatus")))

        found = retry.wait_until(
            lambda: describe_import(ddb, import_arn),
            what=f"import {import_arn}",
            ready=lambda d: d.get("ImportStatus") not in _BUSY,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
            sleep=sleep,
            on_poll=show,
        )
    return found


def log_group_of(description: Mapping[str, Any]) -> str:
    """The CloudWatch log group the import logged to (AWS's default when not reported)."""
    arn = str(description.get("CloudWatchLogGroupArn") or "")
    if ":log-group:" in arn:
        return arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return IMPORT_LOG_GROUP


def check_import(description: Mapping[str, Any], expected_items: int, staging_uri: str) -> None:
    """Require ``COMPLETED``, no errors and every item imported.

    Raises:
        ImportFailed: naming the import, what it reported, its log group and the staging.
    """
    status = description.get("ImportStatus")
    errors = int(description.get("ErrorCount") or 0)
    imported = int(description.get("ImportedItemCount") or 0)
    if status == "COMPLETED" and errors == 0 and imported == expected_items:
        return
    failure = ": ".join(
        str(p) for p in (description.get("FailureCode"), description.get("FailureMessage")) if p
    )
    raise ImportFailed(
        f"import {description.get('ImportArn')} ended {status} with {errors:,} error(s), "
        f"{imported:,} of {expected_items:,} items imported"
        + (f" ({failure})" if failure else "")
        + f"; the items it rejected are in CloudWatch log group {log_group_of(description)}; "
        f"staging files kept at {staging_uri}"
    )


# -- the restore -----------------------------------------------------------------------------


@dataclass
class Staged:
    """What ``_restore.json`` says about a staging prefix."""

    restore_id: str
    # staging (files being written) | staged (all written) | importing (ImportTable asked for;
    # import_arn once it answered)
    status: str
    items: int = 0
    source_bytes: int = 0
    files: list[str] = field(default_factory=list)
    import_arn: str | None = None

    @classmethod
    def read(cls, staging: Archive) -> Staged | None:
        doc = staging.read_json_or(layout.STAGING_MARKER)
        if not isinstance(doc, dict) or not doc.get("restore_id"):
            return None
        return cls(
            str(doc["restore_id"]),
            str(doc.get("status") or "staging"),
            int(doc.get("items") or 0),
            int(doc.get("source_bytes") or 0),
            list(doc.get("files") or []),
            doc.get("import_arn"),
        )

    def write(self, staging: Archive, **context: Any) -> None:
        staging.write_json(layout.STAGING_MARKER, {**context, **self.__dict__})


@dataclass
class ImportOptions:
    """How ``restore_by_import`` runs (``staging``: ``--staging``, else the archive's)."""

    staging: str | None = None
    dry_run: bool = False
    verify: bool = True
    fold: FoldSettings = field(default_factory=FoldSettings)
    poll_seconds: float | None = None  # None: POLL_SECONDS
    timeout_seconds: float = IMPORT_TIMEOUT_SECONDS
    athena: AthenaFolder | None = None  # fold on Athena (``--engine athena``), then stage


@dataclass
class ImportOutcome:
    """What ``restore_by_import`` did."""

    plan: Plan
    restore_id: str
    staging_uri: str
    items: int = 0
    source_bytes: int = 0
    import_description: dict[str, Any] | None = None
    comparison: Comparison | None = None

    @property
    def exit_code(self) -> int:
        if self.comparison is not None and not self.comparison.identical:
            return EXIT_DIFFERENCES
        return EXIT_OK


def _own_staging(staging: Archive, rid: str) -> Staged | None:
    """This restore's marker, or None for an empty prefix; refuses anyone else's files."""
    marker = Staged.read(staging)
    if marker is not None and marker.restore_id == rid:
        return marker
    found = staging.find("")
    if found:
        whose = f"restore {marker.restore_id}'s" if marker else "files not staged by a restore"
        raise Refused(
            f"staging prefix {staging.url} already holds {len(found)} file(s) ({whose}): stage "
            "into an empty prefix, or delete them first"
        )
    return None


def _stage(
    staging: Archive, marker: Staged, batches: Iterable[pa.RecordBatch], total: int, **ctx: Any
) -> Staged:
    for rel in staging.find(layout.STAGING_DATA):  # a half-staged earlier attempt
        staging.delete(rel)
    marker.status = "staging"
    marker.write(staging, **ctx)  # first: these files are this restore's from now on
    sink = StagingSink(staging)
    written: WriteResult = sink.write(batches, total=total)
    marker.status, marker.items, marker.files = "staged", written.items, written.files
    marker.source_bytes = sink.source_bytes
    marker.write(staging, **ctx)
    return marker


def delete_staging(staging: Archive) -> None:
    for rel in staging.find(""):
        staging.delete(rel)


def restore_by_import(
    settings: AwsSettings,
    archive: Archive,
    plan: Plan,
    description: Mapping[str, Any],
    target: str,
    options: ImportOptions | None = None,
    *,
    client: Any = None,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportOutcome:
    """Rebuild ``plan``'s table as at ``plan.at`` into the new table ``target`` via S3 and
    ``ImportTable`` (see the module docstring).

    Refusals (LSIs, a target that exists, someone else's staging) come before anything is
    written. On any failure after staging the staging files are kept, and named.

    Raises:
        Refused: as above (exit 4).
        BadInput: no usable staging location (exit 2).
        ImportFailed: the import did not load every item (exit 3).
    """
    options = options or ImportOptions()
    client = client or settings.client("dynamodb")
    why_not = lsi_refusal(description)
    if why_not:
        raise Refused(f"--strategy import is not possible: {why_not}")
    rid = restore_id(plan.table, plan.table_id, plan.at, target)
    uri = staging_url(archive, options.staging, plan.table, rid)
    staging = Archive.open(uri, endpoint_url=settings.endpoint_url)
    outcome = ImportOutcome(plan, rid, uri)
    marker = _own_staging(staging, rid)
    if marker is None or marker.status != "importing":
        # Once this restore has asked for its import, the target may be that import's table.
        refuse_if_exists(client, target)
    context = {
        "source": plan.table,
        "table_id": plan.table_id,
        "restore_date_time": iso_ms(plan.at),
        "target": target,
        "archive": archive.url,
        "updated_at": iso_ms(utcnow()),
    }
    with Fold(archive, options.fold) as fold:
        if options.dry_run:
            if options.athena is not None:
                options.athena.check_tables(plan)
                say(plan.describe({"athena scan ≤": options.athena.check_scan(plan)}))
            else:
                say(plan.describe(fold.count_records(plan)))
            say(f"staging        {uri}  (restore id {rid})")
            say("dry run: nothing was created")
            return outcome
        state = athena_engine.state_at(
            fold, archive, plan, tables.key_names(description["KeySchema"]), options.athena
        )
        outcome.items = state.count
        say(
            f"restoring {plan.table} as of {iso_ms(plan.at)} into {target} by ImportTable: "
            f"{state.count:,} items, staged under {uri}"
        )
        try:
            if marker is None or marker.status == "staging" or marker.items != state.count:
                # Nothing staged yet, or not completely: stage (again) from the start.
                marker = _stage(
                    staging, Staged(rid, "staging"), state.batches(), state.count, **context
                )
                say(
                    f"staged {marker.items:,} items ({marker.source_bytes / 1024**2:,.1f} MiB "
                    f"uncompressed) in {len(marker.files)} file(s)"
                )
            else:
                say(f"resuming restore {rid}: {marker.items:,} items already staged")
            outcome.source_bytes = marker.source_bytes
            started = time.monotonic()
            if marker.import_arn is None:
                # Recorded before asking: a run that dies waiting for the reply is resumed by
                # asking again with the same token, which AWS answers with the same import.
                marker.status = "importing"
                marker.write(staging, **context)
                request = import_request(description, target, staging, rid)
                started_import = start_import(client, request, sleep=sleep)
                marker.import_arn = str(started_import["ImportArn"])
                marker.write(staging, **context)
                log.info("import %s started", marker.import_arn)
            else:
                say(f"waiting for import {marker.import_arn}, started earlier")
            poll = POLL_SECONDS if options.poll_seconds is None else options.poll_seconds
            finished = wait_for_import(
                client,
                marker.import_arn,
                total=state.count,
                poll_seconds=poll,
                timeout_seconds=options.timeout_seconds,
                sleep=sleep,
            )
            outcome.import_description = finished
            check_import(finished, state.count, uri)
            seconds = _import_seconds(finished, time.monotonic() - started)
            say(
                f"imported {int(finished.get('ImportedItemCount') or 0):,} items into {target} "
                f"in {seconds:.1f} s"
            )
            wait_until_active(client, target, poll_seconds=min(poll, 5.0))
            record_import(
                archive,
                plan.table,
                items=state.count,
                source_bytes=marker.source_bytes,
                seconds=seconds,
            )
            if options.verify:
                outcome.comparison = verify_table(client, target, state)
                say(f"verify: {outcome.comparison.report('the archive', target)}")
        except BaseException:
            log.error("staging files kept at %s (run the same restore again to resume)", uri)
            raise
    if outcome.comparison is None or outcome.comparison.identical:
        if outcome.comparison is not None:
            delete_staging(staging)
            say(f"staging files under {uri} deleted")
        else:
            say(f"not verified: staging files kept at {uri}")
    else:
        say(f"staging files kept at {uri}")
    return outcome


def _import_seconds(description: Mapping[str, Any], measured: float) -> float:
    """The import's own duration (``EndTime − StartTime``) when reported, else ours."""
    start, end = description.get("StartTime"), description.get("EndTime")
    if isinstance(start, datetime) and isinstance(end, datetime) and end > start:
        return (end - start).total_seconds()
    return measured
