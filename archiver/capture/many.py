"""One archiver process for many tables: ``--table-name A --table-name B`` or
``--tables-tagged KEY=VALUE``.

Each table runs as its own :func:`archiver.capture.runner.execute` — its own streams, shards,
checkpoints, coverage and progress lines — concurrently in one event loop, sharing the AWS
clients. A table that fails (a refused stream type, a table deleted or never created, an
access error) is reported on its own line and the others go on; at the end one line names
every table that failed and why.

With ``--tables-tagged`` the account's tables are listed and their tags read again every
``--tags-refresh-seconds`` (once with ``--once``), so a table tagged later is picked up
without a restart; a table that loses its tag keeps being archived until the process stops
(stopping one silently would open a gap).

Exit status: 0 when every table finished cleanly; 5 when none failed but one recorded a new
gap; otherwise the failures' exit code when they share one (2 for refused tables), else 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from archiver.aws.clients import AwsSettings
from archiver.aws.error_table import (
    EXIT_FAILURE,
    EXIT_NEW_GAP,
    EXIT_OK,
    ResourceNotFound,
    is_error,
)
from archiver.capture.runner import RunConfig, execute
from archiver.format.storage import Archive

log = logging.getLogger("archiver.run")

DEFAULT_TAGS_REFRESH_SECONDS = 300.0


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (argparse type)."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


async def tagged_tables(ddb: Any, tag: tuple[str, str], arns: dict[str, str]) -> list[str]:
    """Names of the tables carrying ``tag`` (``arns`` caches table name → ARN)."""
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = await ddb.list_tables(**kwargs)
        names.extend(page.get("TableNames", []))
        if not page.get("LastEvaluatedTableName"):
            break
        kwargs["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]
    found = []
    for name in names:
        try:
            if name not in arns:
                arns[name] = (await ddb.describe_table(TableName=name))["Table"]["TableArn"]
            tags = await _tags(ddb, arns[name])
        except Exception as exc:
            if is_error(exc, ResourceNotFound):
                arns.pop(name, None)  # deleted since the listing
                continue
            raise
        if tags.get(tag[0]) == tag[1]:
            found.append(name)
    return found


async def _tags(ddb: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = await ddb.list_tags_of_resource(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def _describe_failure(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def execute_many(
    config: RunConfig,
    settings: AwsSettings,
    archive: Archive,
    *,
    table_names: Sequence[str] = (),
    tagged: tuple[str, str] | None = None,
    tags_refresh_seconds: float = DEFAULT_TAGS_REFRESH_SECONDS,
    stop: asyncio.Event | None = None,
    streams_client: Any = None,
) -> int:
    """Archive every named or tagged table until done (``--once``) or ``stop``.

    Args:
        config: the :class:`RunConfig` shared by every table (its
            ``table_name`` is replaced per table).
        table_names: tables named on the command line.
        tagged: a ``(key, value)`` tag: every table carrying it is archived too.
        tags_refresh_seconds: how often the tagged tables are listed again.
    """
    stop = stop or asyncio.Event()
    tasks: dict[str, asyncio.Task[int]] = {}

    def start(name: str) -> None:
        if name in tasks:
            return
        log.info("%s: starting", name)
        per_table = dataclasses.replace(config, table_name=name)
        tasks[name] = asyncio.create_task(
            execute(per_table, settings, archive, stop=stop, streams_client=streams_client),
            name=f"archive {name}",
        )

    for name in table_names:
        start(name)
    failures: dict[str, BaseException] = {}
    if tagged is not None:
        arns: dict[str, str] = {}
        async with settings.aio_client("dynamodb") as ddb:
            while True:
                try:
                    for name in await tagged_tables(ddb, tagged, arns):
                        start(name)
                except Exception as exc:  # a failed listing must not stop the running tables
                    if config.once:
                        failures[f"tables tagged {tagged[0]}={tagged[1]}"] = exc
                    log.warning("listing tables tagged %s=%s failed: %s", *tagged, exc)
                if config.once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tags_refresh_seconds)
                if stop.is_set():
                    break
        if not tasks and not failures:
            log.warning("no table is tagged %s=%s", *tagged)
    codes: dict[str, int] = {}
    if tasks:
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for name, result in zip(tasks, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                if isinstance(result, KeyboardInterrupt):
                    raise result
                failures[name] = result
                log.error("%s: FAILED: %s", name, _describe_failure(result))
            else:
                codes[name] = result
    return _exit_code(codes, failures)


def _exit_code(codes: dict[str, int], failures: dict[str, BaseException]) -> int:
    if failures:
        summary = "; ".join(f"{name}: {_describe_failure(exc)}" for name, exc in failures.items())
        total = len(codes) + len(failures)
        log.error("%d of %d table(s) failed: %s", len(failures), total, summary)
        exits = {int(getattr(exc, "exit_code", EXIT_FAILURE)) for exc in failures.values()}
        return exits.pop() if len(exits) == 1 else EXIT_FAILURE
    gaps = [name for name, code in codes.items() if code == EXIT_NEW_GAP]
    if gaps:
        log.warning("new gap(s) recorded for: %s", ", ".join(gaps))
        return EXIT_NEW_GAP
    bad = {code for code in codes.values() if code != EXIT_OK}
    return bad.pop() if len(bad) == 1 else (EXIT_FAILURE if bad else EXIT_OK)
