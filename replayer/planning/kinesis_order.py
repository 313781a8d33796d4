"""Whether a state built from Kinesis rows depends on an order the archive cannot prove.

Rows captured from Kinesis Data Streams are ordered by their creation time, kept to the
microsecond at the front of ``sequence_number`` (``archiver.format.ties``). Per key, the fold
takes the row with the highest ``sequence_number`` at or before ``T``. When other rows of the
key share that row's creation time, which of them came last is a question for their images.
Consecutive changes of an item always link — each one's old image is the one before's new
image, an absent image (an INSERT's old, a REMOVE's new) counting as a state — so the orders
the images allow are the chains through every row of that time whose links hold, starting from
the key's state before them when the window shows it (``archiver.format.ties.orders``). The
capture placed them so already (``archiver.capture.kinesis_order``); this check judges what
the archive holds, whatever the capture saw:

* the key's state at ``T`` is **exact** when every allowed order ends in the state the fold's
  winner leaves (or every row of that time leaves it);
* otherwise it is **ambiguous** (several orders end differently, as when a state comes back:
  x → y → x; or none fits): the restore is refused (exit 4) naming the keys — by their text,
  and saying which the capture recorded as undecided in ``kinesis-ties.jsonl`` — unless
  ``--allow-inexact``, which restores the fold's choice and says so.

What it reads: the ``keys``, ``sequence_number`` and ``event_id`` columns of the Kinesis files
in the window (one aggregate, like the fold's first pass), then the rows of the few keys whose
latest time another row shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from archiver.format import coverage, layout, ties
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, from_epoch, iso_ms
from replayer.engines import dataset
from replayer.exceptions import Refused

_MICROS = ties.MICROS_DIGITS


class AmbiguousOrder(Refused):
    """A key's state at T depends on the order of equal-time Kinesis records that their images
    do not prove."""


@dataclass(frozen=True)
class TiedKey:
    """One key whose state at T the archive cannot prove."""

    keys: str
    micros: int
    event_ids: tuple[str, ...]
    recorded: bool  # the capture recorded the group as undecided

    def describe(self) -> str:
        at = iso_ms(from_epoch(self.micros / 1_000_000))
        return f"{self.keys} at {at} ({self.micros} µs): records {', '.join(self.event_ids)}"


@dataclass(frozen=True)
class EqualTimeOrder:
    """``--allow-inexact`` took the archive's order for keys whose state is not proven."""

    keys: tuple[TiedKey, ...] = field(default=())

    def describe(self) -> str:
        shown = "; ".join(k.describe() for k in self.keys[:3])
        more = f" (and {len(self.keys) - 3} more)" if len(self.keys) > 3 else ""
        return (
            f"INEXACT: {len(self.keys)} key(s) have records with the same creation time whose "
            f"images do not prove their order; restored in the archive's order: {shown}{more}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "equal_time_keys": len(self.keys),
            "state_of_uncertain_keys": "the archive's order of equal-time records",
            "keys": [
                {"key_sha256": coverage.key_hash(k.keys), "micros": str(k.micros)}
                for k in self.keys
            ],
        }


def _relation(con: duckdb.DuckDBPyConnection, archive: Archive, files: Sequence[str]) -> str:
    direct = archive.duckdb_paths(files)
    if direct is not None:
        paths = ", ".join("'" + p.replace("'", "''") + "'" for p in direct)
        return f"read_parquet([{paths}], hive_partitioning = false)"
    con.register("_kinesis_changes", dataset.changes_dataset(archive, list(files)))
    return "_kinesis_changes"


def _state(member: Mapping[str, Any]) -> str | None:
    return None if member["event_name"] == "REMOVE" else member["new_image"]


def judge(members: Sequence[Mapping[str, Any]], prior: object = ties.UNKNOWN) -> bool:
    """Whether the fold's winner among rows of one key and time (``seq``, ``event_id``,
    ``event_name``, ``new_image``, ``old_image``) is the key's state, as the images prove.

    ``prior``: the key's state before them (``None`` absent), when the window holds an earlier
    row of it. The orders the images allow are ``archiver.format.ties.orders``'; the state is
    proven when every one of them ends in the state the fold's winner leaves — or every row
    leaves that state.
    """
    unique = list({m["event_id"]: m for m in sorted(members, key=lambda m: m["seq"])}.values())
    winner = max(unique, key=lambda m: m["seq"])
    if {_state(m) for m in unique} == {_state(winner)}:
        return True
    links = [(None if m["event_name"] == "INSERT" else m["old_image"], _state(m)) for m in unique]
    paths = ties.orders(links, prior)
    if not paths:
        return False
    return {_state(unique[path[-1]]) for path in paths} == {_state(winner)}


def unproven_keys(
    archive: Archive,
    files: Sequence[str],
    table: str,
    table_id: str,
    lo: datetime,
    hi: datetime,
    *,
    lower_inclusive: bool = True,
) -> list[TiedKey]:
    """The keys whose state at ``hi`` (from the rows in ``[lo, hi]``, or ``(lo, hi]``) depends
    on an order the images do not prove, among the Kinesis files of ``files``."""
    kinesis = [f for f in files if layout.is_kinesis_file(f)]
    if not kinesis:
        return []
    lower = ">=" if lower_inclusive else ">"
    params = {"table_id": table_id, "lo": as_utc(lo), "hi": as_utc(hi)}
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = _relation(con, archive, kinesis)

        def window(alias: str = "") -> str:
            return (
                f"{alias}table_id = $table_id AND {alias}event_time {lower} $lo "
                f"AND {alias}event_time <= $hi"
            )

        tied = con.execute(
            f"""
            WITH log AS (SELECT keys, sequence_number AS seq, event_id FROM {rel} WHERE {window()}),
            top AS (SELECT keys, max(seq) AS seq, arg_max(event_id, seq) AS event_id
                    FROM log GROUP BY keys)
            SELECT DISTINCT top.keys, left(top.seq, {_MICROS}) AS micros
            FROM log JOIN top ON log.keys = top.keys
            WHERE left(log.seq, {_MICROS}) = left(top.seq, {_MICROS})
              AND log.event_id <> top.event_id
            """,
            params,
        ).fetchall()
        if not tied:
            return []
        con.execute("CREATE TEMP TABLE tied (keys VARCHAR, micros VARCHAR)")
        con.executemany("INSERT INTO tied VALUES (?, ?)", [list(row) for row in tied])
        rows = con.execute(
            f"""
            SELECT c.keys, tied.micros, c.sequence_number, c.event_id, c.event_name,
                   c.new_image, c.old_image
            FROM {rel} AS c JOIN tied ON c.keys = tied.keys
            WHERE {window("c.")}
              AND left(c.sequence_number, {_MICROS}) <= tied.micros
            """,
            params,
        ).fetchall()
    finally:
        con.close()
    groups: dict[str, list[dict[str, Any]]] = {}
    before: dict[str, dict[str, Any]] = {}
    for keys, micros, seq, event_id, event_name, new_image, old_image in rows:
        row = {
            "seq": str(seq),
            "event_id": str(event_id),
            "event_name": str(event_name),
            "new_image": new_image,
            "old_image": old_image,
        }
        if str(seq)[:_MICROS] == micros:
            groups.setdefault(str(keys), []).append(row)
        elif str(keys) not in before or before[str(keys)]["seq"] < row["seq"]:
            before[str(keys)] = row
    recorded = {
        (str(t["key_sha256"]), str(t["micros"]))
        for t in ties.read_ties(archive, table)
        if not t.get("decided") and t.get("table_id") == table_id
    }
    out = []
    for keys, members in sorted(groups.items()):
        earlier = before.get(keys)
        if judge(members, _state(earlier) if earlier is not None else ties.UNKNOWN):
            continue
        micros = ties.micros_of(members[0]["seq"])
        out.append(
            TiedKey(
                keys=keys,
                micros=micros,
                event_ids=tuple(sorted({m["event_id"] for m in members})),
                recorded=(coverage.key_hash(keys), str(micros)) in recorded,
            )
        )
    return out


def check(
    archive: Archive,
    files: Sequence[str],
    table: str,
    table_id: str,
    lo: datetime,
    hi: datetime,
    *,
    allow_inexact: bool,
    lower_inclusive: bool = True,
) -> EqualTimeOrder | None:
    """Refuse a state that depends on an unproven order, or (``allow_inexact``) say so.

    Raises:
        AmbiguousOrder: some key's state is not proven and inexact results are not allowed.
    """
    found = unproven_keys(archive, files, table, table_id, lo, hi, lower_inclusive=lower_inclusive)
    if not found:
        return None
    if allow_inexact:
        return EqualTimeOrder(tuple(found))
    shown = "; ".join(k.describe() for k in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    recorded = sum(k.recorded for k in found)
    note = (
        f", {recorded} of them recorded by the archiver in kinesis-ties.jsonl" if recorded else ""
    )
    raise AmbiguousOrder(
        f"table {table!r} at {iso_ms(hi)}: {len(found)} key(s) have records with the same "
        f"creation time whose images do not prove which came last{note}: {shown}{more}; "
        "--allow-inexact restores them in the archive's order, or pick another time"
    )
