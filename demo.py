"""The whole story on an embedded local AWS stack: ``make demo``.

``make demo`` installs the package as a user does (not editable, with only the ``demo`` extra,
which adds moto) into ``.venv-demo`` and runs ``python -P demo.py``: ``-P`` keeps the checkout
off ``sys.path``, so the demo runs the installed package, not the sources beside it.

No AWS account needed: moto's server runs on loopback as DynamoDB, DynamoDB Streams and S3,
and the archive is the local folder ``./demo-archive`` (wiped at the start). The story:

1. an ``employee`` table with a stream, and a realistic workload (hires, raises, transfers,
   departures);
2. ``ddb-archiver run --once`` archives every change; we look at the Parquet it wrote;
3. ``ddb-archiver snapshot --method scan`` takes a base snapshot; more writes follow;
4. an accident: a script deletes a whole department;
5. ``ddb-replayer restore`` rebuilds the table as it was the second before, into a new table,
   and verifies it item by item;
6. native protections: ``ddb-archiver pitr --enable``, ``ddb-archiver backup create``, and
   ``ddb-replayer restore --dry-run`` weighing PITR, the backup and replay;
7. ``ddb-replayer status``, SQL questions with ``ddb-replayer query``, and one employee's
   ``ddb-replayer history``.

Every step calls the same entry point as the command line (``archiver.cli.main`` /
``replayer.cli.main``), and prints that command line first, so each can be re-run by hand
against the archive the demo leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ARCHIVE = "./demo-archive"
TABLE = "employee"
RESTORED = "employee-restored"
REGION = "us-east-1"
DEPARTMENTS = ("engineering", "sales", "marketing", "finance", "support", "legal")
ACCIDENT_DEPARTMENT = "engineering"
CITIES = {
    "Berlin": ("52.52", "13.405"),
    "Lisbon": ("38.7223", "-9.1393"),
    "Montréal": ("45.5019", "-73.5674"),
    "Nairobi": ("-1.2921", "36.8219"),
    "Osaka": ("34.6937", "135.5023"),
    "São Paulo": ("-23.5505", "-46.6333"),
}
FIRST = (
    *("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"),
    *("Margaret", "John", "Katherine", "Linus", "Sophie", "Tim", "Zoë", "Björn", "Aiko"),
)
LAST = (
    *("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"),
    *("Perlman", "Hamilton", "McCarthy", "Johnson", "Torvalds", "Wilson", "Berners-Lee"),
)
TITLES = ("Engineer", "Senior Engineer", "Analyst", "Manager", "Director", "Specialist")
SKILLS = ("python", "sql", "go", "rust", "negotiation", "excel", "writing", "kubernetes",
          "accounting", "support", "design", "law")  # fmt: skip

WIDTH = 100


# -- presentation ---------------------------------------------------------------------------


def section(number: int, title: str) -> None:
    print()
    print(f"━━━ {number}. {title} " + "━" * max(3, WIDTH - len(title) - 8))


def say(text: str) -> None:
    print(textwrap.fill(text, WIDTH))


def show_command(tool: str, argv: Sequence[str]) -> None:
    shown = " ".join(_quote(arg) for arg in argv)
    print(f"\n$ {tool} {shown}", flush=True)


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=+" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def cut(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table_print(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("─" * width for width in widths))


# -- the local AWS stack --------------------------------------------------------------------


@contextlib.contextmanager
def local_aws() -> Iterator[str]:
    """moto's server on loopback, with this process's AWS settings pointed at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    isolate_aws_env(url)
    try:
        yield url
    finally:
        server.stop()


def isolate_aws_env(endpoint: str) -> None:
    """Point every SDK in this process at ``endpoint`` with dummy credentials and no config
    files: nothing can reach a real AWS account."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


# -- running the tools ----------------------------------------------------------------------


class Steps:
    """Runs each tool command as the CLI would, noting what failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def run(self, tool: str, argv: list[str]) -> int:
        """Run one command (``tool`` is ddb-archiver or ddb-replayer) and return its exit code."""
        show_command(tool, argv)
        main: Callable[[list[str]], int]
        if tool == "ddb-archiver":
            from archiver.cli import main
        else:
            from replayer.cli import main
        code = main(argv)
        sys.stdout.flush()
        if code != 0:
            print(f"(exit code {code})")
            self.failed.append(f"{tool} {argv[0]} (exit {code})")
        return code


# -- the workload ---------------------------------------------------------------------------


def thumbnail(rng: random.Random) -> bytes:
    """A few dozen bytes standing in for a photo thumbnail (binary, with a PNG signature)."""
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(40)


def new_employee(rng: random.Random, emp_id: int, dept: str) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city = rng.choice(sorted(CITIES))
    lat, lon = CITIES[city]
    item: dict[str, Any] = {
        "dept": {"S": dept},
        "emp_id": {"N": str(emp_id)},
        "name": {"S": f"{first} {last}"},
        "email": {"S": f"{first.lower()}.{last.lower()}{emp_id}@example.com"},
        "title": {"S": rng.choice(TITLES)},
        "level": {"N": str(rng.randint(1, 5))},
        "salary": {"N": f"{rng.randrange(52_000, 180_000, 250)}.{rng.choice(['00', '50'])}"},
        "city": {"S": city},
        "address": {
            "M": {
                "city": {"S": city},
                "geo": {"L": [{"N": lat}, {"N": lon}]},
                "remote": {"BOOL": rng.random() < 0.3},
            }
        },
        "skills": {"SS": rng.sample(SKILLS, k=rng.randint(1, 4))},
        "ratings": {"NS": [str(r) for r in rng.sample([3, 3.5, 4, 4.5, 5], k=rng.randint(1, 3))]},
        "photo": {"B": thumbnail(rng)},
        "active": {"BOOL": True},
        "hired_on": {"S": f"20{rng.randint(15, 25)}-{rng.randint(1, 12):02d}-01"},
        "manager_id": {"NULL": True} if emp_id % 25 == 1 else {"N": str(emp_id - emp_id % 25 + 1)},
    }
    return item


def batch_put(ddb: Any, items: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        ddb.batch_write_item(RequestItems={TABLE: requests})


def batch_delete(ddb: Any, keys: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(keys), 25):
        requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
        ddb.batch_write_item(RequestItems={TABLE: requests})


def give_raise(ddb: Any, rng: random.Random, key: dict[str, Any]) -> None:
    ddb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET salary = salary + :raise, #level = #level + :one ADD ratings :r",
        ExpressionAttributeNames={"#level": "level"},
        ExpressionAttributeValues={
            ":raise": {"N": str(rng.randrange(1_000, 9_000, 250))},
            ":one": {"N": "1"},
            ":r": {"NS": [str(rng.choice([4, 4.5, 5]))]},
        },
    )


def key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"dept": item["dept"], "emp_id": item["emp_id"]}


def scan_all(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        items.extend(page["Items"])
    return items


def summary(item: dict[str, Any]) -> str:
    return (
        f"{item['dept']['S']:<12} #{item['emp_id']['N']:<4} {item['name']['S']:<22} "
        f"{item['title']['S']:<16} salary {item['salary']['N']}"
    )


# -- reading the archive --------------------------------------------------------------------


def show_archive() -> None:
    import duckdb

    from archiver.format.storage import Archive

    archive = Archive.open(ARCHIVE)
    files = list(archive.walk_files("changes", ".parquet"))
    print(f"\n{len(files)} change file(s) under {ARCHIVE}/changes/:")
    for rel, size in files:
        print(f"  {rel}  ({size:,} bytes)")
    pattern = f"{ARCHIVE}/changes/**/*.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = (
        f"read_parquet('{pattern}', hive_partitioning = true, "
        "hive_types = {'table_name': VARCHAR, 'dt': VARCHAR})"
    )
    print("\nRows per partition and event:")
    rows = con.sql(
        f"SELECT table_name, dt, event_name, count(*) FROM {source} GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    table_print(rows, ("table_name", "dt", "event_name", "rows"))
    print("\nA few rows (images are canonical DynamoDB JSON; binary as base64):")
    sample = con.sql(
        f"""SELECT strftime(event_time, '%H:%M:%S.%g') AS t, event_name, sequence_number, keys,
                   coalesce(new_image, old_image) AS image
            FROM {source}
            QUALIFY row_number() OVER (PARTITION BY event_name ORDER BY sequence_number) = 1
            ORDER BY sequence_number"""
    ).fetchall()
    for t, event_name, sequence_number, keys, image in sample:
        print(f"  {t}  {event_name:<6}  seq …{sequence_number[-6:]}  keys {keys}")
        print(f"      {cut(image, 94)}")
    coverage = archive.read_json_or(f"_state/{TABLE}/coverage.json", {})
    print(
        f"\ncoverage.json: covered from {coverage.get('covered_from')} "
        f"(from table creation: {coverage.get('from_table_creation')}); "
        f"watermark {coverage.get('watermark')}"
    )


def watermark() -> datetime | None:
    from archiver.format.storage import Archive
    from archiver.format.timefmt import parse_iso

    doc = Archive.open(ARCHIVE).read_json_or(f"_state/{TABLE}/coverage.json", {})
    mark = doc.get("watermark")
    return parse_iso(mark) if mark else None


# -- the story ------------------------------------------------------------------------------


def story(ddb: Any, steps: Steps) -> None:
    rng = random.Random(2026)
    archive_run = ["run", "--table-name", TABLE, "--archive", ARCHIVE, "--once"]

    section(1, "A DynamoDB table with a stream")
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "dept", "KeyType": "HASH"},
            {"AttributeName": "emp_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "dept", "AttributeType": "S"},
            {"AttributeName": "emp_id", "AttributeType": "N"},
            {"AttributeName": "city", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_city",
                "KeySchema": [{"AttributeName": "city", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    say(
        f"Created table {TABLE!r}: key (dept, emp_id), a global secondary index by_city, and a "
        "DynamoDB stream with NEW_AND_OLD_IMAGES — every change carries the whole item."
    )

    section(2, "A realistic workload: hires, raises, transfers, departures")
    staff: dict[tuple[str, int], dict[str, Any]] = {}
    for emp_id in range(1, 301):
        item = new_employee(rng, emp_id, DEPARTMENTS[emp_id % len(DEPARTMENTS)])
        staff[(item["dept"]["S"], emp_id)] = item
    batch_put(ddb, list(staff.values()))
    raised = rng.sample(sorted(staff), k=80)
    for dept, emp_id in raised:
        give_raise(ddb, rng, key_of(staff[(dept, emp_id)]))
    moves = rng.sample([k for k in sorted(staff) if k[0] != ACCIDENT_DEPARTMENT], k=25)
    for dept, emp_id in moves:  # the department is part of the key: a transfer is delete + put
        item = staff.pop((dept, emp_id))
        ddb.delete_item(TableName=TABLE, Key=key_of(item))
        item = {**item, "dept": {"S": rng.choice([d for d in DEPARTMENTS if d != dept])}}
        ddb.put_item(TableName=TABLE, Item=item)
        staff[(item["dept"]["S"], emp_id)] = item
    leavers = rng.sample(sorted(staff), k=20)
    batch_delete(ddb, [key_of(staff.pop(k)) for k in leavers])
    say(
        f"300 hires, 80 raises, 25 transfers between departments and 20 departures: "
        f"{len(staff)} employees now."
    )

    section(3, "Archive every change: ddb-archiver run --once")
    say(
        "The archiver reads every shard of the table's stream until it is caught up, and writes "
        "the change records as Parquet, partitioned by table and UTC day."
    )
    steps.run("ddb-archiver", archive_run)
    if Path(ARCHIVE, "changes").exists():
        show_archive()

    section(4, "A base snapshot: ddb-archiver snapshot --method scan")
    say(
        "A scan snapshot (or a native export) is the base a restore starts from when the "
        "change log alone does not reach back far enough (streams keep 24 hours)."
    )
    steps.run(
        "ddb-archiver",
        ["snapshot", "--table-name", TABLE, "--archive", ARCHIVE, "--method", "scan"],
    )

    section(5, "Business as usual, then an accident")
    hires = [new_employee(rng, emp_id, rng.choice(DEPARTMENTS)) for emp_id in range(301, 311)]
    batch_put(ddb, hires)
    for item in hires:
        staff[(item["dept"]["S"], int(item["emp_id"]["N"]))] = item
    for key in rng.sample(sorted(staff), k=15):
        give_raise(ddb, rng, key_of(staff[key]))
    last_good = time.time()
    # AWS stream times are whole seconds: T is the whole second after the last good write,
    # and the accident comes at least a second after T (and 2 s after that write).
    restore_to = math.ceil(last_good)
    time.sleep(max(restore_to + 1, last_good + 2) - time.time())
    victims = [
        key_of(item) for (dept, _), item in sorted(staff.items()) if dept == ACCIDENT_DEPARTMENT
    ]
    batch_delete(ddb, victims)
    accident = datetime.now(UTC)
    # The bad window for `undo` (chapter 12) ends at the whole second after the last delete.
    accident_end = math.ceil(time.time())
    t_iso = datetime.fromtimestamp(restore_to, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    say(
        f"10 more hires and 15 raises; then at {accident:%H:%M:%S} UTC a clean-up script with a "
        f"wrong filter deleted all {len(victims)} employees of {ACCIDENT_DEPARTMENT!r}. "
        f"We want the table as it was at {t_iso}, the second before."
    )
    live_count = len(scan_all(ddb, TABLE))
    print(f"\nLive table now: {live_count} employees.")

    section(6, "Archive the accident too (the restore needs T ≤ the watermark)")
    # The watermark trails the moment every shard was caught up by 2 s: let that pass T.
    for _ in range(3):
        time.sleep(max(0.0, restore_to + 3 - time.time()))
        steps.run("ddb-archiver", archive_run)
        mark = watermark()
        if mark is not None and mark.timestamp() >= restore_to:
            print(f"watermark {mark:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z ≥ T: T can be restored")
            break

    section(7, f"Restore the table as of {t_iso} into a new table")
    say(
        "The replayer plans the restore: a base snapshot valid at T plus the log from the "
        "base's log_from to T — or, as here, where the archive holds every change since the "
        "table was created, the log alone (our snapshot is only valid from 5 s after its scan "
        "ended, after T). It checks T against the watermark and the log for gaps, folds the log "
        "in DuckDB, writes the result into a new table and verifies it item by item."
    )
    code = steps.run(
        "ddb-replayer",
        ["restore", "--source-table-name", TABLE, "--target-table-name", RESTORED,
         "--archive", ARCHIVE, "--restore-date-time", t_iso],
    )  # fmt: skip
    if code == 0:
        show_restored(ddb, victims, live_count, steps)
        steps.run(
            "ddb-replayer",
            ["verify", "--target-table-name", RESTORED, "--source-table-name", TABLE,
             "--archive", ARCHIVE, "--restore-date-time", t_iso],
        )  # fmt: skip

    section(8, "Native protections alongside: PITR, backups, and which restore is fastest")
    say(
        "The archiver also manages DynamoDB's own protections. restore --strategy auto (the "
        "default) weighs native PITR (inside its window, 20+ minutes), the newest backup at or "
        "before T plus the archived log after it, and replay from the archive, then picks the "
        "fastest; --dry-run shows the estimates and why. Here T comes before PITR was enabled "
        "and before the backup, so only replay can rebuild it."
    )
    steps.run(
        "ddb-archiver",
        ["pitr", "--table-name", TABLE, "--enable", "--recovery-period-in-days", "7"],
    )
    steps.run(
        "ddb-archiver",
        ["backup", "create", "--table-name", TABLE, "--backup-name", "employee-demo"],
    )
    steps.run(
        "ddb-replayer",
        ["restore", "--source-table-name", TABLE, "--target-table-name", f"{TABLE}-auto",
         "--archive", ARCHIVE, "--restore-date-time", t_iso, "--dry-run"],
    )  # fmt: skip

    section(9, "What the archive holds, and that all of it is intact: status, check")
    steps.run("ddb-replayer", ["status", "--archive", ARCHIVE, "--table-name", TABLE])
    say(
        "Every change file carries a footer chaining it to the one before it in its shard; "
        "check reads them all (with --deep, every row too) and lists any damaged, missing or "
        "out-of-place file — none here."
    )
    steps.run("ddb-archiver", ["check", "--table-name", TABLE, "--archive", ARCHIVE, "--deep"])

    section(10, "Questions in SQL: ddb-replayer query")
    say(
        "The archive is Parquet that DuckDB (and Athena) query in place. How many changes of "
        "each kind, and when — and what did the raises add up to, per department?"
    )
    steps.run(
        "ddb-replayer",
        ["query", "--archive", ARCHIVE,
         "SELECT dt, event_name, count(DISTINCT event_id) AS changes, "
         "count(DISTINCT keys) AS employees, min(event_time) AS first, max(event_time) AS last "
         f"FROM changes WHERE table_name = '{TABLE}' GROUP BY ALL ORDER BY first"],
    )  # fmt: skip
    steps.run(
        "ddb-replayer",
        ["query", "--archive", ARCHIVE,
         "SELECT new_image->>'$.dept.S' AS dept, count(*) AS raises, "
         "sum(CAST(new_image->>'$.salary.N' AS DECIMAL(12, 2)) "
         "- CAST(old_image->>'$.salary.N' AS DECIMAL(12, 2))) AS added_salary "
         f"FROM changes WHERE table_name = '{TABLE}' AND event_name = 'MODIFY' "
         "GROUP BY ALL ORDER BY raises DESC"],
    )  # fmt: skip

    section(11, "One employee's history: ddb-replayer history")
    engineers = [k for k in sorted(staff) if k[0] == ACCIDENT_DEPARTMENT]
    raised_engineers = [k for k in engineers if k in raised]
    victim = staff[(raised_engineers or engineers)[0]]
    what = "hired, given a raise" if raised_engineers else "hired"
    say(f"{victim['name']['S']} (#{victim['emp_id']['N']}): {what}, lost in the accident.")
    steps.run(
        "ddb-replayer",
        ["history", "--table-name", TABLE, "--archive", ARCHIVE,
         "--key", json.dumps(key_of(victim))],
    )  # fmt: skip

    section(12, "Undo only the bad window, in the live table: ddb-replayer undo")
    # Good writes after the accident, a second after its window ends: they must stay.
    time.sleep(max(0.0, accident_end + 1 - time.time()))
    survivors = [k for k in sorted(staff) if k[0] != ACCIDENT_DEPARTMENT]
    later = rng.sample(survivors, k=5)
    for key in later:
        give_raise(ddb, rng, key_of(staff[key]))
    raised_later = {
        key: ddb.get_item(TableName=TABLE, Key=key_of(staff[key]), ConsistentRead=True)["Item"]
        for key in later
    }
    window_end = datetime.fromtimestamp(accident_end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    say(
        f"Meanwhile the application kept writing: 5 more raises after {window_end}. A restore "
        "into a new table (chapter 7) or a rollback would lose them. `undo` puts back, in the "
        f"live table, what changed in ({t_iso}, {window_end}] only — each key as it was at the "
        "window's start, written only where the item is still what the window left (else a "
        "conflict, untouched) — and leaves every later write alone."
    )
    undo = ["undo", "--table-name", TABLE, "--archive", ARCHIVE, "--from", t_iso,
            "--to", window_end]  # fmt: skip
    # The watermark must pass the window's end (undo drains the stream itself, too).
    time.sleep(max(0.0, accident_end + 3 - time.time()))
    steps.run("ddb-replayer", [*undo, "--dry-run"])
    if steps.run("ddb-replayer", undo) == 0:
        live_after = {(i["dept"]["S"], int(i["emp_id"]["N"])): i for i in scan_all(ddb, TABLE)}
        back = sum(1 for k in victims if (k["dept"]["S"], int(k["emp_id"]["N"])) in live_after)
        kept = sum(1 for key in later if live_after.get(key) == raised_later[key])
        print(
            f"\nLive table: {len(live_after)} employees — the {back} deleted are back, and "
            f"{kept} of the 5 later raises are still there."
        )
        if back != len(victims) or kept != len(later):
            steps.failed.append("undo did not bring back exactly the window")


def show_restored(ddb: Any, victims: list[dict[str, Any]], live_count: int, steps: Steps) -> None:
    from archiver.format.codec import canonical_json

    restored = {canonical_json(key_of(item)): item for item in scan_all(ddb, RESTORED)}
    live = {canonical_json(key_of(item)): item for item in scan_all(ddb, TABLE)}
    victim_keys = {canonical_json(key) for key in victims}
    back = [item for key, item in restored.items() if key not in live]
    print(
        f"\nLive table: {live_count} employees.  Restored table {RESTORED!r}: {len(restored)} "
        f"employees, {len(back)} of them deleted by the accident."
    )
    for item in sorted(back, key=lambda i: int(i["emp_id"]["N"]))[:5]:
        print(f"  back: {summary(item)}")
    # Nothing but the accident happened after T: restored = live + the deleted, item for item.
    same = set(restored) == set(live) | victim_keys and all(
        canonical_json(restored[key]) == canonical_json(item) for key, item in live.items()
    )
    if same:
        print(
            f"  ✓ restored = live table + the {len(victims)} deleted employees, item for item "
            "(binary photos, sets, maps and numbers included)"
        )
    else:
        print("  ✗ the restored table is not the live table plus the deleted employees")
        steps.failed.append("restored table differs from live + deleted")


def main() -> int:
    started = time.monotonic()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    shutil.rmtree(ARCHIVE, ignore_errors=True)
    print("ddb-stream-archive demo: archive a DynamoDB table's changes, then restore any second.")
    with local_aws() as url:
        import boto3

        say(f"Local AWS (moto) at {url}; archive in {ARCHIVE}/ (wiped first).")
        ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=url)
        steps = Steps()
        story(ddb, steps)
    print()
    print(f"━━━ Done in {time.monotonic() - started:.0f} s " + "━" * (WIDTH - 20))
    if steps.failed:
        print("Steps that failed: " + "; ".join(steps.failed))
        return 1
    say(
        f"The archive is still in {ARCHIVE}/ — query it with ddb-replayer query --archive "
        f"{ARCHIVE} '…' or DuckDB directly; docs/format.md describes every file and column."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
