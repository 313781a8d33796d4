"""One item's timeline from the archive: every change, who made it, and what changed.

The key is DynamoDB JSON, as the AWS CLI takes it ('{"pk": {"S": "a"}}'); it is canonicalised,
so spacing, attribute order and number form do not matter. Each change shows its time (UTC),
event name, who made it (TTL for DynamoDB's own expiry deletions, else user) and an
attribute-level diff of the old image to the new one: + added, - removed, ~ changed; nested
maps are compared attribute by attribute (address.city). A record archived twice shows once.

With a NEW_IMAGE stream the records carry no old image: the previous change's new image stands
in for it (and says so). A key with no history prints that and exits 0.

Examples:
  ddb-replayer history --table-name orders --archive s3://bucket/prefix \\
      --key '{"pk": {"S": "order-42"}}' --from 2026-01-01T00:00:00Z
  ddb-replayer history --table-name orders --archive ./demo-archive \\
      --key '{"pk": {"S": "order-42"}, "sk": {"N": "1"}}' --format json
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import orjson

from archiver.format import layout
from archiver.format.codec import AttributeValueVisitor, CodecError, canonicalize_text
from archiver.format.records import TTL_IDENTITY
from archiver.format.storage import Archive
from archiver.format.tables import archived_key_names
from archiver.format.timefmt import iso_ms
from replayer.exceptions import BadInput
from replayer.read.query import run_query

# In --format table a value longer than this is cut: images can be 400 KB.
VALUE_WIDTH = 100

_SQL = """
SELECT event_time, event_name, user_identity, event_id, sequence_number, stream_arn, table_id,
       old_image, new_image
FROM changes
WHERE table_name = $table AND keys = $keys
  AND ($time_from IS NULL OR event_time >= $time_from)
  AND ($time_to IS NULL OR event_time <= $time_to)
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY sequence_number) = 1
ORDER BY stream_arn, sequence_number
"""


# -- diffs ----------------------------------------------------------------------------------


@dataclass
class Diff:
    """What changed between two images, by attribute path (maps compared inside)."""

    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": {
                path: {"old": old, "new": new} for path, (old, new) in self.changed.items()
            },
        }


def _path(prefix: str, name: str) -> str:
    simple = name.isidentifier()
    part = name if simple else orjson.dumps(name).decode("utf-8")
    return f"{prefix}.{part}" if prefix else part


def _same(a: Any, b: Any) -> bool:
    # Images are canonical, so equal values have equal text; compare parsed values directly.
    return bool(a == b)


def diff_images(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, prefix: str = ""
) -> Diff:
    """Attribute-level diff of two items in DynamoDB JSON (either may be absent)."""
    out = Diff()
    old = old or {}
    new = new or {}
    for name in sorted(set(old) | set(new)):
        path = _path(prefix, name)
        if name not in old:
            out.added[path] = new[name]
        elif name not in new:
            out.removed[path] = old[name]
        elif not _same(old[name], new[name]):
            before, after = old[name], new[name]
            if "M" in before and "M" in after:
                inner = diff_images(before["M"], after["M"], path)
                out.added.update(inner.added)
                out.removed.update(inner.removed)
                out.changed.update(inner.changed)
            else:
                out.changed[path] = (before, after)
    return out


def _text(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


class _Renderer(AttributeValueVisitor[str]):
    """Attribute values of canonical images, compactly, for people."""

    def visit_s(self, value: Any) -> str:
        return _text(value)

    def visit_n(self, value: Any) -> str:
        return str(value)

    def visit_b(self, value: Any) -> str:
        return f"b64:{value}"

    def visit_bool(self, value: Any) -> str:
        return "true" if value else "false"

    def visit_null(self, value: Any) -> str:
        return "null"

    def visit_ss(self, value: Any) -> str:
        return "<<" + ", ".join(_text(v) for v in value) + ">>"

    def visit_ns(self, value: Any) -> str:
        return "<<" + ", ".join(str(v) for v in value) + ">>"

    def visit_bs(self, value: Any) -> str:
        return "<<" + ", ".join(f"b64:{v}" for v in value) + ">>"

    def visit_m(self, value: Any) -> str:
        members = self.map_of(value)
        return "{" + ", ".join(f"{_path('', k)}: {members[k]}" for k in sorted(members)) + "}"

    def visit_l(self, value: Any) -> str:
        return "[" + ", ".join(self.list_of(value)) + "]"

    def unknown(self, tag: str, value: Any) -> str:
        return _text({tag: value})


_RENDERER = _Renderer()


def render(av: Mapping[str, Any]) -> str:
    """An attribute value, compactly: ``"text"``, ``12.5``, ``b64:AAE=``, ``<<"a", "b">>``
    for sets, ``{name: value}`` for maps, ``[…]`` for lists."""
    return _RENDERER.visit(av)


def _cut(text: str, width: int = VALUE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- timeline -------------------------------------------------------------------------------


@dataclass
class Change:
    event_time: datetime
    event_name: str
    user_identity: str | None
    event_id: str
    sequence_number: str
    stream_arn: str
    table_id: str
    old_image: dict[str, Any] | None
    new_image: dict[str, Any] | None
    old_image_derived: bool = False
    diff: Diff = field(default_factory=Diff)

    @property
    def who(self) -> str:
        return "TTL" if self.user_identity == TTL_IDENTITY else "user"

    def to_json(self) -> dict[str, Any]:
        return {
            "event_time": iso_ms(self.event_time),
            "event_name": self.event_name,
            "who": self.who.lower(),
            "user_identity": self.user_identity,
            "event_id": self.event_id,
            "sequence_number": self.sequence_number,
            "stream_arn": self.stream_arn,
            "table_id": self.table_id,
            "old_image": self.old_image,
            "new_image": self.new_image,
            "old_image_derived": self.old_image_derived,
            "diff": self.diff.to_json(),
        }


def _parse(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    parsed: dict[str, Any] = orjson.loads(text)
    return parsed


def timeline(rows: list[tuple[Any, ...]]) -> list[Change]:
    """Rows in stream order → changes with diffs (old images derived where not recorded)."""
    changes: list[Change] = []
    previous: Change | None = None
    for row in rows:
        change = Change(
            event_time=row[0],
            event_name=row[1],
            user_identity=row[2],
            event_id=row[3],
            sequence_number=row[4],
            stream_arn=row[5],
            table_id=row[6],
            old_image=_parse(row[7]),
            new_image=_parse(row[8]),
        )
        # A NEW_IMAGE stream: the item before this change is the previous change's result
        # (of the same table generation: a recreated table starts empty).
        if (
            change.old_image is None
            and change.event_name != "INSERT"
            and previous is not None
            and previous.table_id == change.table_id
            and previous.new_image is not None
        ):
            change.old_image = previous.new_image
            change.old_image_derived = True
        change.diff = diff_images(change.old_image, change.new_image)
        changes.append(change)
        previous = change
    return changes


def item_history(
    archive: Archive,
    table: str,
    key_text: str,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
) -> list[Change]:
    """The item's changes in stream order, each ``event_id`` once."""
    try:
        keys = canonicalize_text(key_text)
    except CodecError as exc:
        raise BadInput(f"--key: {exc}") from exc
    if keys == "{}":
        raise BadInput('--key names no attribute: give the key, e.g. \'{"pk": {"S": "a"}}\'')
    # History reads the change log only: the descriptions say the keys, snapshots are not read.
    expected = archived_key_names(archive, table, from_snapshots=False)
    given = sorted(orjson.loads(keys))
    if expected is not None and given != sorted(expected):
        raise BadInput(
            f"--key must give exactly the key attributes of {table}: {', '.join(expected)} "
            f"(got {', '.join(given)})"
        )
    result = run_query(
        archive,
        _SQL,
        {"table": table, "keys": keys, "time_from": time_from, "time_to": time_to},
        table=table,
        dt_from=layout.dt_of(time_from) if time_from else None,
        dt_to=layout.dt_of(time_to) if time_to else None,
    )
    return timeline(list(result.rows()))


# -- output ---------------------------------------------------------------------------------


def write_timeline(changes: list[Change], out: TextIO) -> None:
    for index, change in enumerate(changes):
        if index and changes[index - 1].table_id != change.table_id:
            out.write(f"--- table recreated: table_id {change.table_id} ---\n")
        out.write(f"{iso_ms(change.event_time)}  {change.event_name:<6}  {change.who}\n")
        diff = change.diff
        if change.event_name == "REMOVE" and change.old_image is None:
            out.write("    (item deleted; its last image was not recorded)\n")
        elif change.event_name != "INSERT" and change.old_image is None:
            out.write("    (old image not recorded: the item is now)\n")
            for path, value in diff.added.items():
                out.write(f"    = {path}: {_cut(render(value))}\n")
            continue
        if change.old_image_derived:
            out.write("    (old image from the previous change: the stream has no old images)\n")
        for path, value in diff.added.items():
            out.write(f"    + {path}: {_cut(render(value))}\n")
        for path, value in diff.removed.items():
            out.write(f"    - {path}: {_cut(render(value))}\n")
        for path, (old, new) in diff.changed.items():
            out.write(f"    ~ {path}: {_cut(render(old), 48)} → {_cut(render(new), 48)}\n")
        if not (diff.added or diff.removed or diff.changed) and change.event_name == "MODIFY":
            out.write("    (no attribute changed)\n")
