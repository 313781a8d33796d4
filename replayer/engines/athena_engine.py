"""``--engine athena``: the fold of a local plan as one Athena query, and its output.

Planning stays local and identical for both engines (:mod:`replayer.planning.plan`: coverage, gaps,
watermark, the base, the generation). Then, before any query runs:

- the Glue tables ``changes`` and ``snapshots`` must exist in ``--athena-database``, read
  this archive, and list the table in their ``table_name`` projection (else Athena would
  silently see no rows) — ``ddb-replayer athena-setup`` makes them so;
- the query's scan is bounded from the sizes of the ``dt`` partitions in range (every file
  of the table there, whatever its stream or generation: what partition pruning leaves) plus
  the base snapshot's files; past ``--athena-max-scan-gb`` it is refused;
- a plan without a base must really start at table creation: the local fold's check (every
  key's first record an INSERT) runs here too, so a false claim is refused (exit 4) whichever
  engine folds.

The query is ``UNLOAD (fold) TO <location> WITH (format = 'TEXTFILE', compression = 'GZIP')``
(:mod:`replayer.engines.athena_sql`): GZIP JSON lines ``{"Item": …}``. Its result is trusted only
when it SUCCEEDED and the lines in the files its data manifest lists add up to the row
count the UNLOAD reported (``GetQueryResults``' ``UpdateCount``); only then do callers create
anything.
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    ResourceNotFound,
    client_error_code,
    is_error,
    translate_client_error,
)
from archiver.cliutil import positive_float
from archiver.format import layout
from archiver.format.codec import canonical_json, key_of
from archiver.format.storage import Archive
from archiver.format.timefmt import stamp, utcnow
from replayer.engines.athena_client import Athena, AthenaConfig, QueryOutcome, human_bytes
from replayer.engines.athena_setup import CHANGES_TABLE, SNAPSHOTS_TABLE, projected_tables
from replayer.engines.athena_sql import FoldInputs, unload_state
from replayer.engines.fold import ROWS, Fold, FoldResult
from replayer.exceptions import BadInput, Refused, ReplayError
from replayer.planning.model import Plan

ENGINES = ("duckdb", "athena")
DEFAULT_WORKGROUP = "primary"
DEFAULT_DATABASE = "ddb_archive"
RESULTS_PREFIX = "athena-results"
_BATCH_ROWS = 10_000
_GB = 1000**3


class AthenaResultMismatch(ReplayError):
    """The UNLOAD's files do not hold the rows it reported: nothing is created from them."""


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the ``--athena-*`` flags (restore, export, verify)."""
    group = parser.add_argument_group("fold engine")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="duckdb",
        help="duckdb: fold on this machine; athena: fold as one Athena query over the Glue "
        "tables (the archive must be in S3)",
    )
    group.add_argument(
        "--athena-workgroup",
        default=os.environ.get("DDB_ARCHIVE_ATHENA_WORKGROUP", DEFAULT_WORKGROUP),
        help="Athena workgroup: the stack's AthenaWorkGroup output "
        "(env DDB_ARCHIVE_ATHENA_WORKGROUP)",
    )
    group.add_argument(
        "--athena-database",
        default=os.environ.get("DDB_ARCHIVE_ATHENA_DATABASE", DEFAULT_DATABASE),
        help="Glue database with the tables changes and snapshots: the stack's GlueDatabase "
        "output, or what athena-setup created (env DDB_ARCHIVE_ATHENA_DATABASE)",
    )
    group.add_argument(
        "--athena-output",
        default=os.environ.get("DDB_ARCHIVE_ATHENA_OUTPUT"),
        metavar="S3URL",
        help=f"query results and UNLOAD scratch location (default: <archive>/{RESULTS_PREFIX}/, "
        "the stack workgroup's result location, expired after 30 days; env "
        "DDB_ARCHIVE_ATHENA_OUTPUT)",
    )
    group.add_argument(
        "--athena-max-scan-gb",
        type=positive_float,
        metavar="GB",
        help="refuse to run a query whose scan the partitions in range cannot bound below "
        "this many GB (default: no limit beyond the workgroup's own)",
    )


@dataclass(frozen=True)
class AthenaOptions:
    """What the ``--athena-*`` flags said."""

    config: AthenaConfig
    max_scan_bytes: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, archive: Archive) -> AthenaOptions:
        output = args.athena_output or f"{archive_s3_url(archive)}/{RESULTS_PREFIX}/"
        if not output.startswith("s3://"):
            raise BadInput(f"--athena-output must be an S3 URL (s3://bucket/prefix/), not {output}")
        max_gb = args.athena_max_scan_gb
        return cls(
            AthenaConfig(args.athena_workgroup, args.athena_database, output.rstrip("/") + "/"),
            None if max_gb is None else int(max_gb * _GB),
        )


def archive_s3_url(archive: Archive) -> str:
    """The archive root as ``s3://bucket/prefix`` (refusing a local archive: Athena reads S3)."""
    location = archive.s3_location()
    if location is None:
        raise BadInput(f"--engine athena needs an archive in S3, not {archive.url}")
    bucket, prefix = location
    return f"s3://{bucket}/{prefix}".rstrip("/")


@dataclass
class AthenaState:
    """A fold's UNLOAD output: the files Athena wrote and the rows it reported."""

    outcome: QueryOutcome
    location: str
    files: list[str]  # s3:// URLs, from the data manifest
    count: int

    def lines(self, storage: Archive) -> Iterator[bytes]:
        """Every ``{"Item": …}`` line of every file (``storage``: any archive on that bucket)."""
        for url in self.files:
            data = storage.fs.cat_file(url.split("://", 1)[1])
            for line in gzip.decompress(data).splitlines():
                if line.strip():
                    yield line

    def batches(self, storage: Archive, key_names: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The items as ``(keys, item)`` batches, keys computed from the key attributes."""
        names = list(key_names)
        keys: list[str] = []
        items: list[str] = []
        for line in self.lines(storage):
            item = orjson.loads(line)["Item"]
            keys.append(canonical_json(key_of(item, names)))
            items.append(canonical_json(item))
            if len(keys) == _BATCH_ROWS:
                yield pa.record_batch([keys, items], schema=ROWS)
                keys, items = [], []
        if keys:
            yield pa.record_batch([keys, items], schema=ROWS)

    def load(self, session: Fold, storage: Archive, key_names: Sequence[str]) -> FoldResult:
        """The state in a DuckDB table of ``session`` (for the table sink and verify)."""
        table = f"athena_{self.outcome.query_id.replace('-', '_')}"
        loaded = session.load_rows(table, self.batches(storage, key_names))
        if loaded.count != self.count:
            raise AthenaResultMismatch(
                f"Athena query {self.outcome.query_id}: its output holds {loaded.count:,} items, "
                f"not the {self.count:,} it reported"
            )
        return loaded

    def relative_files(self, root: str) -> list[str]:
        """The files relative to ``root`` (an ``s3://`` URL they lie under)."""
        prefix = root.rstrip("/") + "/"
        return [url[len(prefix) :] if url.startswith(prefix) else url for url in self.files]


class AthenaFolder:
    """Runs the fold of local plans on Athena.

    Args:
        athena: the query runner (client, workgroup, database, results location).
        glue: a boto3 Glue client, to check the tables before any query.
        archive: the archive (in S3) the plans were made on.
        max_scan_bytes: refuse plans whose scan bound exceeds this.
    """

    def __init__(
        self, athena: Athena, glue: Any, archive: Archive, *, max_scan_bytes: int | None = None
    ) -> None:
        self.athena = athena
        self.glue = glue
        self.archive = archive
        self.max_scan_bytes = max_scan_bytes
        self.root = archive_s3_url(archive)

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, settings: AwsSettings, archive: Archive
    ) -> AthenaFolder:
        options = AthenaOptions.from_args(args, archive)
        athena = Athena(settings.client("athena"), options.config, region=settings.region)
        return cls(athena, settings.client("glue"), archive, max_scan_bytes=options.max_scan_bytes)

    # -- checks before a query --------------------------------------------------------------

    def check_tables(self, plan: Plan) -> None:
        """Refuse unless the Glue tables the query reads exist, read this archive and project
        ``plan.table``."""
        database = self.athena.config.database
        needed = [(CHANGES_TABLE, layout.CHANGES)]
        if plan.base is not None:  # the query reads snapshots only for a base
            needed.append((SNAPSHOTS_TABLE, layout.SNAPSHOTS))
        for name, top in needed:
            try:
                table = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
            except Exception as exc:
                if is_error(exc, ResourceNotFound):
                    raise Refused(
                        f"the Glue table {database}.{name} does not exist: run ddb-replayer "
                        f"athena-setup --archive {self.root} --database {database}"
                    ) from exc
                if client_error_code(exc):
                    raise translate_client_error(exc, f"Glue GetTable {database}.{name}") from exc
                raise
            location = str((table.get("StorageDescriptor") or {}).get("Location", ""))
            expected = f"{self.root}/{top}/"
            if location.rstrip("/") != expected.rstrip("/"):
                raise Refused(
                    f"the Glue table {database}.{name} reads {location}, not this archive's "
                    f"{expected}: pick its database with --athena-database, or run athena-setup"
                )
            if plan.table not in projected_tables(table):
                raise Refused(
                    f"the Glue table {database}.{name} does not project table {plan.table!r} "
                    "(Athena would see none of its rows): run ddb-replayer athena-setup "
                    f"--archive {self.root} --database {database}"
                )

    def scan_bound(self, plan: Plan) -> int:
        """Bytes the query can read at most: the table's files in the ``dt`` partitions in
        range, and the base snapshot's files (Athena reads only some columns: usually less)."""
        lo, hi = plan.dt_range
        total = 0
        for rel, size in self.archive.walk_files(layout.changes_table_dir(plan.table), ".parquet"):
            dt = next((p[3:] for p in rel.split("/") if p.startswith("dt=")), None)
            if dt is not None and str(lo) <= dt <= str(hi):
                total += size
        if plan.base is not None:
            wanted = set(plan.base.files)
            folder = layout.snapshot_dir(plan.table, plan.base.snapshot_id)
            total += sum(size for rel, size in self.archive.walk_files(folder) if rel in wanted)
        return total

    def check_scan(self, plan: Plan) -> int:
        bound = self.scan_bound(plan)
        if self.max_scan_bytes is not None and bound > self.max_scan_bytes:
            lo, hi = plan.dt_range
            raise Refused(
                f"the Athena fold of {plan.table} would scan up to {human_bytes(bound)} "
                f"(dt {lo}..{hi}{' and its base snapshot' if plan.base else ''}), more than "
                f"--athena-max-scan-gb {self.max_scan_bytes / _GB:g}: raise the limit, or "
                "restore from a later base (ddb-archiver snapshot) to narrow the range"
            )
        return bound

    def check_from_table_creation(self, plan: Plan) -> None:
        """A plan without a base: refuse unless the log really starts at table creation — the
        local fold's own check (:meth:`replayer.engines.fold.Fold.check_from_table_creation`), run
        on this machine like the rest of planning, so both engines refuse alike (exit 4)."""
        if plan.base is None:
            with Fold(self.archive) as fold:
                fold.check_from_table_creation(plan)

    # -- the query --------------------------------------------------------------------------

    def scratch_location(self, plan: Plan) -> str:
        """A fresh, empty prefix under the results location for one UNLOAD."""
        return (
            f"{self.athena.config.output}unload/{plan.table}/"
            f"{stamp(utcnow())}-{secrets.token_hex(4)}/"
        )

    def unload(self, plan: Plan, location: str | None = None) -> AthenaState:
        """Run the fold of ``plan`` as one UNLOAD to ``location`` (default: a scratch prefix)
        and check its output against the row count it reported."""
        self.check_tables(plan)
        bound = self.check_scan(plan)
        self.check_from_table_creation(plan)
        location = location or self.scratch_location(plan)
        self.athena.say(
            f"athena: folding {plan.table} as of the plan in {self.athena.config.workgroup}/"
            f"{self.athena.config.database} (scans at most {human_bytes(bound)}) into {location}"
        )
        outcome = self.athena.run(unload_state(FoldInputs.of_plan(plan), location))
        reported = self._reported_rows(outcome)
        files = self._manifest_files(outcome)
        state = AthenaState(outcome, location, files, reported)
        counted = sum(1 for _ in state.lines(self.archive))
        if counted != reported:
            raise AthenaResultMismatch(
                f"Athena query {outcome.query_id} reported {reported:,} rows but its output "
                f"files hold {counted:,}: nothing was created"
            )
        return state

    def _reported_rows(self, outcome: QueryOutcome) -> int:
        reported = self.athena.update_count(outcome.query_id)
        if reported is None:
            raise AthenaResultMismatch(
                f"Athena query {outcome.query_id} reported no row count (UpdateCount) for its "
                "UNLOAD: nothing was created"
            )
        return reported

    def _manifest_files(self, outcome: QueryOutcome) -> list[str]:
        manifest = outcome.manifest_location
        if not manifest:
            raise AthenaResultMismatch(
                f"Athena query {outcome.query_id} has no data manifest: its output files are "
                "unknown, nothing was created"
            )
        try:
            text = self.archive.fs.cat_file(manifest.split("://", 1)[1]).decode("utf-8")
        except FileNotFoundError as exc:
            raise AthenaResultMismatch(
                f"Athena query {outcome.query_id}: its data manifest {manifest} is missing"
            ) from exc
        return [line.strip() for line in text.splitlines() if line.strip()]


def state_at(
    fold: Fold,
    archive: Archive,
    plan: Plan,
    key_names: Sequence[str],
    athena: AthenaFolder | None,
) -> FoldResult:
    """The table at ``plan.at`` in ``fold``'s session: folded there, or with ``athena`` on
    Athena (one UNLOAD; its result loaded only once the query succeeded and its output holds
    every row it reported)."""
    if athena is None:
        return fold.state_at(plan)
    return athena.unload(plan).load(fold, archive, key_names)
