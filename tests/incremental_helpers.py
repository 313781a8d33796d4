"""Helpers for tests of history from incremental exports: a table in moto behind the export
double, the chain over it, and the truth a restore must equal (the writes applied in order)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.snapshots.base_snapshot import export_destination
from archiver.snapshots.export_chain import Chain
from replayer.engines.fold import Fold
from replayer.planning import plan as planning
from tests.conftest import create_table
from tests.incremental_double import Clock, ExportDouble, Write

EXPORT_BUCKET = "export-bucket"


@dataclass
class Setup:
    """A moto table, the export double over it with a clock the test moves, and an archive."""

    ddb: Any
    s3: Any
    double: ExportDouble
    clock: Clock
    archive: Archive
    table: str
    description: dict[str, Any]

    @property
    def created(self) -> datetime:
        value = self.description["CreationDateTime"]
        assert isinstance(value, datetime)
        return value

    def chain(
        self,
        every: timedelta = timedelta(minutes=15),
        prefix: str | None = None,
        view: str = "NEW_AND_OLD_IMAGES",
    ) -> Chain:
        dest = export_destination(
            self.archive, f"s3://{EXPORT_BUCKET}/{prefix or secrets.token_hex(4)}"
        )
        return Chain(
            self.double,
            self.archive,
            self.table,
            self.description,
            dest=dest,
            every=every,
            view=view,
            poll_seconds=0.0,
            sleep=lambda _: None,
            say=lambda _: None,
        )


def setup(ddb: Any, s3: Any, archive: Archive, table: str = "orders", **double: Any) -> Setup:
    description = create_table(ddb, table)
    if not any(b["Name"] == EXPORT_BUCKET for b in s3.list_buckets().get("Buckets", [])):
        s3.create_bucket(Bucket=EXPORT_BUCKET)
    clock = Clock(description["CreationDateTime"])
    export_double = ExportDouble(ddb, s3, clock=clock, **double)
    return Setup(ddb, s3, export_double, clock, archive, table, description)


def pk(name: str) -> dict[str, Any]:
    return {"pk": {"S": name}}


def put(time: datetime, name: str, value: int, old: int | None = None) -> Write:
    def image(v: int) -> dict[str, Any]:
        return {"pk": {"S": name}, "v": {"N": str(v)}, "b": {"B": "AQI="}}

    return Write(time, pk(name), image(value), None if old is None else image(old))


def delete(time: datetime, name: str) -> Write:
    return Write(time, pk(name), None)


def truth(writes: Iterable[Write], at: datetime) -> dict[str, str]:
    """The table at ``at``: every write with ``time ≤ at`` applied in order (times compared to
    the millisecond, the resolution the archive keeps)."""
    state: dict[str, str | None] = {}
    ordered = sorted(enumerate(writes), key=lambda pair: (pair[1].time, pair[0]))
    for _, write in ordered:
        if write.time.replace(microsecond=write.time.microsecond // 1000 * 1000) <= at:
            state[write.key_text] = None if write.new is None else canonical_json(dict(write.new))
    return {k: v for k, v in state.items() if v is not None}


def restored(archive: Archive, table: str, at: datetime, **options: Any) -> dict[str, str]:
    """What a restore to ``at`` folds (raises the plan's refusal)."""
    plan = planning.plan_restore(archive, table, at, convert=False, **options)
    with Fold(archive) as fold:
        result = fold.state_at(plan)
        return {r["keys"]: r["item"] for b in result.batches() for r in b.to_pylist()}


def window_ends(archive: Archive, table: str) -> Sequence[datetime]:
    from archiver.format.exports.incremental import list_windows

    return [w.last_exact for w in list_windows(archive, table)]
