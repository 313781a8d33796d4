"""GetRecords pages parsed by orjson, not by botocore's response parser.

botocore turns every record of a ``GetRecords`` page into Python through the service model:
each attribute value is walked, binary is base64-decoded into ``bytes`` (which the codec then
encodes again), each ``ApproximateCreationDateTime`` becomes a ``datetime``. That was 63 % of
the poller's time. The body is JSON whose records are exactly what the codec canonicalises —
the same plain-JSON shape the Lambda handler gets (binary as base64 text, times as epoch
seconds) — so :func:`install` registers a ``before-parse`` hook on the client that reads a
*successful* ``GetRecords`` body with orjson and hands botocore an empty body in its place:
botocore still signs, sends, retries connection errors, checks checksums and adds
``ResponseMetadata``; it no longer converts the records. It is the mirror image of the restore
writers, which hand botocore ``BatchWriteItem`` bodies built from stored text
(:mod:`replayer.write.batch_writers`).

Only a 2xx body that parses as a JSON object whose records each carry a numeric
``ApproximateCreationDateTime`` takes this path; anything else — every error response
(throttling, an expired iterator, trimmed data: they must reach the one error table exactly as
botocore raises them), a body orjson rejects, a time botocore would have to interpret — is left
untouched for botocore's own parser. What the records carry comes out the same either way
(``tests/test_raw_records.py`` holds both paths to byte-identical change rows).

A page of 1,000 records is some 90,000 dicts and lists, alive until the page is archived: at
the collector's default threshold (700 allocations) that is over a hundred collections a page,
and as the page's objects are promoted, a full collection of the whole heap every page or so —
which cost more than parsing itself. :func:`collect_less` raises the threshold for a process
that reads pages (the poller and its workers); the records are plain JSON, free of cycles,
and refcounting frees them as soon as they are archived.

Kinesis Data Streams' ``GetRecords`` (:func:`install_kinesis`, the Kinesis capture's client)
takes the same path: botocore would walk every record, base64-decode its ``Data`` into
``bytes`` and turn ``ApproximateArrivalTimestamp`` into a ``datetime`` — 22 µs a record on a
page of 1,000 change documents, against 10 µs read by orjson with each ``Data`` left as base64
text, which :class:`archiver.capture.kinesis.Intake` decodes as botocore would. A body whose
records do not each carry ``Data`` as text and a numeric ``ApproximateArrivalTimestamp`` goes
to botocore, and so does every error response.

``ARCHIVER_GETRECORDS_PARSER=botocore`` in the environment leaves botocore's parser in charge
(the benchmark's baseline, ``bench/bench_poller.py``).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

PARSER_ENV = "ARCHIVER_GETRECORDS_PARSER"
_EVENT = "before-parse.dynamodb-streams.GetRecords"
_UNIQUE_ID = "archiver-capture-raw-get-records"
_KINESIS_EVENT = "before-parse.kinesis.GetRecords"
_KINESIS_UNIQUE_ID = "archiver-capture-raw-kinesis-get-records"
# Allocations between young collections: a few pages' worth rather than a hundredth of one.
_YOUNG_THRESHOLD = 50_000
# What GetRecordsOutput holds; anything else in a body botocore would ignore too.
_MEMBERS = ("Records", "NextShardIterator")
# What Kinesis' GetRecordsOutput holds.
_KINESIS_MEMBERS = ("Records", "NextShardIterator", "MillisBehindLatest", "ChildShards")


def install(client: Any) -> bool:
    """Parse the client's successful ``GetRecords`` pages with orjson (see the module doc).

    Returns whether the hook is in place: ``False`` for a client without botocore's event
    system (a test double, which returns records as botocore would) or when the environment
    asks for botocore's parser. Installing twice on one client is harmless.
    """
    return _install(client, _EVENT, parse_page, _UNIQUE_ID)


def install_kinesis(client: Any) -> bool:
    """Parse a Kinesis client's successful ``GetRecords`` pages with orjson: each record's
    ``Data`` stays base64 text, ``ApproximateArrivalTimestamp`` epoch seconds (see the module
    doc). Returns whether the hook is in place, as :func:`install`."""
    return _install(client, _KINESIS_EVENT, parse_kinesis_page, _KINESIS_UNIQUE_ID)


def _install(client: Any, event: str, hook: Callable[..., None], unique_id: str) -> bool:
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None or os.environ.get(PARSER_ENV, "").strip().lower() == "botocore":
        return False
    events.register(event, hook, unique_id=unique_id)
    return True


def _before_parse(
    read: Callable[[Any], dict[str, Any] | None],
) -> Callable[..., None]:
    """A ``before-parse`` hook: a successful body that ``read`` vouches for goes, as its
    members, into ``customized_response_dict`` (botocore merges it into the parsed response)
    and the body botocore parses becomes ``{}``."""

    def hook(
        response_dict: MutableMapping[str, Any],
        customized_response_dict: MutableMapping[str, Any],
        **_: Any,
    ) -> None:
        if response_dict.get("status_code", 500) >= 300:
            return
        page = read(response_dict.get("body"))
        if page is None:
            return
        customized_response_dict.update(page)
        response_dict["body"] = b"{}"

    return hook


def kinesis_records_page(body: Any) -> dict[str, Any] | None:
    """A Kinesis ``GetRecords`` body's members as plain JSON (``Data`` base64 text), or
    ``None`` when botocore should parse it (not a JSON object, or a record without ``Data``
    as text or with an arrival time that is not epoch seconds)."""
    parsed = _object(body)
    if parsed is None:
        return None
    records = parsed.get("Records")
    if records is not None:
        if type(records) is not list:
            return None
        for record in records:
            if (
                type(record) is not dict
                or type(record.get("Data")) is not str
                or type(record.get("ApproximateArrivalTimestamp")) not in (int, float)
            ):
                return None
    return {name: parsed[name] for name in _KINESIS_MEMBERS if parsed.get(name) is not None}


def _object(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, bytes | bytearray | memoryview | str):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def records_page(body: Any) -> dict[str, Any] | None:
    """A ``GetRecords`` body's members as plain JSON, or ``None`` when botocore should parse
    it (not an object, not JSON, a record whose time is not epoch seconds)."""
    if not isinstance(body, bytes | bytearray | memoryview | str):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    records = parsed.get("Records")
    if records is not None:
        if not isinstance(records, list):
            return None
        for record in records:
            # botocore reads a time given as text (ISO 8601, epoch in a string) too: leave such
            # a page to it rather than interpret the text differently. A record without the
            # part stays as it is: both paths name it as a poison record.
            ddb = record.get("dynamodb") if isinstance(record, dict) else None
            when = ddb.get("ApproximateCreationDateTime") if isinstance(ddb, dict) else None
            if isinstance(when, str | bool):
                return None
    # botocore leaves out members that are null; so does this.
    return {name: parsed[name] for name in _MEMBERS if parsed.get(name) is not None}


def collect_less() -> None:
    """Collect cyclic garbage less often in a process that reads pages (see the module doc)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, max(middle, 20), max(old, 20))


# The hooks (module-level names: tests and the registrations refer to them).
parse_page = _before_parse(records_page)
parse_kinesis_page = _before_parse(kinesis_records_page)
