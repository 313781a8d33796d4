"""The erasure log and its keyed hashes: what ``ddb-archiver forget`` did, without the keys.

``_state/<table>/erasures.jsonl`` has one JSON line per finished erasure::

    {"erasure_id", "at", "reason", "selector", "key_hashes": ["<hex HMAC-SHA256>", …],
     "objects_rewritten", "rows_removed", "objects": [<path>, …],
     "noncurrent_versions_purged", "noncurrent_versions_left"}

A key is never written anywhere by an erasure: the log (and the pending list of an erasure in
progress) holds ``HMAC-SHA256(secret, canonical key JSON)``. The secret is the archive's own,
32 random bytes in ``_state/@archive/erasure-secret.json``, created on first use. With it a
key can be *tested* (was ``{"pk":{"S":"a"}}`` erased? hash it and look), and a re-run can
finish an interrupted erasure by hashing each row's key; without it the hashes say nothing
about the keys (a plain hash of a guessable key would). Whoever can read ``_state/`` can test
keys: grant it like the archive itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from archiver.format import layout, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow

SECRET_BYTES = 32

_SECRET: statefiles.Schema = {
    "secret": (statefiles.STR, True, "base64 text"),
    "created_at": (statefiles.ISO, False, "an ISO UTC time"),
}

ERASURE: statefiles.Schema = {
    "erasure_id": (statefiles.STR, True, "a string"),
    "at": (statefiles.ISO, True, "an ISO UTC time"),
    "key_hashes": (statefiles._list_of(statefiles.STR), True, "a list of hex strings"),
    "objects_rewritten": (statefiles.INT, True, "a whole number"),
    "rows_removed": (statefiles.INT, True, "a whole number"),
}


def load_secret(archive: Archive, *, create: bool = True) -> bytes | None:
    """The archive's HMAC key; created (and written before any use) when absent and ``create``.

    Raises:
        StateFileError: the secret file does not parse (it is never replaced: hashes made
            with it would no longer match).
    """
    rel = layout.erasure_secret()
    doc = statefiles.read_json(archive, rel, _SECRET, "erasure secret", missing_ok=True)
    if doc is None:
        if not create:
            return None
        secret = secrets.token_bytes(SECRET_BYTES)
        save_secret(archive, secret)
        return secret
    try:
        return base64.b64decode(str(doc["secret"]), validate=True)
    except ValueError as exc:
        raise statefiles.StateFileError(archive.uri(rel), f"secret is not base64 ({exc})") from exc


def save_secret(archive: Archive, secret: bytes) -> None:
    """Write a new archive secret (only where there is none: hashes depend on it)."""
    doc = {"secret": base64.b64encode(secret).decode("ascii"), "created_at": iso_ms(utcnow())}
    archive.write_json(layout.erasure_secret(), doc)


def key_hash(secret: bytes, canonical_key: str) -> str:
    """The keyed hash (hex HMAC-SHA256) of one canonical key."""
    return hmac.new(secret, canonical_key.encode("utf-8"), hashlib.sha256).hexdigest()


def key_hashes(secret: bytes, keys: Iterable[str]) -> list[str]:
    return sorted({key_hash(secret, key) for key in keys})


def read_log(archive: Archive, table: str) -> list[dict[str, Any]]:
    """Every finished erasure of ``table``, oldest first."""
    return statefiles.read_jsonl(archive, layout.erasures(table), ERASURE, "erasure record")


def append_log(archive: Archive, table: str, entry: dict[str, Any]) -> None:
    """Record a finished erasure (once: an entry with the same id already there is kept)."""
    if any(e["erasure_id"] == entry["erasure_id"] for e in read_log(archive, table)):
        return
    archive.append_jsonl(layout.erasures(table), entry)


def erased(archive: Archive, table: str, canonical_key: str) -> list[dict[str, Any]]:
    """The erasures that removed ``canonical_key`` (tested through the archive's secret)."""
    secret = load_secret(archive, create=False)
    if secret is None:
        return []
    wanted = key_hash(secret, canonical_key)
    return [e for e in read_log(archive, table) if wanted in e["key_hashes"]]


_PENDING_KEYS: statefiles.Schema = {
    "key_hashes": (statefiles._list_of(statefiles.STR), True, "a list of hex strings"),
}


def erased_key_test(archive: Archive, table: str) -> Callable[[str], bool] | None:
    """A test "was this canonical key erased?" over every finished erasure of ``table`` and the
    one in progress (``forget-pending.json``); ``None`` when nothing was ever erased.

    An erased key's history before its erasure is gone by design, so its first archived record
    may be a MODIFY or REMOVE archived afterwards: checks that read "every key starts with an
    INSERT" exempt such keys.
    """
    secret = load_secret(archive, create=False)
    if secret is None:
        return None
    hashes = {h for entry in read_log(archive, table) for h in entry["key_hashes"]}
    pending = statefiles.read_json(
        archive, layout.forget_pending(table), _PENDING_KEYS, "forget-pending.json",
        missing_ok=True,
    )  # fmt: skip
    hashes.update((pending or {}).get("key_hashes", []))
    if not hashes:
        return None
    return lambda canonical_key: key_hash(secret, canonical_key) in hashes
