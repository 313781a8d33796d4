"""``ddb-archiver run --kinesis-stream-arn ARN``: archive a table from its Kinesis data stream.

Instead of the table's DynamoDB stream, read the Kinesis data stream the table streams its
changes to (``EnableKinesisStreamingDestination``): records kept up to 365 days, several
consumers, and possibly several tables in one stream (docs/kinesis.md). One :class:`Session`:

1. describes the table (its ``table_id``; no DynamoDB stream needed) and refuses a table
   generation already archived from its DynamoDB stream: one source per generation (the two
   order records differently, and the fold ranks whole sources, not records);
2. asks ``DescribeKinesisStreamingDestination`` for the destination: refuses (exit 4) one with
   ``MILLISECOND`` precision unless ``--accept-millisecond-order`` (two writes to one item in
   the same millisecond then share a creation time; only their images may order them, and a
   restore that depends on an undecided pair is refused), warns about one not ``ACTIVE``, and
   records a gap when it was seen inactive and is active again (``kinesis.json`` keeps what
   was seen, so the hole is found across restarts too);
3. opens coverage in mode ``kinesis``: on the first start the log is complete from now (the
   destination's enabling time is not in any API, so nothing earlier is claimed — older
   records still in the stream are archived, and serve restores after a base snapshot);
4. reads every shard (:class:`~archiver.capture.kinesis.KinesisConsumer`) into the change-file
   writer (:class:`~archiver.capture.kinesis_writer.KinesisWriter`), keeps only the table's
   records and counts the others, persists checkpoints and the watermark (held back by
   ``--kinesis-reorder-seconds``), polls the destination;
5. records a gap if the stream was deleted under it, and says what it did.

Exit codes as for ``run``: 0; 2 bad input; 4 refused (millisecond precision, another source,
a broken chain); 5 finished but recorded a new gap.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from archiver.aws import describe
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    EXIT_NEW_GAP,
    EXIT_OK,
    EXIT_REFUSED,
    ArchiverError,
    UsageError,
)
from archiver.capture.change_writer import LiveGeneration
from archiver.capture.kinesis import Intake, KinesisConfig, KinesisConsumer
from archiver.capture.kinesis_api import KinesisApi, KinesisClient, KinesisStream, is_gone
from archiver.capture.kinesis_order import Orderer, remember_archived
from archiver.capture.kinesis_writer import KinesisWriter
from archiver.capture.sources import refuse_other_source
from archiver.capture.streams_api import StreamInfo
from archiver.cliutil import positive_float
from archiver.format import coverage, gap_log, layout, statefiles, tables, ties
from archiver.format.changefiles import read_checkpoints
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, parse_iso, utcnow
from archiver.integrity.check import verify_resume

if TYPE_CHECKING:
    from archiver.capture.runner import RunConfig

log = logging.getLogger("archiver.run")

MICROSECOND = "MICROSECOND"
MILLISECOND = "MILLISECOND"
# Statuses in which the table's changes reach the stream (UPDATING: a precision change).
STREAMING = frozenset({"ACTIVE", "UPDATING"})
# A record's creation precedes its arrival in the stream by up to this much (the watermark is
# held back by it). AWS: the age of the oldest record not yet replicated to the stream "should
# be only milliseconds" under normal operation, and grows while the stream throttles DynamoDB's
# writes (CloudWatch AgeOfOldestUnreplicatedRecord; docs/format.md cites the page).
DEFAULT_REORDER_SECONDS = 60.0
DESCRIBE_SECONDS = 300.0


class MillisecondOrder(ArchiverError):
    """The destination stamps records to the millisecond only: refused unless accepted."""

    exit_code = EXIT_REFUSED


class DestinationSource(Protocol):
    """What answers ``DescribeKinesisStreamingDestination`` (the DynamoDB client)."""

    async def describe_kinesis_streaming_destination(self, **kwargs: Any) -> Any: ...


def add_kinesis_arguments(parser: argparse.ArgumentParser) -> None:
    """``run``'s Kinesis flags (docs/kinesis.md)."""
    group = parser.add_argument_group(
        "Kinesis Data Streams (instead of the table's DynamoDB stream; docs/kinesis.md)"
    )
    group.add_argument(
        "--kinesis-stream-arn",
        metavar="ARN",
        help="read the table's changes from this Kinesis data stream (the table's Kinesis "
        "streaming destination); other tables' records in it are counted and skipped",
    )
    group.add_argument(
        "--accept-millisecond-order",
        action="store_true",
        help="archive from a destination whose ApproximateCreationDateTimePrecision is "
        "MILLISECOND: writes to one item within one millisecond are then ordered only by "
        "their images, and a restore that depends on an undecided pair is refused",
    )
    group.add_argument(
        "--kinesis-reorder-seconds",
        type=positive_float,
        default=DEFAULT_REORDER_SECONDS,
        metavar="S",
        help="how long after its creation a record may arrive in the stream: the watermark "
        "is held back by this much (alarm on AgeOfOldestUnreplicatedRecord above it)",
    )


@dataclass(frozen=True)
class KinesisOptions:
    """What ``run``'s Kinesis flags said."""

    stream_arn: str
    accept_millisecond_order: bool = False
    reorder: timedelta = timedelta(seconds=DEFAULT_REORDER_SECONDS)
    describe_seconds: float = DESCRIBE_SECONDS

    @classmethod
    def from_args(cls, args: Any) -> KinesisOptions | None:
        arn = getattr(args, "kinesis_stream_arn", None)
        if not arn:
            if getattr(args, "accept_millisecond_order", False):
                raise UsageError("--accept-millisecond-order needs --kinesis-stream-arn")
            return None
        if not layout.is_kinesis_arn(arn):
            raise UsageError(
                f"--kinesis-stream-arn {arn!r} is not a Kinesis data stream ARN "
                "(arn:aws:kinesis:<region>:<account>:stream/<name>)"
            )
        return cls(
            stream_arn=arn,
            accept_millisecond_order=bool(getattr(args, "accept_millisecond_order", False)),
            reorder=timedelta(
                seconds=getattr(args, "kinesis_reorder_seconds", DEFAULT_REORDER_SECONDS)
            ),
        )


def one_table(names: list[str], tagged: object) -> str:
    """The one table a Kinesis run archives (``--table-name`` once, no ``--tables-tagged``)."""
    if tagged is not None or len(names) != 1:
        raise UsageError("--kinesis-stream-arn archives one table: give --table-name once")
    return names[0]


# -- the destination ------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """The table's Kinesis streaming destination as ``DescribeKinesisStreamingDestination``
    tells it (``status`` None: not among the table's destinations)."""

    stream_arn: str
    status: str | None
    precision: str | None
    description: str = ""
    others: tuple[str, ...] = ()  # the table's other destinations' ARNs

    @property
    def streaming(self) -> bool:
        return self.status in STREAMING


async def describe_destination(source: DestinationSource, table: str, arn: str) -> Destination:
    """The destination ``arn`` of ``table``."""
    answer = await source.describe_kinesis_streaming_destination(TableName=table)
    found: Mapping[str, Any] = {}
    others = []
    for entry in answer.get("KinesisDataStreamDestinations") or []:
        if entry.get("StreamArn") == arn:
            found = entry
        else:
            others.append(str(entry.get("StreamArn")))
    return Destination(
        stream_arn=arn,
        status=found.get("DestinationStatus"),
        precision=found.get("ApproximateCreationDateTimePrecision"),
        description=str(found.get("DestinationStatusDescription") or ""),
        others=tuple(others),
    )


def check_precision(destination: Destination, table: str, accepted: bool) -> None:
    """Refuse a destination that stamps records to the millisecond only, unless accepted.

    Raises:
        MillisecondOrder: exit 4.
    """
    if destination.precision == MICROSECOND or accepted:
        return
    said = (
        "stamps records to the millisecond (ApproximateCreationDateTimePrecision MILLISECOND)"
        if destination.precision == MILLISECOND
        else "does not say its ApproximateCreationDateTimePrecision (taken as MILLISECOND)"
    )
    raise MillisecondOrder(
        f"table {table!r}'s Kinesis destination {destination.stream_arn} {said}: writes to one "
        "item within one millisecond then share a creation time, and only their images can "
        "order them — where they cannot, a restore depending on them is refused. Switch it to "
        f"microseconds (aws dynamodb update-kinesis-streaming-destination --table-name {table} "
        f"--stream-arn {destination.stream_arn} --update-kinesis-streaming-configuration "
        "ApproximateCreationDateTimePrecision=MICROSECOND), or pass --accept-millisecond-order"
    )


def observe_destination(
    archive: Archive, table: str, destination: Destination, now: datetime
) -> tuple[datetime, datetime] | None:
    """Keep what was seen of the destination in ``kinesis.json``; returns the hole to record
    (from the last time it was seen streaming to the first time it is again) when it was
    seen not streaming and now streams again (blocking I/O)."""
    rel = layout.kinesis_state(table)
    state = statefiles.read_json(
        archive, rel, statefiles.KINESIS_STATE, "kinesis.json", missing_ok=True
    ) or {"stream_arn": destination.stream_arn}
    hole = None
    if state.get("stream_arn") != destination.stream_arn:
        # Another stream was the destination: writes since it was last seen streaming there
        # and before this one was enabled may have reached neither.
        last = state.get("active_seen_at")
        state = {"stream_arn": destination.stream_arn, "inactive_since": last or iso_ms(now)}
    if destination.streaming:
        inactive = state.get("inactive_since")
        if inactive:
            start = parse_iso(str(state.get("active_seen_at") or inactive))
            hole = (start, now)
        state.update(inactive_since=None, active_seen_at=iso_ms(now))
    elif not state.get("inactive_since"):
        state["inactive_since"] = iso_ms(now)
    state.update(
        precision=destination.precision,
        status=destination.status,
        status_seen_at=iso_ms(now),
    )
    archive.write_json(rel, state)
    return hole


# -- the run --------------------------------------------------------------------------------


async def execute(
    config: RunConfig,
    settings: AwsSettings,
    archive: Archive,
    options: KinesisOptions,
    *,
    stop: asyncio.Event | None = None,
    kinesis_client: KinesisClient | None = None,
    destinations: DestinationSource | None = None,
) -> int:
    """Archive ``config.table_name`` from the Kinesis data stream until done or ``stop``.

    Args:
        config: what to archive and how (``run``'s flags).
        settings: AWS settings for the clients not given.
        archive: the archive.
        options: the Kinesis flags.
        stop: set it to make a long-running archiver flush and return.
        kinesis_client: any object with aiobotocore's async Kinesis calls; by default one is
            opened from ``settings``.
        destinations: what answers ``DescribeKinesisStreamingDestination``; by default the
            DynamoDB client.
    """
    stop = stop or asyncio.Event()
    async with AsyncExitStack() as stack:
        ddb = await stack.enter_async_context(settings.aio_client("dynamodb"))
        client: KinesisClient = (
            kinesis_client
            if kinesis_client is not None
            else await stack.enter_async_context(settings.aio_client("kinesis", own_retries=True))
        )
        session = Session(
            config,
            settings,
            archive,
            options,
            ddb=ddb,
            kinesis=client,
            destinations=destinations or cast(DestinationSource, ddb),
            stop=stop,
        )
        return await session.run()


class Session:
    """One run over one table from one Kinesis data stream (see the module)."""

    def __init__(
        self,
        config: RunConfig,
        settings: AwsSettings,
        archive: Archive,
        options: KinesisOptions,
        *,
        ddb: Any,
        kinesis: KinesisClient,
        destinations: DestinationSource,
        stop: asyncio.Event,
    ) -> None:
        self.config = config
        self.settings = settings
        self.archive = archive
        self.options = options
        self.ddb = ddb
        self.destinations = destinations
        self.stop = stop
        self.api = KinesisApi(kinesis, config.retry, stop=stop)
        self.writer: KinesisWriter | None = None
        self.consumer: KinesisConsumer | None = None
        self.intake: Intake | None = None
        self.refusal: ArchiverError | None = None

    @property
    def table(self) -> str:
        return self.config.table_name

    async def run(self) -> int:
        table, arn, started = self.table, self.options.stream_arn, utcnow()
        doc = await describe.describe(self.settings, table, client=self.ddb)
        table_id = str(doc["table_id"])
        await asyncio.to_thread(coverage.check_owner, self.archive, table, str(doc["table_arn"]))
        await asyncio.to_thread(refuse_other_source, self.archive, table, table_id, True)
        await asyncio.to_thread(verify_resume, self.archive, table)
        destination = await describe_destination(self.destinations, table, arn)
        if destination.status is None:
            others = (
                f" (it streams to {', '.join(destination.others)})" if destination.others else ""
            )
            raise UsageError(
                f"table {table!r} has no Kinesis streaming destination {arn}{others}: enable "
                f"it with aws dynamodb enable-kinesis-streaming-destination --table-name "
                f"{table} --stream-arn {arn}"
            )
        check_precision(destination, table, self.options.accept_millisecond_order)
        try:
            stream = await self.api.describe(arn)
        except Exception as exc:
            if not is_gone(exc):
                raise
            if await asyncio.to_thread(self._deleted_since_last_run, table_id):
                return EXIT_NEW_GAP
            raise UsageError(f"the Kinesis data stream {arn} does not exist") from exc
        await asyncio.to_thread(tables.store_description, self.archive, doc)
        generation = await asyncio.to_thread(self._open_coverage, doc, started)
        writer = KinesisWriter(
            self.archive, table, generation, self.config.flush, margin=self.options.reorder
        )
        self.writer = writer
        info = StreamInfo(arn=arn, label=layout.KINESIS_STREAM_LABEL, table_name=table)
        await asyncio.to_thread(writer.prepare, [info])
        await self._destination_seen(destination)
        known = await asyncio.to_thread(ties.read_ties, self.archive, table)
        orderer = Orderer(horizon=max(self.options.reorder * 5, timedelta(minutes=5)), known=known)
        await asyncio.to_thread(self._remember_recent, orderer)
        self.intake = Intake(self.archive, table, generation, orderer)
        consumer_config = KinesisConfig(
            once=self.config.once,
            poll_seconds=self.config.poll_seconds,
            discover_seconds=self.config.discover_seconds,
            once_started_at=started,
        )
        self.consumer = KinesisConsumer(
            self.api, stream, table, writer, self.intake, consumer_config, self.stop
        )
        self._announce(stream, destination, generation)
        background = [
            asyncio.create_task(self._every(self.config.persist_seconds, writer.persist)),
            asyncio.create_task(self._every(self.config.progress_seconds, self._progress)),
        ]
        if not self.config.once:
            background.append(
                asyncio.create_task(self._every(self.options.describe_seconds, self._poll))
            )
        try:
            await self.consumer.run()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        await writer.finish()
        if self.consumer.gone:
            await self._stream_deleted(stream)
        self._summary()
        if self.refusal is not None:
            raise self.refusal
        return EXIT_NEW_GAP if writer.gaps.recorded else EXIT_OK

    def _remember_recent(self, orderer: Orderer) -> None:
        """Teach the orderer the archived records a record still to come may share a time
        with: those created after the open shards' last durable arrivals, less the reordering
        margin, or of the orderer's horizon when no checkpoint says (blocking I/O)."""
        docs = read_checkpoints(self.archive, self.table, layout.KINESIS_LABEL)
        arrivals = [
            parse_iso(str(d["kinesis_arrival"]))
            for d in docs.values()
            if not d.get("closed") and d.get("kinesis_arrival")
        ]
        since = min(arrivals) if arrivals else utcnow() - orderer.horizon
        count = remember_archived(orderer, self.archive, self.table, since - self.options.reorder)
        log.debug("%s: %d archived records to order new ones against", self.table, count)

    def _open_coverage(self, doc: dict[str, Any], now: datetime) -> LiveGeneration:
        table = doc["Table"]
        name = str(doc["table_name"])
        table_id = str(doc["table_id"])
        created = parse_iso(str(table["CreationDateTime"]))
        previous = tuple(
            sorted(
                (parse_iso(g["table_created_at"]), str(g["table_id"]))
                for g in coverage.generations(self.archive, name)
                if g.get("table_id") != table_id and g.get("table_created_at")
            )
        )
        # When the destination was enabled is in no API: nothing before the first start is
        # claimed complete (records older than that are archived all the same).
        current = coverage.open_generation(
            self.archive,
            name,
            table_arn=str(doc["table_arn"]),
            table_id=table_id,
            table_created_at=created,
            covered_from=now,
            from_table_creation=False,
            mode="kinesis",
            now=now,
        )
        return LiveGeneration(
            table_id, created, covered_from=parse_iso(current["covered_from"]), previous=previous
        )

    async def _destination_seen(self, destination: Destination) -> None:
        """Record what was seen of the destination; a hole when it streams again."""
        assert self.writer is not None
        now = utcnow()
        hole = await asyncio.to_thread(
            observe_destination, self.archive, self.table, destination, now
        )
        if hole is not None:
            await self.writer.record_gap(
                destination.stream_arn, hole[0], hole[1], gap_log.GAP_KINESIS_DISABLED
            )
        if not destination.streaming:
            log.warning(
                "%s: the Kinesis destination %s is %s%s: no new changes reach it; reading what "
                "it holds (a gap is recorded when it is seen streaming again)",
                self.table,
                destination.stream_arn,
                destination.status,
                f" ({destination.description})" if destination.description else "",
            )

    async def _poll(self) -> None:
        """Look at the destination again: status changes, precision changes."""
        destination = await describe_destination(
            self.destinations, self.table, self.options.stream_arn
        )
        try:
            check_precision(destination, self.table, self.options.accept_millisecond_order)
        except MillisecondOrder as exc:
            self.refusal = exc
            self.stop.set()
            return
        if destination.status is None:
            destination = Destination(destination.stream_arn, "DISABLED", destination.precision)
        await self._destination_seen(destination)

    def _claimed(self, table_id: str) -> datetime | None:
        """Up to where the log of generation ``table_id`` is claimed complete."""
        current = coverage.generation_of(self.archive, self.table, table_id) or {}
        claimed = current.get("watermark") or current.get("covered_from")
        return parse_iso(str(claimed)) if claimed else None

    async def _stream_deleted(self, stream: KinesisStream) -> None:
        """The stream is gone: what was not read by then is lost."""
        assert self.writer is not None
        start = (
            self._claimed(self.writer.generation.table_id) or self.writer.generation.covered_from
        )
        await self.writer.record_gap(stream.arn, start, utcnow(), gap_log.GAP_KINESIS_DELETED)

    def _deleted_since_last_run(self, table_id: str) -> bool:
        """The stream this archive read the table from is gone: record the hole from what the
        log claims to now, once (blocking I/O); ``False`` when this archive never read it."""
        arn = self.options.stream_arn
        state = statefiles.read_json(
            self.archive, layout.kinesis_state(self.table), statefiles.KINESIS_STATE,
            "kinesis.json", missing_ok=True,
        )  # fmt: skip
        if not state or state.get("stream_arn") != arn:
            return False
        known = any(
            g.get("stream_arn") == arn and g.get("reason") == gap_log.GAP_KINESIS_DELETED
            for g in gap_log.read_gaps(self.archive, self.table)
        )
        if not known:
            now = utcnow()
            gap_log.append_gap(
                self.archive,
                self.table,
                table_id=table_id,
                stream_arn=arn,
                shard_id=None,
                start=self._claimed(table_id) or now,
                end=now,
                reason=gap_log.GAP_KINESIS_DELETED,
            )
        log.warning(
            "%s: the Kinesis data stream %s was deleted: records not archived before are lost "
            "(gap %s in %s); enable a new destination and archive it into a new archive or "
            "after a new base snapshot",
            self.table,
            arn,
            "recorded" if not known else "already recorded",
            layout.gaps(self.table),
        )
        return not known

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception as exc:  # a transient failure must not stop archiving
                log.warning("%s: %s failed: %s", self.table, action.__name__, exc)

    def _announce(
        self, stream: KinesisStream, destination: Destination, generation: LiveGeneration
    ) -> None:
        log.info(
            "%s: archiving into %s (%s) from Kinesis data stream %s (%s, %s precision, "
            "retention %d h); covered from %s",
            self.table,
            self.archive.url,
            "once" if self.config.once else "until stopped",
            stream.arn,
            destination.status,
            destination.precision or "unstated",
            stream.retention_hours,
            iso_ms(generation.covered_from),
        )

    async def _progress(self) -> None:
        writer, intake = self.writer, self.intake
        if writer is None or intake is None:
            return
        stats = writer.stats
        watermark = writer.watermark()
        log.info(
            "%s: %d records read, %d written in %d files; %s; watermark %s",
            self.table,
            stats.records_read,
            stats.records_written,
            stats.files_written,
            self._others(),
            iso_ms(watermark) if watermark else "not yet known",
        )

    def _others(self) -> str:
        intake = self.intake
        if intake is None:
            return ""
        others = sum(intake.other_tables.values())
        parts = [f"{others} records of {len(intake.other_tables)} other table(s) skipped"]
        orderer = intake.orderer
        if orderer.duplicates:
            parts.append(f"{orderer.duplicates} duplicates dropped")
        if intake.foreign:
            parts.append(f"{intake.foreign} records that are not DynamoDB changes skipped")
        if intake.earlier_generation:
            parts.append(
                f"{intake.earlier_generation} records of an earlier table of this name skipped"
            )
        if orderer.ties:
            parts.append(
                f"{orderer.ties} equal-time record(s) of one key ordered, "
                f"{orderer.undecided} not decided by their images"
            )
        return "; ".join(parts)

    def _summary(self) -> None:
        writer = self.writer
        if writer is None:
            return
        stats = writer.stats
        watermark = writer.watermark()
        message = (
            f"{self.table}: {'done' if self.config.once else 'stopped'}: "
            f"{stats.records_written} records in {stats.files_written} files from "
            f"{len(writer.shards)} Kinesis shard(s); {self._others()}; watermark "
            f"{iso_ms(watermark) if watermark else 'not yet known'}"
        )
        if writer.gaps.recorded:
            log.warning(
                "%s; %d NEW GAP(S) in the log (see gaps.jsonl)", message, len(writer.gaps.recorded)
            )
        else:
            log.info("%s; no new gaps", message)
