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
partition, how many leading chunks of 25 items are acknowledged by DynamoDB. It is written
before the table is created and then only after the chunks it counts were acknowledged, so
a resume rewrites at most what was in flight — harmless, since every write is a put of the
item's final state. After a verified restore the tags are removed and the file says
``complete``.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.aws.describe import describe_or_none
from archiver.aws.retry import call
from archiver.format import layout, statefiles
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.planning.model import Plan

log = logging.getLogger(__name__)

TAG_RESTORE_ID = "ddb-stream-archive:restore-id"
TAG_PLAN = "ddb-stream-archive:restore-plan"
CHUNK_ITEMS = 25  # one BatchWriteItem call


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


def plan_fingerprint(plan: Plan, strategy: str = "replay") -> str:
    """A short digest naming what a restore writes: same fingerprint, same target content."""
    doc = {
        "source": plan.table,
        "table_id": plan.table_id,
        "at": iso_ms(plan.at),
        "strategy": strategy,
        "base": plan.base.snapshot_id if plan.base else None,
        "log_from": iso_ms(plan.log_from),
    }
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
    """Per partition, the count of leading chunks acknowledged (the durable prefix).

    ``acknowledged(partition, chunk)`` may arrive in any order (chunks are written
    concurrently); the prefix only advances over contiguous acknowledged chunks, and
    :meth:`save` writes it at most every ``save_every`` seconds (and when asked to force).
    """

    archive: Archive
    source: str
    restore_id: str
    fingerprint: str
    target: str
    partitions: int
    done: list[int] = field(default_factory=list)
    state: str = "writing"
    save_every: float = 2.0
    _ahead: list[set[int]] = field(default_factory=list)
    _saved_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.done:
            self.done = [0] * self.partitions
        self._ahead = [set() for _ in range(self.partitions)]

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
        )

    def acknowledged(self, partition: int, chunk: int) -> None:
        with self._lock:
            ahead = self._ahead[partition]
            ahead.add(chunk)
            while self.done[partition] in ahead:
                ahead.discard(self.done[partition])
                self.done[partition] += 1

    def document(self) -> dict[str, Any]:
        with self._lock:
            done = list(self.done)
        return {
            "restore_id": self.restore_id,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "target": self.target,
            "partitions": self.partitions,
            "chunk_items": CHUNK_ITEMS,
            "done": done,
            "state": self.state,
            "updated_at": iso_ms(utcnow()),
        }

    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < self.save_every:
            return
        self._saved_at = now
        self.archive.write_json(self.path, self.document())

    def complete(self) -> None:
        self.state = "complete"
        self.save(force=True)

    def skipped(self) -> Sequence[int]:
        return list(self.done)


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
