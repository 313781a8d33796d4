"""Records of one key with the same creation time: how the Kinesis capture ordered them.

**The order key.** A Kinesis row's ``sequence_number`` is 40 digits: the record's creation
time in microseconds since the epoch (17 digits) followed by a 23-digit tie part, so that
string order is time order (:func:`order_key`, :func:`micros_of`). A record's tie part is
:func:`default_tie` — 5·10²² plus 21 digits of a hash of its ``eventID``, the same for a
duplicate of it — unless it was placed among records of its key with the same time
(:func:`between`), which leaves room on either side.

Kinesis Data Streams for DynamoDB delivers a key's records in no promised order, each stamped
with ``ApproximateCreationDateTime`` at the destination's precision (docs/format.md "Kinesis
Data Streams records"). The archive orders a key's Kinesis records by that time, kept exact in
``sequence_number``; two records of one key with the same time are ordered by what their
images prove — a record whose old image equals the other's new image comes after it — and
that order is written into their ``sequence_number`` as they are archived. What the images
allow is :func:`orders`: the capture and the replayer's check judge a group by it alike.

Each such group met while capturing is recorded in ``_state/<table>/kinesis-ties.jsonl``, one
line per change of what is known about it (the latest line per key and time counts)::

    {"table_id", "key_sha256", "micros", "event_ids", "sequence_numbers", "decided",
     "detected_at"}

``event_ids`` and ``sequence_numbers`` are in the archive's order; ``decided`` is false where
the images prove nothing (both orders fit, or neither): a restore whose result depends on such
a group is refused, naming the key, unless inexact results are allowed. Keys are named by
:func:`archiver.format.coverage.key_hash`, never by their contents, so an erasure has nothing
to scrub here.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from archiver.format import layout, statefiles
from archiver.format.storage import Archive


def read_ties(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Every recorded group, the latest line per (table_id, key_sha256, micros), in order."""
    lines = statefiles.read_jsonl(
        archive, layout.kinesis_ties(table), statefiles.KINESIS_TIE, "kinesis tie record"
    )
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in lines:
        latest[(str(line["table_id"]), str(line["key_sha256"]), str(line["micros"]))] = line
    return list(latest.values())


def append_ties(archive: Archive, table: str, entries: Iterable[Mapping[str, Any]]) -> None:
    """Record groups (before any record of theirs reaches a change file)."""
    for entry in entries:
        archive.append_jsonl(layout.kinesis_ties(table), dict(entry))


MICROS_DIGITS = 17
TIE_DIGITS = 23
TIE_SPACE = 10**TIE_DIGITS
_HASH_SPACE = 10**21
DEFAULT_TIE_BASE = 50 * _HASH_SPACE


def default_tie(event_id: str) -> int:
    """A record's tie part when no record of its key shares its time: a function of its
    ``eventID`` alone (a duplicate gets the same), in the middle of the tie space."""
    digest = hashlib.sha256(event_id.encode("utf-8")).digest()
    return DEFAULT_TIE_BASE + int.from_bytes(digest[:9], "big") % _HASH_SPACE


def order_key(micros: int, tie: int) -> str:
    """The 40-digit ``sequence_number`` of a Kinesis row: time first, then the tie part."""
    if not 0 <= micros < 10**MICROS_DIGITS or not 0 <= tie < TIE_SPACE:
        raise ValueError(f"no order key for {micros} µs, tie {tie}")
    return f"{micros:0{MICROS_DIGITS}d}{tie:0{TIE_DIGITS}d}"


def micros_of(sequence_number: str) -> int:
    """The creation time (µs since the epoch) in a Kinesis row's ``sequence_number``."""
    return int(sequence_number.zfill(MICROS_DIGITS + TIE_DIGITS)[:MICROS_DIGITS])


def tie_of(sequence_number: str) -> int:
    """The tie part of a Kinesis row's ``sequence_number``."""
    return int(sequence_number.zfill(MICROS_DIGITS + TIE_DIGITS)[MICROS_DIGITS:])


def between(low: int | None, high: int | None) -> int | None:
    """A tie part strictly between ``low`` and ``high`` (None: no bound on that side), or
    None when there is no room."""
    lo = -1 if low is None else low
    hi = TIE_SPACE if high is None else high
    if hi - lo < 2:
        return None
    return (lo + hi) // 2


# -- what the images prove ------------------------------------------------------------------

UNKNOWN = object()  # the state before a group is not known
LARGEST_GROUP = 8  # orders of larger groups are not enumerated: they prove nothing


def orders(
    links: Sequence[tuple[Hashable, Hashable]], prior: object = UNKNOWN
) -> list[tuple[int, ...]] | None:
    """Every order of one key's records with the same time that their images allow.

    ``links`` holds each record's (old state, new state) — its images' canonical text, or
    ``None`` for absent (an INSERT's old, a REMOVE's new). Consecutive changes of an item
    always link — each one's old state is the one before's new state — and the first one's old
    state is the state before them (``prior``, when known). So the orders the images allow are
    the chains through every record whose links hold; the true order is among them. Returns
    them as tuples of indexes, or ``None`` for a group too large to enumerate.
    """
    count = len(links)
    if count > LARGEST_GROUP:
        return None
    found: list[tuple[int, ...]] = []
    for order in itertools.permutations(range(count)):
        if prior is not UNKNOWN and links[order[0]][0] != prior:
            continue
        if all(links[b][0] == links[a][1] for a, b in itertools.pairwise(order)):
            found.append(order)
    return found
