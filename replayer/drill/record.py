"""``_state/<table>/drills.jsonl``: one line per drill, read and written against its schema.

Each line is :data:`archiver.format.statefiles.DRILL` (``at``, ``method``, items compared,
not comparable, differences and the first of them in full, fold and native-side seconds, the
measured RPO). A line that does not parse is an error naming the file, never overwritten.
``status`` shows the last drill of each table; the stack alarms on its ``differences``.
"""

from __future__ import annotations

from typing import Any

from archiver.format import layout, statefiles
from archiver.format.storage import Archive


def read(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Every recorded drill of ``table``, oldest first."""
    return statefiles.read_jsonl(archive, layout.drills(table), statefiles.DRILL, "drill record")


def last(archive: Archive, table: str) -> dict[str, Any] | None:
    drills = read(archive, table)
    return drills[-1] if drills else None


def append(archive: Archive, table: str, entry: dict[str, Any]) -> None:
    """Record a drill (once: a line with the same ``drill_id`` already there is kept).

    Raises:
        StateFileError: the entry does not have the schema's shape, or the file is broken.
    """
    statefiles.validate(archive.uri(layout.drills(table)), entry, statefiles.DRILL, "drill record")
    if any(d["drill_id"] == entry["drill_id"] for d in read(archive, table)):
        return
    archive.append_jsonl(layout.drills(table), entry)
