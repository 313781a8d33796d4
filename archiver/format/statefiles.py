"""Reading state files against their schema: a broken one is an error naming it, never a default.

Every JSON state file of the archive (checkpoints, ``coverage.json``, ``gaps.jsonl``, table
descriptions, snapshot ``_manifest.json``, ``restore-stats.json``, ``compaction-pending.json``,
``retention.json``, ``lambda.json``, ``lambda-redrives.jsonl``, incremental window commits,
``backfill.json``, a restore's progress, ``drills.jsonl`` — everything under ``_state/``) is
read through :func:`read_json` / :func:`read_jsonl`, which parse it and check its shape
(DESIGN.md "State files"). A truncated, garbage or wrong-shaped file raises
:class:`StateFileError` — one line naming the file and what is wrong, exit 2 — instead of being
taken as "absent" (a ``coverage.json`` holding ``[]`` is not "never archived"). Because the
error is raised on read, a command that could not read a file never gets to overwrite it.

The schemas are deliberately small: the fields a reader relies on, with their types. Extra
fields are allowed (newer writers add some).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from archiver.format import layout
from archiver.format.errors import UsageError
from archiver.format.storage import Archive


class StateFileError(UsageError):
    """A state file that does not parse or has the wrong shape (exit 2). It is left as it is."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(
            f"{uri}: {problem} (the file is left untouched: fix or restore it, e.g. from a "
            "previous S3 object version; `ddb-archiver check` lists every damaged file)"
        )
        self.uri = uri
        self.problem = problem


Check = Callable[[Any], bool]


def _iso(value: Any) -> bool:
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _digits(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()


def _nullable(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _is(*types: type) -> Check:
    return lambda value: (
        isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    )


def _list_of(check: Check) -> Check:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


STR = _is(str)
BOOL = _is(bool)
INT = _is(int)
NUMBER = _is(int, float)
DICT = _is(dict)
ISO = _iso
OPT_ISO = _nullable(_iso)
OPT_STR = _nullable(STR)

# field → (check, required); "what it must be" is the check's description in messages.
Schema = Mapping[str, tuple[Check, bool, str]]

CHECKPOINT: Schema = {
    "stream_arn": (STR, True, "a string"),
    "shard_id": (STR, True, "a string"),
    "parent_shard_id": (OPT_STR, False, "a string or null"),
    "sequence_number": (_nullable(_digits), True, "a decimal string or null"),
    "event_time": (OPT_ISO, False, "an ISO UTC time or null"),
    "caught_up_at": (OPT_ISO, False, "an ISO UTC time or null"),
    "closed": (BOOL, False, "true or false"),
    "updated_at": (OPT_ISO, False, "an ISO UTC time"),
    "chain_head": (_nullable(DICT), False, "an object or null"),
}

_GENERATION: Schema = {
    "table": (STR, True, "a string"),
    "table_id": (STR, True, "a string"),
    "table_arn": (STR, False, "a string"),
    "table_created_at": (OPT_ISO, False, "an ISO UTC time"),
    "covered_from": (OPT_ISO, False, "an ISO UTC time"),
    "from_table_creation": (BOOL, False, "true or false"),
    "watermark": (OPT_ISO, False, "an ISO UTC time or null"),
    "mode": (
        _nullable(lambda v: v in ("poller", "lambda", "incremental", "kinesis", "kinesis-lambda")),
        False,
        "poller, lambda, incremental, kinesis or kinesis-lambda",
    ),
}


def _generation(value: Any) -> bool:
    return isinstance(value, dict) and not _problems(value, _GENERATION)


COVERAGE: Schema = {
    **_GENERATION,
    "previous": (_list_of(_generation), False, "a list of generations"),
}

GAP: Schema = {
    "table": (STR, False, "a string"),
    "table_id": (OPT_STR, False, "a string"),
    "stream_arn": (OPT_STR, False, "a string"),
    "shard_id": (OPT_STR, False, "a string or null"),
    "from": (ISO, True, "an ISO UTC time"),
    "to": (OPT_ISO, True, "an ISO UTC time"),
    "reason": (STR, True, "a string"),
}

TABLE_DESCRIPTION: Schema = {
    "captured_at": (ISO, True, "an ISO UTC time"),
    "table_name": (STR, True, "a string"),
    "table_id": (STR, False, "a string"),
    "Table": (DICT, True, "an object (DescribeTable's Table)"),
}


def _manifest_file(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and STR(value.get("path"))
        and INT(value.get("item_count"))
        and STR(value.get("sha256"))
    )


SNAPSHOT_MANIFEST: Schema = {
    "table": (STR, False, "a string"),
    "table_id": (STR, True, "a string"),
    "snapshot_id": (STR, True, "a string"),
    "method": (STR, False, "a string"),
    "valid_from": (ISO, True, "an ISO UTC time"),
    "log_from": (ISO, True, "an ISO UTC time"),
    "item_count": (INT, True, "a whole number"),
    "files": (_list_of(_manifest_file), True, "a list of {path, item_count, sha256}"),
}

# The last replay's measured rate (absent until a replay was measured), earlier imports'
# sizes and times, and the note of an inexact restore.
RESTORE_STATS: Schema = {
    "items": (INT, False, "a whole number"),
    "seconds": (NUMBER, False, "a number"),
    "items_per_second": (NUMBER, False, "a number"),
    "measured_at": (ISO, False, "an ISO UTC time"),
    "imports": (_list_of(DICT), False, "a list of {bytes, seconds, …}"),
    "inexact": (DICT, False, "an object"),
}


# Records of one key with the same creation time, as the Kinesis capture ordered them
# (archiver.format.ties): the latest line per (key_sha256, micros) counts.
KINESIS_TIE: Schema = {
    "table_id": (STR, True, "a string"),
    "key_sha256": (STR, True, "a string"),
    "micros": (_digits, True, "a decimal string"),
    "event_ids": (_list_of(STR), True, "a list of event ids"),
    "sequence_numbers": (_list_of(_digits), True, "a list of decimal strings"),
    "decided": (BOOL, True, "true or false"),
    "detected_at": (ISO, True, "an ISO UTC time"),
}

# What the Kinesis capture knows of a table's streaming destination (archiver.capture).
KINESIS_STATE: Schema = {
    "stream_arn": (STR, True, "a string"),
    "precision": (OPT_STR, False, "a string or null"),
    "status": (OPT_STR, False, "a string or null"),
    "status_seen_at": (OPT_ISO, False, "an ISO UTC time or null"),
    "active_seen_at": (OPT_ISO, False, "an ISO UTC time or null"),
    "inactive_since": (OPT_ISO, False, "an ISO UTC time or null"),
}


def _pending_entry(value: Any) -> bool:
    return isinstance(value, dict) and STR(value.get("path")) and ISO(value.get("deletable_after"))


COMPACTION_PENDING: Schema = {
    "pending": (_list_of(_pending_entry), True, "a list of {path, deletable_after, …}"),
}


# What ``ddb-archiver expire`` deleted up to: restores before ``horizon`` are refused.
RETENTION: Schema = {
    "horizon": (ISO, True, "an ISO UTC time"),
    "at": (ISO, False, "an ISO UTC time"),
}

# What the Lambda function says of itself.
LAMBDA_DEPLOYMENT: Schema = {
    "function_name": (OPT_STR, False, "a string or null"),
    "max_iterator_age_seconds": (_nullable(NUMBER), False, "a number or null"),
    # The Kinesis function's data streams and reordering margin (kinesis_handler).
    "kinesis_stream_arns": (_list_of(STR), False, "a list of strings"),
    "kinesis_reorder_seconds": (_nullable(NUMBER), False, "a number or null"),
    "updated_at": (OPT_ISO, False, "an ISO UTC time"),
}

# One line of ``lambda-redrives.jsonl``: what redrive did with one on-failure object.
LAMBDA_REDRIVE: Schema = {
    "object": (STR, True, "a string (the object's URI)"),
    "status": (STR, True, "a string"),
    "files": (_list_of(STR), False, "a list of paths"),
    "at": (ISO, False, "an ISO UTC time"),
}


def _window_file(value: Any) -> bool:
    return isinstance(value, dict) and STR(value.get("path"))


# The commit record of one converted incremental-export window.
INCREMENTAL_WINDOW: Schema = {
    "table_id": (STR, True, "a string"),
    "window_from": (ISO, True, "an ISO UTC time"),
    "window_to": (ISO, True, "an ISO UTC time"),
    "output_view": (STR, False, "a string"),
    "export_arn": (STR, False, "a string"),
    "item_count": (INT, False, "a whole number"),
    "files": (_list_of(_window_file), False, "a list of {path, …}"),
}


def _window(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(ISO(v) for v in value)


# What ``ddb-archiver backfill`` decided to export.
BACKFILL_PLAN: Schema = {
    "table": (STR, True, "a string"),
    "table_id": (STR, True, "a string"),
    "base_at": (ISO, True, "an ISO UTC time"),
    "windows": (_list_of(_window), True, "a list of [from, to] ISO UTC times"),
    "until": (STR, False, "a string"),
}

# How far a restore has durably written its target (``--resume``).
RESTORE_PROGRESS: Schema = {
    "fingerprint": (STR, True, "a string"),
    "target": (STR, True, "a string"),
    "partitions": (INT, True, "a whole number"),
    "done": (_list_of(INT), True, "a list of whole numbers"),
    "state": (STR, False, "a string"),
}

# One line of ``drills.jsonl``: a drill of the archive against AWS's own copy at ``at``.
DRILL: Schema = {
    "drill_id": (STR, True, "a string"),
    "table": (STR, True, "a string"),
    "at": (ISO, True, "an ISO UTC time"),
    "method": (lambda v: v in ("export", "pitr"), True, "export or pitr"),
    "started_at": (ISO, True, "an ISO UTC time"),
    "finished_at": (ISO, True, "an ISO UTC time"),
    "margin_seconds": (NUMBER, True, "a number"),
    "items_compared": (INT, True, "a whole number"),
    "not_comparable": (INT, True, "a whole number"),
    "differences": (INT, True, "a whole number"),
    "missing": (INT, False, "a whole number"),
    "extra": (INT, False, "a whole number"),
    "different": (INT, False, "a whole number"),
    "examples": (_list_of(STR), False, "a list of strings"),
    "fold_seconds": (NUMBER, True, "a number"),
    "native_seconds": (NUMBER, True, "a number"),
    "rpo_seconds": (_nullable(NUMBER), True, "a number or null"),
    "watermark": (OPT_ISO, False, "an ISO UTC time or null"),
    "native_source": (STR, False, "a string"),
}


def _problems(doc: Mapping[str, Any], schema: Schema) -> list[str]:
    out = []
    for name, (check, required, what) in schema.items():
        if name not in doc:
            if required:
                out.append(f"field {name!r} is missing")
            continue
        if not check(doc[name]):
            out.append(f"field {name!r} must be {what}, not {_short(doc[name])}")
    return out


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def validate(uri: str, doc: Any, schema: Schema, what: str) -> dict[str, Any]:
    """``doc`` if it has the shape of ``schema``.

    Raises:
        StateFileError: it does not.
    """
    if not isinstance(doc, dict):
        raise StateFileError(uri, f"not a valid {what}: expected a JSON object, found "
                             f"{type(doc).__name__ if doc is not None else 'null'} "
                             f"{_short(doc)}")  # fmt: skip
    problems = _problems(doc, schema)
    if problems:
        raise StateFileError(uri, f"not a valid {what}: {'; '.join(problems[:3])}")
    return doc


def _parse(uri: str, data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        state = "empty" if not data.strip() else "truncated or not JSON"
        raise StateFileError(uri, f"{what} is {state} ({exc})") from exc


def read_json(
    archive: Archive, rel: str, schema: Schema, what: str, *, missing_ok: bool = False
) -> dict[str, Any] | None:
    """Read and validate one JSON state file; ``None`` when absent and ``missing_ok``.

    Raises:
        StateFileError: it does not parse or has the wrong shape.
        FileNotFoundError: absent, without ``missing_ok``.
    """
    try:
        data = archive.get_bytes(rel)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise
    uri = archive.uri(rel)
    return validate(uri, _parse(uri, data, what), schema, what)


def read_jsonl(archive: Archive, rel: str, schema: Schema, what: str) -> list[dict[str, Any]]:
    """Read and validate a JSON Lines state file (every line); empty when absent.

    Raises:
        StateFileError: a line does not parse or has the wrong shape (its number is named).
    """
    try:
        data = archive.get_bytes(rel)
    except FileNotFoundError:
        return []
    uri = archive.uri(rel)
    out = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        doc = _parse(f"{uri} line {number}", line, what)
        out.append(validate(f"{uri} line {number}", doc, schema, what))
    return out


def read_lambda_deployment(archive: Archive, table: str) -> dict[str, Any]:
    """``_state/<table>/lambda.json`` (:data:`LAMBDA_DEPLOYMENT`); ``{}`` when absent.

    Raises:
        StateFileError: it does not parse or has the wrong shape.
    """
    rel = layout.lambda_deployment(table)
    return read_json(archive, rel, LAMBDA_DEPLOYMENT, "lambda.json", missing_ok=True) or {}
