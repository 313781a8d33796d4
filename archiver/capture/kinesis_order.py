"""Where a Kinesis record goes in its key's history: its ``sequence_number``, ties decided.

Kinesis Data Streams for DynamoDB promises no order and may deliver a record twice; what
orders a key's records is ``ApproximateCreationDateTime``, kept in microseconds at the front
of the row's ``sequence_number`` (``archiver.format.ties``). :class:`Orderer` gives each
record its ``sequence_number`` as it arrives:

* a record no other record of its key shares its time with gets the default tie part, a
  function of its ``eventID`` (a duplicate read after a restart gets the same number);
* a record whose key already has a record at the same time is placed by what the images
  prove (``archiver.format.ties.orders``: the chains through the group in which each record's
  old image is the one before's new image, an absent image counting as a state), between the
  tie parts of those already archived (they are in files already and cannot move). Where the
  images do not tell which came last, or the archived ones are in the wrong order already, it
  keeps its default tie and the group is *undecided*. Every such group is recorded in
  ``kinesis-ties.jsonl`` (before its records reach a file), and a restore whose result depends
  on an undecided one is refused;
* a record whose ``eventID`` it has seen is a duplicate: ``None``, and the caller drops it.

It remembers the records of the last ``horizon`` (by creation time, from the newest seen),
every record placed off its default tie (read back from ``kinesis-ties.jsonl`` on start) and,
on start, the archived records that a record still to come may share a time with
(:func:`remember_archived`: those created after the shards' positions, less the reordering
margin). Two records of one key with the same time arriving further apart than that are not
compared here: the planner's check (``replayer.planning.kinesis_order``) finds such a group in
the archive and judges it by the images there, and refuses what they do not prove.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow.compute as pc
import pyarrow.dataset as ds

from archiver.capture.kinesis_records import Change
from archiver.format import coverage, layout, ties
from archiver.format.codec import CodecError, canonical_json
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms

DEFAULT_HORIZON = timedelta(minutes=5)


def _image_hash(image: Any) -> int | None:
    """The item's state an image shows (``None``: absent — an INSERT's old image, a REMOVE's
    new one; absent is a state like any other here)."""
    if type(image) is not dict and not isinstance(image, Mapping):
        return None
    return hash(orjson.dumps(image, option=orjson.OPT_SORT_KEYS))


@dataclass
class _Member:
    event_id: str
    tie: int
    old: int | None  # hash of the old image (None: the record has none)
    new: int | None


def _key_hash(keys: Any, raw: bytes) -> str:
    """The key's hash as the archive names keys (of its canonical text; of the raw text for
    keys the codec refuses, which the rows will refuse too)."""
    try:
        return coverage.key_hash(canonical_json(keys))
    except CodecError:
        return coverage.key_hash(raw.decode("utf-8", "replace"))


class Orderer:
    """Gives each Kinesis record of one table its ``sequence_number`` (see the module)."""

    def __init__(
        self, *, horizon: timedelta = DEFAULT_HORIZON, known: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        self.horizon = horizon
        self.horizon_micros = int(horizon.total_seconds() * 1_000_000)
        self.groups: dict[tuple[bytes, int], list[_Member]] = {}
        self._expiry: list[tuple[int, bytes]] = []
        self.newest = 0
        # Records placed off their default tie (kinesis-ties.jsonl): a duplicate of one must
        # get the same sequence number.
        self.placed: dict[str, str] = {}
        for entry in known:
            for event_id, sequence_number in zip(
                entry["event_ids"], entry["sequence_numbers"], strict=False
            ):
                self.placed[str(event_id)] = str(sequence_number)
        self.duplicates = 0
        self.ties = 0
        self.undecided = 0

    def place(
        self, item: Change, table_id: str, now: datetime
    ) -> tuple[str | None, dict[str, Any] | None]:
        """``(sequence_number, tie entry)`` for ``item``; the sequence number is ``None`` for a
        duplicate of a record seen, the entry (for ``kinesis-ties.jsonl``) is set when the
        record joined a group of its key's records with the same time."""
        known = self.placed.get(item.event_id)
        slot = (item.key_text, item.micros)
        group = self.groups.get(slot)
        if group is not None and any(m.event_id == item.event_id for m in group):
            self.duplicates += 1
            return None, None
        ddb = item.doc["dynamodb"]
        member = _Member(
            item.event_id,
            ties.default_tie(item.event_id),
            _image_hash(ddb.get("OldImage")),
            _image_hash(ddb.get("NewImage")),
        )
        others = list(group) if group else []
        if known is not None:
            member.tie = ties.tie_of(known)
        self._remember(slot, member)
        if not others or known is not None:
            return ties.order_key(item.micros, member.tie), None
        # A record of this key at this time is archived already: place it by the images.
        decided = self._place(member, others)
        members = [*others, member]
        self.ties += 1
        if not decided:
            self.undecided += 1
        sequence_number = ties.order_key(item.micros, member.tie)
        self.placed[item.event_id] = sequence_number
        ordered = sorted(members, key=lambda m: m.tie)
        entry = {
            "table_id": table_id,
            "key_sha256": _key_hash(ddb["Keys"], item.key_text),
            "micros": str(item.micros),
            "event_ids": [m.event_id for m in ordered],
            "sequence_numbers": [ties.order_key(item.micros, m.tie) for m in ordered],
            "decided": decided,
            "detected_at": iso_ms(now),
        }
        return sequence_number, entry

    def _place(self, member: _Member, others: list[_Member]) -> bool:
        """Set ``member.tie`` where the images put it among ``others`` (archived already, their
        ties fixed); ``True`` when they prove which record is last and the archive's order
        says so now (``archiver.format.ties.orders``)."""
        members = [*others, member]
        new = len(others)
        paths = ties.orders([(m.old, m.new) for m in members])
        if not paths or len({p[-1] for p in paths}) != 1:
            return False  # the images do not tell which came last
        if len(paths) == 1:
            # The whole order is proven: put the new record in its place, if the archived ones
            # are in theirs.
            path = paths[0]
            fixed = [members[i].tie for i in path if i != new]
            if fixed == sorted(fixed):
                at = path.index(new)
                low = max((members[i].tie for i in path[:at]), default=None)
                high = min((members[i].tie for i in path[at + 1 :]), default=None)
                return self._between(member, low, high)
        last = paths[0][-1]
        if last == new:
            return self._between(member, max(m.tie for m in others), None)
        top = members[last].tie
        if top != max(m.tie for m in others):
            return False  # another record outranks the last one already
        return self._between(member, None, top)

    @staticmethod
    def _between(member: _Member, low: int | None, high: int | None) -> bool:
        """Keep the default tie if it lies in (low, high), else move it there."""
        if (low is None or low < member.tie) and (high is None or member.tie < high):
            return True
        tie = ties.between(low, high)
        if tie is None:
            return False
        member.tie = tie
        return True

    def remember(self, key_text: bytes, micros: int, event_id: str, sequence_number: str,
                 old: Any, new: Any) -> None:  # fmt: skip
        """Know an archived record (its images as DynamoDB JSON objects, or ``None``)."""
        slot = (key_text, micros)
        if any(m.event_id == event_id for m in self.groups.get(slot, ())):
            return
        member = _Member(event_id, ties.tie_of(sequence_number), _image_hash(old), _image_hash(new))
        self._remember(slot, member)

    def _remember(self, slot: tuple[bytes, int], member: _Member) -> None:
        if slot not in self.groups:
            self.groups[slot] = []
            heapq.heappush(self._expiry, (slot[1], slot[0]))
        self.groups[slot].append(member)
        self.newest = max(self.newest, slot[1])
        limit = self.newest - self.horizon_micros
        while self._expiry and self._expiry[0][0] < limit:
            micros, key_text = heapq.heappop(self._expiry)
            self.groups.pop((key_text, micros), None)


def remember_archived(
    orderer: Orderer,
    archive: Archive,
    table: str,
    since: datetime,
    until: datetime | None = None,
) -> int:
    """Teach ``orderer`` the archived Kinesis records of ``table`` created at or after ``since``
    (and before ``until``, when given) — a record still to come may share a time with one of
    them; returns how many (blocking I/O: the row groups of the ``dt`` partitions from
    ``since`` on whose ``sequence_number`` statistics reach it)."""
    micros = int(since.timestamp() * 1_000_000)
    lowest = ties.order_key(max(micros, 0), 0)
    day = since - timedelta(days=1)
    last_day = layout.dt_of(until + timedelta(days=1)) if until is not None else None
    files = [
        rel
        for rel in archive.find(layout.changes_table_dir(table), ".parquet")
        if layout.is_kinesis_file(rel)
        and (parsed := layout.parse_change_file(rel)) is not None
        and parsed.dt >= layout.dt_of(day)
        and (last_day is None or parsed.dt <= last_day)
    ]
    if not files:
        return 0
    dataset = ds.dataset(
        [archive.path(rel) for rel in files], format="parquet", filesystem=archive.arrow_fs
    )
    columns = ["keys", "sequence_number", "event_id", "old_image", "new_image"]
    wanted = pc.field("sequence_number") >= lowest
    if until is not None:
        highest = ties.order_key(int(until.timestamp() * 1_000_000), 0)
        wanted = wanted & (pc.field("sequence_number") < highest)
    rows = dataset.to_table(columns=columns, filter=wanted)
    count = 0
    for keys, seq, event_id, old, new in zip(
        *(rows.column(c).to_pylist() for c in columns), strict=True
    ):
        key_text = orjson.dumps(orjson.loads(keys), option=orjson.OPT_SORT_KEYS)
        orderer.remember(
            key_text,
            ties.micros_of(seq),
            event_id,
            seq,
            orjson.loads(old) if old else None,
            orjson.loads(new) if new else None,
        )
        count += 1
    return count
