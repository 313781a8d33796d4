from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import botocore.exceptions

from archiver.aws import metrics
from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import UsageError
from archiver.capture import kinesis_run, many, raw_records
from archiver.capture import runner as _library
from archiver.capture.change_writer import (
    DEFAULT_FLUSH_BYTES,
    DEFAULT_FLUSH_RECORDS,
    DEFAULT_FLUSH_SECONDS,
)
from archiver.capture.processes import add_processes_argument, shard_pool
from archiver.capture.runner import RunConfig, execute
from archiver.cliutil import (
    add_archive_argument,
    add_file_mode_argument,
    add_metrics_arguments,
    open_archive,
    positive_float,
    positive_int,
)

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__

log = logging.getLogger("archiver.run")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def byte_size(text: str) -> int:
    """``65536``, ``64MB``, ``64MiB``, ``1.5GB`` → bytes (argparse type)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 67108864, 64MB, 64MiB)")
    unit = (match.group(2) or "").lower()
    letter = unit[:1] if unit[:1] in ("k", "m", "g") else ""
    power = "kmg".index(letter) + 1 if letter else 0
    value = int(float(match.group(1)) * (1024 if "i" in unit else 1000) ** power)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_metrics_arguments(parser)
    tables = parser.add_argument_group("tables (one process archives them all)")
    tables.add_argument(
        "--table-name",
        action="append",
        dest="table_names",
        metavar="T",
        help="a table to archive; repeat it for more tables",
    )
    tables.add_argument(
        "--tables-tagged",
        type=many.parse_tag,
        metavar="KEY=VALUE",
        help="also archive every table carrying this tag (listed again periodically)",
    )
    tables.add_argument(
        "--tags-refresh-seconds",
        type=positive_float,
        default=many.DEFAULT_TAGS_REFRESH_SECONDS,
        metavar="S",
        help="how often --tables-tagged lists the tables again",
    )
    add_archive_argument(parser)
    add_file_mode_argument(parser)
    parser.add_argument(
        "--once",
        action="store_true",
        help="read until every closed shard is at its end and every open one is caught up "
        "(consecutive empty pages; docs/format.md, caught_up_at) or has reached records "
        "written after the run began, then exit; default: run until SIGINT/SIGTERM",
    )
    flush = parser.add_argument_group("flushing (a shard's buffer is written when any is reached)")
    flush.add_argument(
        "--flush-records",
        type=positive_int,
        default=DEFAULT_FLUSH_RECORDS,
        metavar="N",
        help="records buffered per shard",
    )
    flush.add_argument(
        "--flush-seconds",
        type=positive_float,
        default=DEFAULT_FLUSH_SECONDS,
        metavar="S",
        help="age of a shard's oldest buffered record; also bounds how far the watermark lags",
    )
    flush.add_argument(
        "--flush-bytes",
        type=byte_size,
        default=f"{DEFAULT_FLUSH_BYTES // 2**20}MiB",
        metavar="B",
        help="buffered bytes per shard (accepts 64MB, 64MiB, …)",
    )
    polling = parser.add_argument_group("polling")
    polling.add_argument(
        "--poll-seconds",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="pause after an empty page before asking the shard again",
    )
    add_processes_argument(parser)
    polling.add_argument(
        "--progress-seconds",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="interval of the progress lines on stderr (records, files, lag, watermark)",
    )
    kinesis_run.add_kinesis_arguments(parser)


def main(args: Any) -> int:
    names = list(dict.fromkeys(getattr(args, "table_names", None) or []))
    tagged = getattr(args, "tables_tagged", None)
    if not names and tagged is None:
        raise UsageError("name the tables to archive: --table-name T (repeatable) or "
                         "--tables-tagged KEY=VALUE")  # fmt: skip
    kinesis = kinesis_run.KinesisOptions.from_args(args)
    if kinesis is not None:
        kinesis_run.one_table(names, tagged)
    config = RunConfig.from_args(args)
    settings = AwsSettings.from_args(args)
    raw_records.collect_less()
    archive = open_archive(args, config.archive_url, endpoint_url=settings.endpoint_url)

    async def archive_tables(stop: asyncio.Event) -> int:
        if kinesis is not None:
            return await kinesis_run.execute(config, settings, archive, kinesis, stop=stop)
        processes = getattr(args, "processes", 1)
        debug = bool(getattr(args, "debug", False))
        async with shard_pool(processes, settings, archive, debug=debug) as pool:
            if len(names) == 1 and tagged is None:
                return await execute(config, settings, archive, stop=stop, pool=pool)
            return await many.execute_many(
                config, settings, archive, table_names=names, tagged=tagged,
                tags_refresh_seconds=args.tags_refresh_seconds, stop=stop, pool=pool,
            )  # fmt: skip

    sink = metrics.start_from_args(args)
    try:
        return asyncio.run(_main(archive_tables))
    except botocore.exceptions.NoRegionError:
        raise UsageError("no AWS region: set AWS_REGION or pass --region") from None
    finally:
        sink.flush()


async def _main(archive_tables: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: aborting without flushing", signal.Signals(signum).name)
            if task is not None:
                task.cancel()
            return
        log.info(
            "%s: stopping, flushing buffers (send it again to abort)", signal.Signals(signum).name
        )
        stop.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        return await archive_tables(stop)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
