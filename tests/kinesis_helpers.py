"""Helpers for Kinesis capture tests: a table's history as change documents, the capture run
in-process with its doubles, and the state at any instant from the archive and from the model.

A :class:`History` is a list of changes per key in their true order, each with its creation
time in microseconds; it gives every change's document (images included, as the Kinesis
destination writes them) and the table's state at any millisecond — the model restores are
compared with.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.retry import RetryPolicy
from archiver.capture import kinesis_run
from archiver.capture.change_writer import FlushPolicy
from archiver.capture.kinesis_run import KinesisOptions
from archiver.capture.runner import RunConfig
from archiver.format import coverage
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import parse_iso
from replayer.engines.fold import Fold
from replayer.planning.plan import plan_restore
from tests.kinesis_double import DestinationDouble, change_doc
from tests.replay_helpers import write_snapshot

# Backoff in milliseconds: injected throttling costs a test no time.
FAST_RETRY = RetryPolicy(base_seconds=0.005, cap_seconds=0.05, max_attempts=30)


def micros_of(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


@dataclass
class Step:
    """One change of one key: ``new`` None for a REMOVE."""

    pk: str
    micros: int
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    event_id: str
    doc: dict[str, Any] = field(default_factory=dict)


class History:
    """A table's changes in their true order (see the module)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.steps: list[Step] = []
        self._state: dict[str, dict[str, Any] | None] = {}
        self.initial: dict[str, dict[str, Any]] = {}  # in the base snapshot
        self._ids = itertools.count()

    def write(
        self, pk: str, micros: int, value: str | None, *, precision: str = "MICROSECOND"
    ) -> Step | None:
        """Put ``value`` as item ``pk`` (None: delete it) at ``micros``; ``None`` when that
        changes nothing (deleting an absent item: DynamoDB writes no record)."""
        old = self._state.get(pk)
        new = None if value is None else {"pk": {"S": pk}, "v": {"S": value}}
        if old is None and new is None:
            return None
        step = Step(pk, micros, new, old, f"evt-{next(self._ids):05d}")
        step.doc = change_doc(
            self.table,
            {"pk": {"S": pk}},
            micros=micros,
            new=new,
            old=old,
            event_id=step.event_id,
            precision=precision,
        )
        self.steps.append(step)
        self._state[pk] = new
        return step

    def seed(self, pk: str, value: str) -> dict[str, Any]:
        """Item ``pk`` exists before the history (in the base snapshot); returns it."""
        item = {"pk": {"S": pk}, "v": {"S": value}}
        self.initial[pk] = self._state[pk] = item
        return item

    def state_at(self, ms: int) -> dict[str, str]:
        """Canonical keys → canonical item, for every change whose time in ms is ≤ ``ms``."""
        state: dict[str, dict[str, Any] | None] = dict(self.initial)
        for step in self.steps:
            if step.micros // 1000 <= ms:
                state[step.pk] = step.new
        return {
            canonical_json({"pk": {"S": pk}}): canonical_json(item)
            for pk, item in state.items()
            if item is not None
        }

    def instants(self, most: int = 6) -> list[int]:
        """Milliseconds a change happens in, or the one after (at most ``most``, spread over
        the history; the last change's always)."""
        ms = sorted({s.micros // 1000 for s in self.steps})
        every = sorted(set(ms) | {m + 1 for m in ms})
        step = max(1, len(every) // most)
        return sorted(set(every[::step]) | {every[-1]})


def seed_coverage(
    archive: Archive, table: str, description: Mapping[str, Any]
) -> tuple[str, datetime]:
    """Start the table's Kinesis coverage at its creation, with an empty base snapshot there
    (as if the capture had run since): returns (table_id, creation time)."""
    table_id = table_id_of(description)
    created = description["CreationDateTime"]
    created = created.astimezone(UTC) if isinstance(created, datetime) else parse_iso(str(created))
    coverage.open_generation(
        archive,
        table,
        table_arn=str(description["TableArn"]),
        table_id=table_id,
        table_created_at=created,
        covered_from=created,
        from_table_creation=False,
        mode="kinesis",
    )
    write_snapshot(
        archive, [], valid_from=created, log_from=created, table=table, table_id=table_id
    )
    return table_id, created


def capture_async(
    archive: Archive,
    table: str,
    stream_arn: str,
    destinations: DestinationDouble,
    *,
    kinesis_client: Any = None,
    margin: float = 0.2,
    flush_records: int = 50_000,
    accept_millisecond_order: bool = False,
    once: bool = True,
    stop: asyncio.Event | None = None,
) -> Coroutine[Any, Any, int]:
    """``run --kinesis-stream-arn`` in-process (``--once`` by default), with short intervals."""
    config = RunConfig(
        table_name=table,
        archive_url=archive.url,
        once=once,
        flush=FlushPolicy(records=flush_records),
        poll_seconds=0.02,
        progress_seconds=60,
        discover_seconds=0.2,
        persist_seconds=0.2,
        retry=FAST_RETRY,
    )
    options = KinesisOptions(
        stream_arn=stream_arn,
        accept_millisecond_order=accept_millisecond_order,
        reorder=timedelta(seconds=margin),
        describe_seconds=0.2,
    )
    return kinesis_run.execute(
        config,
        AwsSettings(),
        archive,
        options,
        stop=stop,
        kinesis_client=kinesis_client,
        destinations=destinations,
    )


def capture(
    archive: Archive, table: str, stream_arn: str, destinations: DestinationDouble, **kwargs: Any
) -> int:
    """:func:`capture_async`, run to its end."""
    return asyncio.run(capture_async(archive, table, stream_arn, destinations, **kwargs))


def restored(archive: Archive, table: str, ms: int, **kwargs: Any) -> dict[str, str]:
    """The archive's state of ``table`` at millisecond ``ms`` (plan + DuckDB fold)."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    plan = plan_restore(archive, table, at, convert=False, **kwargs)
    with Fold(archive) as fold:
        result = fold.state_at(plan)
        return {
            str(k): str(v)
            for batch in result.batches()
            for k, v in zip(
                batch.column("keys").to_pylist(), batch.column("item").to_pylist(), strict=True
            )
        }


def shuffled_with_duplicates(steps: Sequence[Step], seed: int) -> Iterator[Step]:
    """Every step at least once, some twice, in a scrambled order (deterministic)."""
    import random

    rng = random.Random(seed)
    out = list(steps) + [s for s in steps if rng.random() < 0.3]
    rng.shuffle(out)
    yield from out
