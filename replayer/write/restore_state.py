"""Which restore made a target table, and how far it has durably written it.

A restore tags its target at creation (``CreateTable`` ``Tags``) with a restore id and the
fingerprint of its plan (source generation, T, strategy, base, log start). The tags make three
things safe:

* a lost ``CreateTable`` reply: botocore (or our retry) repeats the call, DynamoDB answers
  ``ResourceInUseException``, and a table carrying *our* restore id is ours — creation
  succeeded;
* ``--resume``: a target carrying this plan's fingerprint is continued; one carrying another
  plan's, or none at all, is never written (exit 4, saying which);
* a rerun without ``--resume`` that meets its own partial target says so and prints the
  command that continues it.

Progress lives in ``_state/<source>/restores/<restore-id>.json``
(:func:`archiver.format.layout.restore_progress`): the number of partitions and, per
partition, how many leading chunks of 25 items are acknowledged by DynamoDB (``done``) and
which later chunks are acknowledged already (``ahead``: chunks are written concurrently and
finish out of order). It is written before the table is created, then whenever chunks were
acknowledged since it was last written, at most every :data:`SAVE_EVERY_SECONDS` (0.2 s), and
it only ever counts chunks DynamoDB acknowledged. A resume skips every chunk the file counts,
so what it writes again is what the stopped restore had in flight (at most one call of 25
items per concurrent call of each writer) plus what was acknowledged in the last 0.2 s before
it stopped — harmless, since every write is a put of the item's final state. After a verified
restore the tags are removed and the file says ``complete``.

The measured rates of earlier restores (``_state/<source>/restore-stats.json``) are read here,
once, for every strategy: :func:`read_restore_stats` before anything is created, so that a
broken file stops the restore naming it (exit 2) rather than being rewritten at its end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archiver.aws.describe import describe_or_none
from archiver.aws.retry import call
from archiver.format import layout, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.planning.key_selection import KeySelection
from replayer.planning.model import Plan

log = logging.getLogger(__name__)

TAG_RESTORE_ID = "ddb-stream-archive:restore-id"
TAG_PLAN = "ddb-stream-archive:restore-plan"
CHUNK_ITEMS = 25  # one BatchWriteItem call
# Progress is saved at most this often. A save is a file write (~5 ms and 0.7 ms of CPU on a
# local disk, with its fsync) or an S3 PUT (tens of ms, and billed): saving after every batch
# of acknowledgements meant ~200 saves a second at 20,000 items/s (14 % of a core in the
# parent). Five a second cost nothing measurable, and a resume then rewrites at most the last
# 0.2 s of acknowledged writes besides those in flight.
SAVE_EVERY_SECONDS = 0.2


def read_restore_stats(archive: Archive, table: str) -> dict[str, Any]:
    """``restore-stats.json`` of ``table`` (empty when no restore was measured yet).

    Raises:
        StateFileError: it does not parse or has the wrong shape (it is left as it is).
    """
    return (
        statefiles.read_json(
            archive,
            layout.restore_stats(table),
            statefiles.RESTORE_STATS,
            "restore-stats.json",
            missing_ok=True,
        )
        or {}
    )


def update_restore_stats(
    archive: Archive, table: str, update: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> None:
    """Rewrite ``restore-stats.json`` as ``update(current)`` says (``None``: leave it), best
    effort: a finished restore still succeeds when the archive is read-only. A file that
    cannot be read is never overwritten (a warning says so)."""
    rel = layout.restore_stats(table)
    try:
        current = read_restore_stats(archive, table)
    except Exception as exc:
        log.warning("not recording this restore's figures in %s: %s", archive.uri(rel), exc)
        return
    stats = update(dict(current))
    if stats is None or stats == current:
        return
    try:
        archive.write_json(rel, stats)
    except Exception as exc:
        log.warning("could not record this restore's figures in %s: %s", archive.uri(rel), exc)


def plan_fingerprint(plan: Plan, strategy: str = "replay", keys: KeySelection | None = None) -> str:
    """A short digest naming what a restore writes: same fingerprint, same target content
    (``keys``: only these items are written)."""
    doc = {
        "source": plan.table,
        "table_id": plan.table_id,
        "at": iso_ms(plan.at),
        "strategy": strategy,
        "base": plan.base.snapshot_id if plan.base else None,
        "log_from": iso_ms(plan.log_from),
    }
    if keys is not None:
        doc["keys"] = keys.digest
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def new_restore_id() -> str:
    return f"{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def restore_tags(restore_id: str, fingerprint: str) -> list[dict[str, str]]:
    """The ``Tags`` a restore creates its target with."""
    return [
        {"Key": TAG_RESTORE_ID, "Value": restore_id},
        {"Key": TAG_PLAN, "Value": fingerprint},
    ]


@dataclass(frozen=True)
class ExistingTarget:
    """A target table found to exist, with its restore tags (empty strings when absent)."""

    name: str
    arn: str
    restore_id: str
    fingerprint: str

    @property
    def tagged(self) -> bool:
        return bool(self.restore_id)


def existing_target(client: Any, name: str) -> ExistingTarget | None:
    """The table ``name`` and its restore tags, or None when it does not exist."""
    table = describe_or_none(client, name)
    if table is None:
        return None
    arn = str(table.get("TableArn") or "")
    tags: dict[str, str] = {}
    if arn:
        response = call(
            lambda: client.list_tags_of_resource(ResourceArn=arn), f"ListTagsOfResource {name}"
        )
        tags = {t["Key"]: t["Value"] for t in response.get("Tags") or []}
    return ExistingTarget(name, arn, tags.get(TAG_RESTORE_ID, ""), tags.get(TAG_PLAN, ""))


def clear_tags(client: Any, target: ExistingTarget | None) -> None:
    """Remove the restore tags after a verified restore (the table is an ordinary one now)."""
    if target is None or not target.arn:
        return
    call(
        lambda: client.untag_resource(ResourceArn=target.arn, TagKeys=[TAG_RESTORE_ID, TAG_PLAN]),
        f"UntagResource {target.name}",
    )


@dataclass
class RestoreProgress:
    """Per partition, the count of leading chunks acknowledged (the durable prefix) and the
    chunks acknowledged beyond it.

    ``acknowledged(partition, chunk)`` may arrive in any order (chunks are written
    concurrently); the prefix advances over contiguous acknowledged chunks and the others wait
    in ``ahead``. :meth:`save` writes the file when something was acknowledged since the last
    save (or when forced), at most every ``save_every`` seconds.
    """

    archive: Archive
    source: str
    restore_id: str
    fingerprint: str
    target: str
    partitions: int
    done: list[int] = field(default_factory=list)
    state: str = "writing"
    save_every: float = SAVE_EVERY_SECONDS
    ahead: list[set[int]] = field(default_factory=list)
    _saved_at: float = 0.0
    _changed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.done:
            self.done = [0] * self.partitions
        if not self.ahead:
            self.ahead = [set() for _ in range(self.partitions)]

    @property
    def path(self) -> str:
        return layout.restore_progress(self.source, self.restore_id)

    @classmethod
    def load(
        cls, archive: Archive, source: str, restore_id: str, fingerprint: str, target: str
    ) -> RestoreProgress | None:
        """The saved progress of ``restore_id``; None when there is none. A file of another
        plan or target is an error naming it (never a reason to overwrite it)."""
        rel = layout.restore_progress(source, restore_id)
        doc = statefiles.read_json(
            archive, rel, statefiles.RESTORE_PROGRESS, "restore progress", missing_ok=True
        )
        if doc is None:
            return None
        if doc.get("fingerprint") != fingerprint or doc.get("target") != target:
            raise ValueError(f"{archive.uri(rel)} records another plan or target")
        return cls(
            archive,
            source,
            restore_id,
            fingerprint,
            target,
            int(doc["partitions"]),
            done=[int(n) for n in doc["done"]],
            state=str(doc.get("state", "writing")),
            ahead=[{int(c) for c in chunks} for chunks in doc.get("ahead") or []],
        )

    def acknowledged(self, partition: int, chunk: int) -> None:
        with self._lock:
            ahead = self.ahead[partition]
            ahead.add(chunk)
            while self.done[partition] in ahead:
                ahead.discard(self.done[partition])
                self.done[partition] += 1
            self._changed = True

    def written_items(self, partition: int, rows: int) -> int:
        """Items of a partition of ``rows`` rows that the acknowledged chunks hold."""
        with self._lock:
            prefix = min(rows, self.done[partition] * CHUNK_ITEMS)
            ahead = sorted(self.ahead[partition])
        # Chunks beyond the prefix are full but for a partition's last one.
        return prefix + sum(max(0, min(CHUNK_ITEMS, rows - c * CHUNK_ITEMS)) for c in ahead)

    def document(self) -> dict[str, Any]:
        with self._lock:
            done = list(self.done)
            ahead = [sorted(chunks) for chunks in self.ahead]
            self._changed = False
        return {
            "restore_id": self.restore_id,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "target": self.target,
            "partitions": self.partitions,
            "chunk_items": CHUNK_ITEMS,
            "done": done,
            "ahead": ahead,
            "state": self.state,
            "updated_at": iso_ms(utcnow()),
        }

    def save(self, *, force: bool = False) -> None:
        """Write the file when a chunk was acknowledged since the last save (or ``force``)."""
        now = time.monotonic()
        if not force and (not self._changed or now - self._saved_at < self.save_every):
            return
        self._saved_at = now
        self.archive.write_json(self.path, self.document())

    def complete(self) -> None:
        self.state = "complete"
        self.save(force=True)


def resume_command(
    source: str, target: str, archive_url: str, at: str, extra: Mapping[str, str] | None = None
) -> str:
    """The command that continues a partial restore."""
    parts = [
        "ddb-replayer restore",
        f"--source-table-name {source}",
        f"--target-table-name {target}",
        f"--archive {archive_url}",
        f"--restore-date-time {at}",
        "--strategy replay",
    ]
    parts.extend(f"{flag} {value}".strip() for flag, value in (extra or {}).items())
    parts.append("--resume")
    return " ".join(parts)
