"""The installed wheel (no extras, a fresh venv, run outside the checkout) does what a user
does with it: every command's ``--help``, and a short story against moto — archive, restore to
a time, verify, status, query, export, check.

The story is small (tens of items) but passes through every runtime dependency: aiobotocore
(the stream reader), s3fs (the archive is in moto's S3), pyarrow (the change files), DuckDB
(the fold, the query), sqlglot (``state_at`` in the query), orjson (the codec) and boto3
(restore's writers). The truth it compares with is the table read back at the time noted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from archiver import cli as archiver_cli
from archiver.cliutil import Command, build_parser
from archiver.format.codec import canonical_json, canonicalize_text
from replayer import cli as replayer_cli
from tests.conftest import REGION, create_table
from tests.installed.conftest import Installed

TOOLS: dict[str, Sequence[Command]] = {
    "ddb-archiver": archiver_cli.COMMANDS,
    "ddb-replayer": replayer_cli.COMMANDS,
}
ARCHIVE = "s3://archive-bucket/ddb"
TABLE = "orders"
RESTORED = "orders-at-t"


def _command_paths(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command of a parser, nested subcommands included (``()`` is the tool itself)."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*path, name))


# Each subcommand's --help in one process of the venv per tool: argparse prints and exits; the
# process boundary adds nothing (each --help imports its command's module) but ~1 s each.
_HELPS = """
import contextlib, importlib, io, json, sys

tool, paths = json.loads(sys.argv[1])
main = importlib.import_module(tool.removeprefix("ddb-") + ".cli").main
for path in paths:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*path, "--help"])
        except SystemExit as exit:
            code = exit.code
    print(json.dumps([path, code, out.getvalue(), err.getvalue()]))
"""


def test_help_of_every_command(installed: Installed) -> None:
    """Read from the tools' COMMANDS lists (and any nested subcommands), so a new command is
    covered without editing this test; the console scripts themselves start too."""
    for tool, commands in TOOLS.items():
        paths = list(_command_paths(build_parser(tool, "", commands)))
        assert len(paths) > len(commands)  # the tool itself and each command, at least
        script = installed.run(tool, "--help")
        assert (script.returncode, script.stderr) == (0, ""), script.stderr[-3000:]
        assert script.stdout.startswith(f"usage: {tool} ")
        assert all(command.name in script.stdout for command in commands)
        done = installed.run_python(_HELPS, json.dumps([tool, paths]))
        shown = [json.loads(line) for line in done.stdout.splitlines()]
        assert [path for path, *_ in shown] == [list(path) for path in paths]
        for path, code, out, err in shown:
            usage = " ".join((tool, *path))
            assert (code, err) == (0, ""), f"{usage} --help: exit {code}\n{err[-3000:]}"
            assert out.startswith(f"usage: {usage} "), out[:200]
    version = installed.run("ddb-replayer", "--version")
    assert (version.returncode, version.stdout.split()[0]) == (0, "ddb-replayer")


# -- the story ------------------------------------------------------------------------------


def _item(n: int, version: int) -> dict[str, Any]:
    """One item using every attribute type."""
    return {
        "pk": {"S": f"order-{n:03d}"},
        "version": {"N": str(version)},
        "total": {"N": f"{n * 10 + version}.50"},
        "note": {"S": f'it\'s "order" {n} — v{version}'},
        "photo": {"B": bytes([n, version, 0, 255])},
        "tags": {"SS": sorted({f"t{n % 3}", f"v{version}"})},
        "sizes": {"NS": [str(n), str(n + 0.5)]},
        "address": {"M": {"city": {"S": "Lisbon"}, "geo": {"L": [{"N": "38.7"}, {"N": "-9.1"}]}}},
        "paid": {"BOOL": version % 2 == 0},
        "coupon": {"NULL": True},
    }


def _scan(ddb: Any, table: str) -> dict[str, str]:
    """The table's items as canonical JSON, by key."""
    items: dict[str, str] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            items[item["pk"]["S"]] = canonical_json(item)
    return items


def _ok(result: Any, what: str) -> str:
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{result.stderr[-4000:]}"
    return str(result.stdout)


def test_archive_restore_verify_query_export_check(
    installed: Installed, ddb: Any, tmp_path: Path
) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="archive-bucket")
    create_table(ddb, TABLE, stream="NEW_AND_OLD_IMAGES")
    for n in range(30):
        ddb.put_item(TableName=TABLE, Item=_item(n, 1))
    archive_run = ("run", "--table-name", TABLE, "--archive", ARCHIVE, "--once")
    _ok(installed.run("ddb-archiver", *archive_run), "run --once")

    # T: the whole second after the last write it covers (stream times are whole seconds), and
    # the next change at least a second after T.
    last_good = time.time()
    at = math.ceil(last_good)
    time.sleep(max(at + 1, last_good + 2) - time.time())
    truth = _scan(ddb, TABLE)
    t_iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    for n in range(0, 10, 2):
        ddb.put_item(TableName=TABLE, Item=_item(n, 2))
    for n in range(1, 10, 2):
        ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"order-{n:03d}"}})
    for n in range(30, 35):
        ddb.put_item(TableName=TABLE, Item=_item(n, 1))
    # The watermark trails the moment the reader caught up by 2 s: run after T + 3.
    time.sleep(max(0.0, at + 3 - time.time()))
    _ok(installed.run("ddb-archiver", *archive_run), "second run --once")
    live = _scan(ddb, TABLE)
    assert live != truth and len(truth) == 30

    restore = installed.run(
        "ddb-replayer", "restore", "--source-table-name", TABLE, "--target-table-name", RESTORED,
        "--archive", ARCHIVE, "--restore-date-time", t_iso,
    )  # fmt: skip
    _ok(restore, "restore")
    assert _scan(ddb, RESTORED) == truth

    verify = ("--source-table-name", TABLE, "--archive", ARCHIVE, "--restore-date-time", t_iso)
    _ok(installed.run("ddb-replayer", "verify", "--target-table-name", RESTORED, *verify), "verify")
    # The live table has changed since T: verify says so (exit 3).
    differs = installed.run("ddb-replayer", "verify", "--target-table-name", TABLE, *verify)
    assert differs.returncode == 3, differs.stderr[-3000:]

    status = json.loads(
        _ok(installed.run("ddb-replayer", "status", "--archive", ARCHIVE, "--json"), "status")
    )
    (table,) = status["tables"]
    assert (table["table"], table["gaps"]["count"]) == (TABLE, 0)
    assert table["coverage"]["from_table_creation"] is True
    assert table["watermark"] >= t_iso.replace("Z", ".000Z")

    state_at = f"SELECT count(*) AS n FROM state_at('{TABLE}', '{t_iso}')"
    changes = f"SELECT count(DISTINCT event_id) AS n FROM changes WHERE table_name = '{TABLE}'"
    for sql, expected in ((state_at, len(truth)), (changes, 30 + 5 + 5 + 5)):
        out = _ok(
            installed.run("ddb-replayer", "query", "--archive", ARCHIVE, "--format", "json", sql),
            f"query {sql}",
        )
        assert [json.loads(line) for line in out.splitlines()] == [{"n": expected}], sql

    exported = tmp_path / "export"
    export = installed.run(
        "ddb-replayer", "export", "--table-name", TABLE, "--archive", ARCHIVE,
        "--restore-date-time", t_iso, "--output", str(exported), "--format", "dynamodb-json",
    )  # fmt: skip
    _ok(export, "export")
    lines = [
        line
        for part in sorted(exported.rglob("*.gz"))
        for line in gzip.decompress(part.read_bytes()).decode().splitlines()
        if line.strip()
    ]
    items = [canonicalize_text(json.dumps(json.loads(line)["Item"])) for line in lines]
    assert sorted(items) == sorted(truth.values())

    check = installed.run("ddb-archiver", "check", "--table-name", TABLE, "--archive", ARCHIVE,
                          "--deep", "--json")  # fmt: skip
    report = json.loads(_ok(check, "check --deep"))
    assert (report["problems"], report["known_holes"]) == ([], [])
    assert report["change_files"] >= 2
