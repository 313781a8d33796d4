"""Time travel in ``ddb-replayer query``: ``state_at`` and ``history_of``.

``state_at('orders', TIMESTAMP '2026-01-31 12:00:00')`` is the table as it was at that
instant (columns ``keys``, ``item``), usable wherever SQL takes a table; the time is UTC
unless it carries a zone (``'2026-01-31T12:00:00+01:00'``). It is planned exactly as
``restore`` plans (coverage, watermark, gaps, base), and a plan that ``restore`` would refuse
fails the query with the same one-line reason (exit 4). Its SQL is the Athena fold's
(:mod:`replayer.engines.athena_sql`) translated to DuckDB, over the query's ``changes`` and
``snapshots`` views: the same text Athena runs for ``--engine athena``. A query never writes,
so native exports not yet converted into snapshots are not candidates for the base (any
``restore`` or ``export`` converts them).

``history_of('orders', '{"pk": {"S": "a"}}')`` is every change to one item (its key as
DynamoDB JSON, in any attribute order), in stream order, each record once: ``event_time,
event_name, who (user|ttl), old_image, new_image, table_id, stream_arn, sequence_number,
event_id``. Two more arguments bound it in time, inclusive (``history_of('orders', '<key>',
'2026-01-01 00:00:00', '2026-02-01 00:00:00')``; ``''`` for no bound): then only the ``dt``
partitions in range are read.

Both take literal arguments: they are expanded before DuckDB sees the statement, since the
plan needs the archive's state files.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from archiver.format.codec import CodecError, canonicalize_text
from archiver.format.storage import Archive
from replayer.engines.athena_sql import FoldInputs, history_between, state_select, to_duckdb
from replayer.exceptions import BadInput
from replayer.planning import plan as planning

_STRING = r"'((?:[^']|'')*)'"
_STATE_AT = re.compile(
    rf"\bstate_at\s*\(\s*{_STRING}\s*,\s*(?:TIMESTAMP\s*)?{_STRING}\s*\)", re.IGNORECASE
)
_BOUND = rf"(?:\s*,\s*(?:TIMESTAMP\s*)?{_STRING})?"
_HISTORY_OF = re.compile(
    rf"\bhistory_of\s*\(\s*{_STRING}\s*,\s*{_STRING}{_BOUND}{_BOUND}\s*\)", re.IGNORECASE
)
_ANY_CALL = re.compile(r"\b(state_at|history_of)\s*\(", re.IGNORECASE)


def _unquote(text: str) -> str:
    return text.replace("''", "'")


def parse_instant(text: str, what: str = "state_at") -> datetime:
    """``2026-01-31 12:00:00[.fff][zone]`` or ISO 8601; without a zone it is UTC."""
    value = text.strip().replace(" ", "T", 1)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadInput(f"{what}: {text!r} is not a timestamp (2026-01-31 12:00:00)") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def state_at_sql(archive: Archive, table: str, at: datetime) -> str:
    """The DuckDB SQL of the table at ``at``, or the planner's refusal."""
    plan = planning.plan_restore(archive, table, at, convert=False)
    return to_duckdb(state_select(FoldInputs.of_plan(plan)))


def history_of_sql(
    table: str, key_json: str, time_from: str | None = None, time_to: str | None = None
) -> str:
    """The DuckDB SQL of one item's changes; an absent or empty bound is no bound."""
    try:
        keys = canonicalize_text(key_json)
    except CodecError as exc:
        raise BadInput(f"history_of: the key is not DynamoDB JSON: {exc}") from exc
    lower, upper = (parse_instant(t, "history_of") if t else None for t in (time_from, time_to))
    return to_duckdb(history_between(table, keys, lower, upper))


def expand(archive: Archive, sql: str) -> str:
    """``sql`` with every ``state_at(…)`` and ``history_of(…)`` call replaced by its query."""

    def state(match: re.Match[str]) -> str:
        table, instant = _unquote(match.group(1)), _unquote(match.group(2))
        return f"({state_at_sql(archive, table, parse_instant(instant))})"

    def history(match: re.Match[str]) -> str:
        table, keys = _unquote(match.group(1)), _unquote(match.group(2))
        lower, upper = (None if g is None else _unquote(g) for g in match.group(3, 4))
        return f"({history_of_sql(table, keys, lower, upper)})"

    expanded = _HISTORY_OF.sub(history, _STATE_AT.sub(state, sql))
    left = _ANY_CALL.search(expanded)
    if left:
        raise BadInput(
            f"{left.group(1)} takes literal arguments: state_at('orders', TIMESTAMP "
            "'2026-01-31 12:00:00') or history_of('orders', '{\"pk\": {\"S\": \"a\"}}'[, "
            "'<from>', '<to>'])"
        )
    return expanded
