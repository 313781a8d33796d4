"""How a rollback decides, per key changed after T, what to write and under which condition.

DESIGN.md "In-place rollback". Per key changed in (T, now], as the archive holds its changes
(:func:`changes_after`):

- its state at T is the ``old_image`` of its first change after T (absent for an INSERT); a
  ``NEW_IMAGE`` stream carries no old images, so the caller supplies those states (the
  archive's fold at T);
- the write (:func:`plan_writes`) puts that state back — restore, re-create, or delete — and is
  skipped when the key already is as at T; an item DynamoDB's TTL deleted after T stays deleted
  unless asked;
- the write's condition (:func:`condition_for`) is that the live item still is what the archive
  last saw: a version attribute, else the item's existence plus as many of its attributes as fit
  DynamoDB's 4 KB condition-expression limit.

Making the writes and reporting conflicts is :mod:`replayer.rollback.in_place`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.format.codec import to_wire
from archiver.format.records import TTL_IDENTITY
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc
from replayer.read.query import run_query

# DynamoDB: "The maximum length of any expression string is 4 KB."
CONDITION_LIMIT = 4096

RESTORE = "restore"
DELETE = "delete"
RECREATE = "re-create"

_CHANGES_AFTER = """
SELECT keys,
       first(event_name ORDER BY stream_arn, sequence_number) AS first_event,
       first(old_image ORDER BY stream_arn, sequence_number) AS first_old_image,
       last(new_image ORDER BY stream_arn, sequence_number) AS latest_image,
       last(event_name ORDER BY stream_arn, sequence_number) AS latest_event,
       bool_or(event_name = 'REMOVE' AND coalesce(user_identity, '') = $ttl) AS ttl_deleted,
       count(*) AS changes,
       list(event_id) AS event_ids
FROM (
    SELECT * FROM changes
    WHERE table_name = $table AND table_id = $table_id AND event_time > $after
      AND ($until IS NULL OR event_time <= $until)
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY sequence_number) = 1
)
GROUP BY keys
ORDER BY keys
"""


# -- what changed after T --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyHistory:
    """One key's changes after T, as the archive holds them."""

    keys: str  # canonical DynamoDB JSON of the key
    first_event: str
    first_old_image: str | None
    latest_image: str | None  # None: the key is deleted now (as last archived)
    ttl_deleted: bool
    changes: int
    event_ids: frozenset[str]

    @property
    def state_at_t_known(self) -> bool:
        """Whether the first change after T says what the item was at T."""
        return self.first_event == "INSERT" or self.first_old_image is not None

    @property
    def state_at_t(self) -> str | None:
        return None if self.first_event == "INSERT" else self.first_old_image


def changes_after(
    archive: Archive,
    table: str,
    table_id: str,
    after: datetime,
    until: datetime | None = None,
) -> list[KeyHistory]:
    """Per key, the changes of generation ``table_id`` with ``after < event_time ≤ until``."""
    result = run_query(
        archive,
        _CHANGES_AFTER,
        {
            "table": table,
            "table_id": table_id,
            "after": as_utc(after),
            "until": as_utc(until) if until is not None else None,
            "ttl": TTL_IDENTITY,
        },
        table=table,
        dt_from=as_utc(after).date(),
        dt_to=as_utc(until).date() if until is not None else None,
    )
    return [
        KeyHistory(
            keys=row[0],
            first_event=row[1],
            first_old_image=row[2],
            latest_image=row[3] if row[4] != "REMOVE" else None,
            ttl_deleted=bool(row[5]),
            changes=int(row[6]),
            event_ids=frozenset(row[7]),
        )
        for row in result.rows()
    ]


# -- the writes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One conditional write that puts a key back to its state at T."""

    keys: str
    action: str  # RESTORE | DELETE | RECREATE
    item: str | None  # the state at T (canonical); None for DELETE
    expected: str | None  # the archive's latest image, which the live item must still be

    def describe(self) -> str:
        return f"{self.action:<9} {self.keys}"


@dataclass
class RollbackPlan:
    """What a rollback will do."""

    table: str
    at: datetime
    writes: list[Write]
    unchanged: list[str] = field(default_factory=list)  # changed after T, back at T already
    ttl_kept: list[str] = field(default_factory=list)  # expired after T: stay deleted
    histories: dict[str, KeyHistory] = field(default_factory=dict)


def plan_writes(
    table: str,
    at: datetime,
    histories: Sequence[KeyHistory],
    states_at: Mapping[str, str | None],
    *,
    include_ttl_deletes: bool,
) -> RollbackPlan:
    """The writes that put every key of ``histories`` back to its state at ``at``.

    ``states_at`` holds the state at ``at`` of keys whose first change after it carries no old
    image (a ``NEW_IMAGE`` stream); the others take it from that old image.
    """
    plan = RollbackPlan(table, at, [], histories={h.keys: h for h in histories})
    for history in histories:
        if history.ttl_deleted and not include_ttl_deletes:
            # The item expired after T: it stays deleted, and any later re-creation is undone.
            wanted: str | None = None
            if history.latest_image is None:
                plan.ttl_kept.append(history.keys)
                continue
        elif history.state_at_t_known:
            wanted = history.state_at_t
        else:
            wanted = states_at[history.keys]
        latest = history.latest_image
        if wanted == latest:
            plan.unchanged.append(history.keys)
            continue
        if wanted is None:
            action = DELETE
        elif latest is None:
            action = RECREATE
        else:
            action = RESTORE
        plan.writes.append(Write(history.keys, action, wanted, latest))
    return plan


@dataclass(frozen=True)
class Condition:
    expression: str
    names: dict[str, str]
    values: dict[str, Any]
    checked_attributes: int  # attributes of the expected image covered by the condition
    total_attributes: int

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ConditionExpression": self.expression,
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def condition_for(
    expected: str | None,
    key_names: Sequence[str],
    version_attribute: str | None = None,
    *,
    limit: int = CONDITION_LIMIT,
) -> Condition:
    """The condition that the live item still is ``expected`` (the archive's latest image).

    Absent expected item: ``attribute_not_exists`` of the hash key. With a version attribute:
    its archived value (or its absence). Otherwise the item's existence plus equality of its
    non-key attributes, in name order, as many as keep the expression within ``limit`` bytes.
    """
    names = {"#k0": key_names[0]}
    if expected is None:
        return Condition("attribute_not_exists(#k0)", names, {}, 0, 0)
    image = to_wire(expected)
    parts = ["attribute_exists(#k0)"]
    values: dict[str, Any] = {}
    attributes = [a for a in sorted(image) if a not in key_names]
    if version_attribute:
        names["#v"] = version_attribute
        if version_attribute in image:
            parts.append("#v = :v")
            values[":v"] = image[version_attribute]
        else:
            parts.append("attribute_not_exists(#v)")
        return Condition(" AND ".join(parts), names, values, 1, len(attributes))
    length = len(parts[0])
    checked = 0
    for i, attribute in enumerate(attributes):
        part = f"#a{i} = :a{i}"
        if length + len(" AND ") + len(part) > limit:
            break
        names[f"#a{i}"] = attribute
        values[f":a{i}"] = image[attribute]
        parts.append(part)
        length += len(" AND ") + len(part)
        checked += 1
    return Condition(" AND ".join(parts), names, values, checked, len(attributes))
