"""A restore that stops dead — ``kill -9`` of the command, a crash right after saving its
progress — leaves nothing writing, and ``--resume`` writes exactly what the saved progress
does not count.

The writes go to :class:`bench.null_dynamodb.NullDynamoDB` recording every put and when it
arrived; every other call (creating, describing and tagging the target) is passed on to moto.
The kill is a real ``SIGKILL`` of a ``ddb-replayer restore`` subprocess with two writer
processes; for several tables written side by side (a process per table, two writer processes
each), a real ``SIGKILL`` or ``SIGTERM`` of the command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from archiver.aws.clients import AwsSettings
from archiver.format import layout
from archiver.format.codec import canonical_json, key_of
from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from bench.bench_restore_cli import RESTORE_AT, build_archive, replayer_command
from bench.bench_restore_cli import TABLE as BENCH_TABLE
from bench.bench_restore_write import make_items
from bench.null_dynamodb import NullDynamoDB
from replayer.write.batch_writers import ClientFactory
from replayer.write.restore_state import CHUNK_ITEMS, TAG_RESTORE_ID
from tests.replay_helpers import TABLE
from tests.test_restore_pacing import archive_small_items, restore

# -- what a saved progress file counts --------------------------------------------------------


def keys_of(accepted: Iterable[str], names: tuple[str, ...]) -> list[str]:
    """The canonical keys of items as the endpoint recorded them."""
    return [canonical_json(key_of(json.loads(text), list(names))) for text in accepted]


def covered(all_keys: list[str], progress: dict[str, Any]) -> set[str]:
    """The keys in the chunks a saved progress counts as acknowledged: the restore's partition
    files are the keys split by ``md5_number(keys) % P`` and ordered by key."""
    partitions = int(progress["partitions"])
    con = duckdb.connect()
    con.register("k", pa.table({"keys": all_keys}))
    rows = con.execute(
        f"SELECT (md5_number(keys) % {partitions})::INTEGER AS p, keys FROM k ORDER BY keys"
    ).fetchall()
    out: set[str] = set()
    for p in range(partitions):
        ordered = [k for q, k in rows if q == p]
        chunks = set(range(progress["done"][p])) | set(progress.get("ahead", [[]] * partitions)[p])
        for c in chunks:
            out.update(ordered[c * CHUNK_ITEMS : (c + 1) * CHUNK_ITEMS])
    return out


def restore_id_of(ddb: Any, table: str) -> str:
    arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]}
    return tags[TAG_RESTORE_ID]


# -- a crash right after a progress save ------------------------------------------------------


class Crash(BaseException):
    """The process dies here: nothing after it runs (no further save)."""


def test_a_crash_right_after_saving_progress_is_resumed_writing_exactly_the_rest(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 1500
    items = archive_small_items(archive, n)
    all_keys = sorted(canonical_json(key_of(i, ["pk"])) for i in items)
    write_json = archive.write_json
    dead: list[bool] = []

    def write_then_die(rel: str, doc: Any) -> None:
        """Progress files are written until one counts 4 chunks or more; the process dies
        right after writing it (nothing is written after that)."""
        progress = rel.startswith(layout.restores_dir(TABLE))
        if progress and dead:
            return
        write_json(rel, doc)
        if progress and doc["state"] == "writing" and sum(doc["done"]) >= 4:
            dead.append(True)
            raise Crash

    monkeypatch.setattr(archive, "write_json", write_then_die)
    options: dict[str, Any] = {"verify": False, "workers": 4, "max_write_rate": 1500.0}
    with NullDynamoDB(record=True) as first:
        factory = ClientFactory(AwsSettings(endpoint_url=first.url))
        with pytest.raises(Crash):
            restore(archive, "crashed", client_factory=factory, **options)
    monkeypatch.setattr(archive, "write_json", write_json)
    saved = archive.read_json(layout.restore_progress(TABLE, restore_id_of(ddb, "crashed")))
    kept = covered(all_keys, saved)
    assert 4 * CHUNK_ITEMS <= len(kept) < n
    assert kept <= set(keys_of(first.accepted, ("pk",)))  # it counts only what arrived

    with NullDynamoDB(record=True) as second:
        factory = ClientFactory(AwsSettings(endpoint_url=second.url))
        outcome = restore(archive, "crashed", resume=True, client_factory=factory, **options)
    resumed = keys_of(second.accepted, ("pk",))
    assert sorted(second.accepted.values()) == [1] * len(resumed)  # each once
    assert set(resumed) == set(all_keys) - kept  # exactly what the saved progress lacks
    assert outcome.written.skipped == len(kept) and outcome.written.items == n - len(kept)


# -- kill -9 of the restore -------------------------------------------------------------------


def session_processes(session: int) -> list[str]:
    """Live processes of a session (Linux /proc): ``pid state command``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            out.append(f"{entry.name} {state} {cmdline}")
    return out


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


PROCESSES, CALLS, RATE = 2, 4, 2_000.0
GRACE = 2.0  # for the writers to see their parent gone, and the calls then in flight to land


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_restore_stops_its_writers_and_resume_writes_the_rest(
    moto_url: str, tmp_path: Path
) -> None:
    """40,000 items, two writer processes of 4 calls each, at most 2,000 items/s. SIGKILL of
    the command once 2,000 puts arrived: within the grace every process of it is gone and no put
    arrives after that; ``--resume`` then writes exactly what the saved progress lacks."""
    n = 40_000
    root = tmp_path / "archive"
    build_archive(root, make_items(n))
    names = ("pk", "sk")
    with NullDynamoDB(record=True, forward=moto_url) as endpoint:
        command = [
            *replayer_command(), "restore", "--source-table-name", BENCH_TABLE,
            "--target-table-name", "killed", "--archive", str(root),
            "--restore-date-time", iso_ms(RESTORE_AT), "--strategy", "replay", "--no-verify",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint.url}
        proc = subprocess.Popen(
            [*command, "--write-workers", f"{PROCESSES}x{CALLS}", "--max-write-rate", str(RATE)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(lambda: endpoint.items >= 2_000 or proc.poll() is not None, 120, "writes")
            assert proc.poll() is None, proc.communicate()
            assert len(session_processes(proc.pid)) >= 1 + PROCESSES  # parent, fork server, writers
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            proc.wait()
            wait_for(lambda: not session_processes(proc.pid), GRACE, "the writers to exit")
            gone = time.monotonic() - killed
            time.sleep(2.0)  # long enough for a writer left behind to show
        finally:
            if proc.poll() is None:
                proc.kill()
        late = sum(puts for when, puts in endpoint.arrivals if when > killed + GRACE)
        in_grace = sum(puts for when, puts in endpoint.arrivals if killed < when <= killed + GRACE)
        assert late == 0
        # The calls in flight, and what the writers sent before they saw the parent gone.
        assert in_grace <= PROCESSES * CALLS * CHUNK_ITEMS + RATE * GRACE

        archive = Archive.open(str(root))
        # A kill inside an atomic save leaves a hidden temporary beside the file: find skips it.
        (progress_file,) = archive.find(layout.restores_dir(BENCH_TABLE), ".json")
        saved = archive.read_json(progress_file)
        all_keys = [canonical_json(key_of(item, names)) for item in make_items(n)]
        kept = covered(all_keys, saved)
        written = set(keys_of(endpoint.accepted, names))
        assert kept <= written
        # Written but not counted: the calls in flight, and what was acknowledged after the
        # last save (saved every 0.2 s; a second of writes is a generous bound).
        assert len(written - kept) <= PROCESSES * CALLS * CHUNK_ITEMS + RATE * 1.0
        print(f"every process gone {gone:.2f} s after the kill; puts in the {GRACE} s after "
              f"it: {in_grace}, later: {late}; written but not in the saved progress: "
              f"{len(written - kept)} of {len(written)}")  # fmt: skip

        before = Counter(endpoint.accepted)
        done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        resumed = endpoint.accepted - before
        assert set(keys_of(resumed, names)) == set(all_keys) - kept
        assert sorted(resumed.values()) == [1] * len(resumed)
        assert set(keys_of(endpoint.accepted, names)) == set(all_keys)  # nothing lost


# -- several tables side by side: kill -9 or SIGTERM of the command ---------------------------

SIDE = ("left", "right")


def side_items(table: str, n: int) -> list[dict[str, Any]]:
    """The bench's items, marked with their table: the endpoint counts items by their text."""
    return [{**item, "table": {"S": table}} for item in make_items(n)]


def accepted_of(
    endpoint: NullDynamoDB, table: str, counts: Counter[str] | None = None
) -> Counter[str]:
    """What the endpoint accepted of ``table``'s items (of ``counts``: all it accepted)."""
    if counts is None:
        with endpoint.lock:
            counts = Counter(endpoint.accepted)
    mark = json.dumps({"S": table}, sort_keys=True)
    return Counter({text: n for text, n in counts.items() if f'"table": {mark}' in text})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["kill-9", "sigterm", "ctrl-c"],
)
def test_a_stop_of_tables_side_by_side_stops_every_writer_and_resume_writes_the_rest(
    moto_url: str, tmp_path: Path, signum: int, group: bool
) -> None:
    """Two tables of 24,000 items side by side, each in its process with two writer processes
    of 4 calls, together at most 2,000 items/s. The command is stopped once both tables took
    1,000 puts: by SIGKILL (every process of it gone within the grace, through the table
    processes watching it), or by SIGTERM to the command, or SIGINT to its whole process group
    as a Ctrl-C at a terminal sends it (each table stops as a Ctrl-C stops a single restore: it
    saves its progress and says so; the command's summary says both are unfinished; exit 130).
    No put arrives after the grace; ``--resume`` then writes of each table exactly what its
    saved progress lacks, each item once."""
    n, rate = 24_000, RATE
    root = tmp_path / "archive"
    for table in SIDE:
        build_archive(root, side_items(table, n), table=table, table_id=f"{table}-id")
    names = ("pk", "sk")
    with NullDynamoDB(record=True, forward=moto_url) as endpoint:
        command = [
            *replayer_command(), "restore", "--source-table-name", SIDE[0],
            "--source-table-name", SIDE[1], "--target-table-suffix=-stopped",
            "--archive", str(root), "--restore-date-time", iso_ms(RESTORE_AT),
            "--strategy", "replay", "--no-verify",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint.url}
        proc = subprocess.Popen(
            [*command, "--parallel-tables", "2", "--write-workers", f"{2 * PROCESSES}x{CALLS}",
             "--max-write-rate", str(rate)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: (
                    all(sum(accepted_of(endpoint, t).values()) >= 1_000 for t in SIDE)
                    or proc.poll() is not None
                ),
                120,
                "writes into both tables",
            )
            assert proc.poll() is None, proc.communicate()
            # The command and its fork server; per table its process, fork server and writers.
            assert len(session_processes(proc.pid)) >= 2 + len(SIDE) * (2 + PROCESSES)
            (os.killpg if group else os.kill)(proc.pid, signum)
            stopped = time.monotonic()
            out, err = proc.communicate(timeout=60)
            wait_for(lambda: not session_processes(proc.pid), GRACE, "every process to exit")
            gone = time.monotonic() - stopped
            time.sleep(2.0)  # long enough for a writer left behind to show
        finally:
            if proc.poll() is None:
                proc.kill()
        late = sum(puts for when, puts in endpoint.arrivals if when > stopped + GRACE)
        in_grace = sum(
            puts for when, puts in endpoint.arrivals if stopped < when <= stopped + GRACE
        )
        assert late == 0
        in_flight = len(SIDE) * PROCESSES * CALLS * CHUNK_ITEMS
        assert in_grace <= in_flight + rate * GRACE
        if signum != signal.SIGKILL:
            assert proc.returncode == 130, out + err
            for table in SIDE:
                assert re.search(rf"^{table} -> {table}-stopped: interrupted after [\d.]+ s "
                                 r"\(--resume continues it\)$", out, re.M), out  # fmt: skip
                assert f"[{table}] table {table}-stopped is partly written; continue with" in err
            assert "interrupted" in err

        archive = Archive.open(str(root))
        before = Counter(endpoint.accepted)
        kept: dict[str, set[str]] = {}
        for table in SIDE:
            (progress_file,) = archive.find(layout.restores_dir(table), ".json")
            saved = archive.read_json(progress_file)
            all_keys = [canonical_json(key_of(item, names)) for item in side_items(table, n)]
            kept[table] = covered(all_keys, saved)
            written = set(keys_of(accepted_of(endpoint, table, before), names))
            assert kept[table] <= written
            # Written but not counted: the calls in flight, and what was acknowledged after the
            # last save (saved every 0.2 s; a second of writes is a generous bound).
            assert len(written - kept[table]) <= PROCESSES * CALLS * CHUNK_ITEMS + rate * 1.0
        print(f"every process gone {gone:.2f} s after signal {signum}; puts in the {GRACE} s "
              f"after it: {in_grace}, later: {late}")  # fmt: skip

        done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        resumed = endpoint.accepted - before
        for table in SIDE:
            all_keys = [canonical_json(key_of(item, names)) for item in side_items(table, n)]
            mine = accepted_of(endpoint, table, resumed)
            assert set(keys_of(mine, names)) == set(all_keys) - kept[table]
            assert sorted(mine.values()) == [1] * len(mine)  # each once
            everything = accepted_of(endpoint, table, Counter(endpoint.accepted))
            assert set(keys_of(everything, names)) == set(all_keys)  # nothing lost
            left = n - len(kept[table])
            assert f"{table} -> {table}-stopped: restored, {left:,} items written " in done.stdout
