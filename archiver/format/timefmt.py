"""Times as users type them and as the archive stores them.

Users give ISO 8601 with a zone (``2026-01-31T12:00:00Z``) or epoch seconds with an optional
fraction (``1534285294.754``), as the AWS CLI takes them. State files use ISO 8601 UTC with
milliseconds and ``Z``; file and snapshot names use the path-safe ``YYYYMMDDTHHMMSSmmmZ`` stamp.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from archiver.format.errors import UsageError

_EPOCH = re.compile(r"^\d+(\.\d+)?$")
_STAMP = re.compile(r"^(\d{8}T\d{6})(\d{3})Z$")


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant with a UTC zone; naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def from_epoch(seconds: float | int | str | Decimal) -> datetime:
    """Epoch seconds (fractions allowed) to a UTC datetime, exact to the microsecond."""
    whole = Decimal(str(seconds))
    micros = int((whole * 1_000_000).to_integral_value())
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def parse_time(text: str) -> datetime:
    """Parse a user-supplied time; a malformed one raises ``UsageError`` naming accepted forms."""
    value = text.strip()
    if _EPOCH.match(value):
        try:
            return from_epoch(value)
        except (InvalidOperation, OverflowError) as exc:
            raise UsageError(f"malformed time {text!r}") from exc
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise UsageError(
            f"malformed time {text!r}: use ISO 8601 with a zone (2026-01-31T12:00:00Z) "
            "or epoch seconds (1769860800.5)"
        ) from exc
    if parsed.tzinfo is None:
        raise UsageError(f"time {text!r} has no zone: add Z or an offset (2026-01-31T12:00:00Z)")
    return parsed.astimezone(UTC)


def iso_ms(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, the form of every time in state files."""
    utc = as_utc(value)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Read back a time written by :func:`iso_ms` (or any ISO 8601 time with a zone)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def stamp(value: datetime) -> str:
    """The path-safe UTC stamp ``YYYYMMDDTHHMMSSmmmZ`` used in file and snapshot names."""
    utc = as_utc(value)
    return utc.strftime("%Y%m%dT%H%M%S") + f"{utc.microsecond // 1000:03d}Z"


def parse_stamp(text: str) -> datetime:
    """Read back a :func:`stamp`."""
    match = _STAMP.match(text)
    if not match:
        raise ValueError(f"not a UTC stamp: {text!r}")
    base = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return base + timedelta(milliseconds=int(match.group(2)))
