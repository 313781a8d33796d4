"""Which table, at which instant: table names with ``@TIME``, their plans and schemas.

A client names a table as it was at an instant: ``orders@2026-01-31T12:00:00Z`` or
``orders@1769860800.5`` (ISO 8601 with a zone, or epoch seconds, as every replayer command
takes times); a bare ``orders`` means the server's ``--at``, or, without one, the table's
latest restorable time (its watermark) fixed when the server started. ``arn:…:table/orders``
is read as ``orders``.

Each (table, instant) is planned exactly as ``ddb-replayer restore`` plans it
(:func:`replayer.planning.plan.plan_restore`): an instant the archive cannot answer exactly — after
the watermark, before coverage or the retention horizon, across a gap or a broken chain,
inside an incremental-export window with keys of unknown state, before the table existed —
is a ``ResourceNotFoundException`` whose message is the planner's reason. Nothing is
converted or recorded on the way: the archive is opened read-only (:class:`ReadOnlyArchive`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from archiver.format import tables as described
from archiver.format.errors import ArchiverError, UsageError
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_time
from replayer.exceptions import ReplayError
from replayer.planning import plan as planning
from replayer.read.status import archived_tables
from replayer.serve.dynamodb_errors import (
    InternalServerError,
    ResourceNotFoundException,
    ValidationException,
)
from replayer.serve.schema import TableSchema

log = logging.getLogger(__name__)


class ReadOnlyArchiveError(ReplayError):
    """Something tried to write to the archive the endpoint serves."""


class ReadOnlyArchive(Archive):
    """The same archive, refusing every write and delete: the endpoint only reads."""

    @classmethod
    def of(cls, archive: Archive) -> ReadOnlyArchive:
        return cls(archive.fs, archive.root, archive.url, file_mode=archive.file_mode)

    def put_bytes(self, rel: str, data: bytes) -> None:
        raise ReadOnlyArchiveError(f"the endpoint never writes to the archive (tried {rel})")

    def delete(self, rel: str) -> None:
        raise ReadOnlyArchiveError(f"the endpoint never deletes from the archive (tried {rel})")

    def delete_version(self, rel: str, version_id: str) -> None:
        raise ReadOnlyArchiveError(f"the endpoint never deletes from the archive (tried {rel})")


@dataclass(frozen=True)
class TableAt:
    """A table as it was at an instant: what a request names, planned and described."""

    requested: str  # the name as the client wrote it
    table: str  # the archived table's name
    at: datetime
    plan: planning.Plan
    schema: TableSchema

    @property
    def key(self) -> tuple[str, datetime]:
        """What identifies its state (two spellings of one instant share it)."""
        return (self.table, self.at)


def split_name(name: str) -> tuple[str, str | None]:
    """``(table, instant text or None)`` of a requested table name."""
    if name.startswith("arn:") and ":table/" in name:
        name = name.split(":table/", 1)[1]
    table, at_sign, instant = name.partition("@")
    return table, (instant if at_sign else None)


def describe_refusal(requested: str, exc: Exception) -> str:
    return (
        f"Requested resource not found: Table: {requested} cannot be answered exactly "
        f"from the archive: {exc}"
    )


class Catalog:
    """The archive's tables and the instants they are served at (see the module doc).

    ``at``: the instant a bare name means (``--at``); None: each table's latest restorable
    time, fixed at :meth:`start`.
    """

    def __init__(
        self,
        archive: Archive,
        *,
        at: datetime | None = None,
        planner: Callable[..., planning.Plan] = planning.plan_restore,
    ) -> None:
        if not isinstance(archive, ReadOnlyArchive):
            archive = ReadOnlyArchive.of(archive)
        self.archive = archive
        self.at = at
        self.planner = planner
        self._defaults: dict[str, datetime | Exception] = {}
        self._resolved: dict[tuple[str, datetime], TableAt | Exception] = {}
        self._lock = threading.Lock()

    # -- what is served ---------------------------------------------------------------------

    def tables(self) -> list[str]:
        """The archived table names, sorted."""
        return archived_tables(self.archive)

    def start(self) -> dict[str, datetime | Exception]:
        """Fix each table's default instant now; returns it (or why there is none)."""
        for table in self.tables():
            self.default_at(table)
        return dict(self._defaults)

    def default_at(self, table: str) -> datetime:
        """The instant a bare ``table`` means (fixed the first time it is known).

        Raises:
            ResourceNotFoundException: no restorable time (nothing archived or caught up yet).
        """
        if self.at is not None:
            return self.at
        with self._lock:
            known = self._defaults.get(table)
        if isinstance(known, datetime):
            return known
        try:
            found: datetime | Exception = planning.latest_restorable_time(self.archive, table)
        except (ReplayError, ArchiverError) as exc:
            found = exc
        with self._lock:
            current = self._defaults.get(table)
            if not isinstance(current, datetime):
                self._defaults[table] = current = found
        if isinstance(current, Exception):
            raise ResourceNotFoundException(describe_refusal(table, current))
        return current

    # -- resolving a request's table name --------------------------------------------------

    def instant(self, requested: str) -> tuple[str, datetime]:
        """``(table, instant)`` a requested name stands for."""
        table, text = split_name(requested)
        if not table:
            raise ValidationException(f"TableName {requested!r} names no table")
        if text is None:
            if self.at is None and table not in self._defaults and table not in self.tables():
                raise ResourceNotFoundException(
                    f"Requested resource not found: Table: {requested} not found"
                )
            return table, self.default_at(table)
        try:
            return table, parse_time(text)
        except UsageError:
            raise ValidationException(
                f"TableName {requested!r}: the instant after @ must be ISO 8601 with a zone "
                "(orders@2026-01-31T12:00:00Z) or epoch seconds (orders@1769860800.5)"
            ) from None

    def resolve(self, requested: str) -> TableAt:
        """The table a request names, planned at its instant.

        Raises:
            ResourceNotFoundException: unknown table, or an instant the archive cannot
                answer exactly (the message says why).
            ValidationException: a malformed instant.
        """
        table, at = self.instant(requested)
        with self._lock:
            found = self._resolved.get((table, at))
        if found is None:
            if table not in self.tables():
                raise ResourceNotFoundException(
                    f"Requested resource not found: Table: {requested} not found"
                )
            found = self._plan(table, at)
            if not isinstance(found, InternalServerError):  # a refusal stands; a failure may pass
                with self._lock:
                    found = self._resolved.setdefault((table, at), found)
        if isinstance(found, Exception):
            raise found
        return replace(found, requested=requested)

    def _plan(self, table: str, at: datetime) -> TableAt | Exception:
        where = f"{table}@{iso_ms(at)}"
        try:
            plan = self.planner(self.archive, table, at, convert=False)
            doc = described.description_at(self.archive, table, plan.at, plan.table_id)
        except (ReplayError, ArchiverError) as exc:
            return ResourceNotFoundException(describe_refusal(where, exc))
        except Exception as exc:  # an unreadable archive is not a refusal: say so
            log.exception("planning %s failed", where)
            return InternalServerError(f"planning {where} failed: {exc}")
        if doc is None:
            return ResourceNotFoundException(
                describe_refusal(
                    where,
                    ValueError(
                        f"the archive holds no description of table {table!r} (generation "
                        f"{plan.table_id}), so its keys and indexes are unknown"
                    ),
                )
            )
        try:
            schema = TableSchema.of_description(doc["Table"])
        except (KeyError, TypeError, ValueError) as exc:
            return InternalServerError(f"the archived description of {table} is unreadable: {exc}")
        return TableAt(table, table, plan.at, plan, schema)

    def forget(self, key: tuple[str, datetime]) -> None:
        """Plan this (table, instant) again next time (its state was evicted)."""
        with self._lock:
            self._resolved.pop(key, None)


def timestamps_as_epoch(value: Any) -> Any:
    """An archived description with its ISO 8601 ``…DateTime`` strings back as epoch
    seconds, the form DynamoDB's JSON protocol uses for timestamps."""
    if isinstance(value, dict):
        out = {}
        for name, inner in value.items():
            if name.endswith("DateTime") and isinstance(inner, str):
                with contextlib.suppress(UsageError):
                    inner = parse_time(inner).timestamp()
            out[name] = timestamps_as_epoch(inner)
        return out
    if isinstance(value, list):
        return [timestamps_as_epoch(inner) for inner in value]
    return value
