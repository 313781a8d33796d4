"""The keys ``forget`` erases, as a user gives them: ``--key`` DynamoDB JSON, a keys file
(one per line, ``-`` for standard input), checked against the table's key attributes and put
in canonical form (the form every archived row's ``keys`` column holds). ``--where`` finds keys
by a predicate instead (:mod:`archiver.erasure.where`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson

from archiver.aws.error_table import UsageError
from archiver.format.codec import CodecError, canonical_json, key_of, normalize_item


def parse_key(text: str, names: Sequence[str] | None, where: str = "--key") -> str:
    """A key given as DynamoDB JSON (as the AWS CLI's ``--key``), in canonical form.

    Raises:
        UsageError: not DynamoDB JSON, or not exactly the table's key attributes.
    """
    try:
        item = normalize_item(orjson.loads(text))
    except (orjson.JSONDecodeError, CodecError, TypeError, AttributeError) as exc:
        raise UsageError(f"{where}: not a DynamoDB JSON key ({exc})") from exc
    if names is not None:
        if sorted(item) != sorted(names):
            raise UsageError(
                f"{where}: the key must have exactly the table's key attributes "
                f"{', '.join(names)} (found {', '.join(sorted(item)) or 'none'})"
            )
        item = key_of(item, list(names))
    return canonical_json(item)


def read_keys_file(path: str, names: Sequence[str] | None) -> list[str]:
    """One DynamoDB JSON key per line ('-': standard input); blank lines skipped."""
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--keys-file {path}: {exc.strerror}") from exc
    with stream:
        return [
            parse_key(line, names, f"--keys-file {path} line {number}")
            for number, line in enumerate(stream, 1)
            if line.strip()
        ]
