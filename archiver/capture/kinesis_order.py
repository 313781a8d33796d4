"""Where a Kinesis record goes in its key's history: its ``sequence_number``, ties decided.

Kinesis Data Streams for DynamoDB promises no order and may deliver a record twice; what
orders a key's records is ``ApproximateCreationDateTime``, kept in microseconds at the front
of the row's ``sequence_number`` (``archiver.format.ties``). :class:`Orderer` gives each
record its ``sequence_number`` as it arrives:

* a record no other record of its key shares its time with gets the default tie part, a
  function of its ``eventID`` (a duplicate read after a restart gets the same number);
* a record whose key already has a record at the same time is placed by what the images
  prove — a record whose old image equals another's new image comes after it — between the
  tie parts of those already archived (they are in files already and cannot move). Where the
  images prove nothing, or contradict each other, it keeps its default tie and the group is
  *undecided*. Every such group is recorded in ``kinesis-ties.jsonl`` (before its records
  reach a file), and a restore whose result depends on an undecided one is refused;
* a record whose ``eventID`` it has seen is a duplicate: ``None``, and the caller drops it.

It remembers the records of the last ``horizon`` (by creation time, from the newest seen) and
every record placed off its default tie (read back from ``kinesis-ties.jsonl`` on start). Two
records of one key with the same time arriving further apart than that are not compared here:
the planner's check (``replayer.planning.kinesis_order``) finds such a group in the archive and
judges it by the images there.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from archiver.capture.kinesis_records import Change
from archiver.format import coverage, ties
from archiver.format.codec import CodecError, canonical_json
from archiver.format.timefmt import iso_ms

DEFAULT_HORIZON = timedelta(minutes=5)


def _image_hash(image: Any) -> int | None:
    if not isinstance(image, Mapping):
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


def _after(later: _Member, earlier: _Member) -> bool:
    """Whether the images prove ``later`` comes after ``earlier``."""
    return later.old is not None and later.old == earlier.new


def _decided(members: list[_Member]) -> bool:
    """Whether the images prove the group's order: each record follows the one before it,
    and no pair is linked both ways."""
    ordered = sorted(members, key=lambda m: m.tie)
    return all(_after(b, a) and not _after(a, b) for a, b in itertools.pairwise(ordered))


class Orderer:
    """Gives each Kinesis record of one table its ``sequence_number`` (see the module)."""

    def __init__(
        self, *, horizon: timedelta = DEFAULT_HORIZON, known: Iterable[Mapping[str, Any]] = ()
    ) -> None:
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
        if known is not None:
            member.tie = ties.tie_of(known)
        self._remember(slot, member)
        if group is None or known is not None:
            return ties.order_key(item.micros, member.tie), None
        # A record of this key at this time is archived already: place it by the images.
        decided = self._place_among(member, group)
        members = [*group, member]
        self.ties += 1
        decided = decided and _decided(members)
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

    def _place_among(self, member: _Member, group: list[_Member]) -> bool:
        """Set ``member.tie`` where the images put it among ``group``; ``False`` when they
        prove nothing or contradict each other (the default tie stays)."""
        after = [m.tie for m in group if _after(member, m)]
        before = [m.tie for m in group if _after(m, member)]
        if not after and not before:
            return False
        low = max(after) if after else None
        high = min(before) if before else None
        if low is not None and high is not None and low >= high:
            return False
        if (low is None or low < member.tie) and (high is None or member.tie < high):
            return True  # the default tie is in place already
        ties_in = sorted(m.tie for m in group)
        if low is not None:
            above = [t for t in ties_in if t > low]
            tie = ties.between(low, above[0] if above else None)
        else:
            below = [t for t in ties_in if t < (high if high is not None else 0)]
            tie = ties.between(below[-1] if below else None, high)
        if tie is None:
            return False
        member.tie = tie
        return True

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
