"""``ddb-archiver run`` end to end against a live stream: throughput, lag, CPU, memory.

    python -m bench.bench_poller [--shards 10] [--rate 1000] [--seconds 120]
        [--flush-seconds 10] [--processes N] [--split-every S] [--backlog-seconds B]
        [--parser raw|botocore|both]

Starts moto's server on loopback (DescribeTable and the table's stream label), a live
DynamoDB Streams endpoint in a process of its own (``bench/live_streams.py``: ``--shards``
shards each receiving ``--rate`` records a second, so its CPU is not the poller's), and the
real command — ``ddb-archiver run --table-name bench --archive <temp folder>`` — as a
subprocess pointed at both through ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_DYNAMODB_STREAMS``. Every second it samples the poller's process tree
(CPU seconds and resident memory from ``/proc``, workers included), the endpoint's counters
(records arrived, records read) and ``coverage.json``'s watermark; after ``--seconds`` it stops
the poller with SIGTERM (it flushes and exits) and prints:

* records read per second over the run and over its second half (sustained), and whether the
  poller kept up (records read against records arrived at the end);
* CPU seconds per 1,000 records read, the poller's whole process tree;
* the watermark's lag (now − watermark in ``coverage.json``) from one flush interval after the
  first watermark on: median and maximum; the maximum is what ``--flush-seconds`` + a few
  seconds must bound;
* resident memory (the tree's sum) at 25 %, 50 %, 75 % and 100 % of the run, and its maximum.

``--parser botocore`` runs today's code path before the orjson one
(``ARCHIVER_GETRECORDS_PARSER=botocore``: botocore parses each page); ``both`` runs the two
one after the other on fresh streams and archives and prints them side by side.
``--backlog-seconds`` starts the shards that many seconds in the past: the poller first
drains a backlog, which measures its ceiling rather than the offered rate.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import orjson
from moto.server import ThreadedMotoServer

from archiver.capture.raw_records import PARSER_ENV

TABLE = "bench"
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root: int) -> list[int]:
    """``root`` and every process descending from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_and_rss(pids: list[int]) -> tuple[float, float]:
    """CPU seconds (user + system) and resident MiB summed over ``pids``."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS
        rss += pages * _PAGE / 2**20
    return cpu, rss


@dataclass
class Sample:
    at: float
    cpu: float
    rss: float
    produced: int
    read: int
    pages: int
    lag: float | None
    server_cpu: float = 0.0
    root_cpu: float = 0.0  # the poller itself, without its workers


@dataclass
class Result:
    parser: str
    samples: list[Sample] = field(default_factory=list)
    exit_code: int | None = None
    stop_seconds: float = 0.0
    processes: int = 1

    def _split(self, read: int) -> str:
        if self.processes <= 1:
            return ""
        root = self.samples[-1].root_cpu - self.samples[0].root_cpu
        return f", of which the poller {1000 * root / max(read, 1):.3f} s per 1,000"

    def line(self, flush_seconds: float) -> str:
        first, last = self.samples[0], self.samples[-1]
        seconds = last.at - first.at
        read = last.read - first.read
        half = self.samples[len(self.samples) // 2]
        sustained = (last.read - half.read) / max(last.at - half.at, 1e-9)
        cpu = last.cpu - first.cpu
        # Steady state: from one flush interval after the first watermark on (before it, the
        # lag says how long the poller took to start).
        known = [s.at for s in self.samples if s.lag is not None]
        steady = (known[0] if known else last.at) + flush_seconds
        lags = [s.lag for s in self.samples if s.lag is not None and s.at >= steady]
        quarter = [self.samples[int(i * (len(self.samples) - 1) / 4)].rss for i in range(1, 5)]
        behind = last.produced - last.read
        pages = last.pages - first.pages
        return (
            f"{self.parser:8s} processes {self.processes}: read {read / seconds:7.0f} rec/s "
            f"(second half {sustained:7.0f}); behind at the end {behind} records; "
            f"{read / max(pages, 1):.0f} records a page; "
            f"CPU {1000 * cpu / max(read, 1):.3f} s per 1,000 records "
            f"({cpu / seconds:.2f} cores{self._split(read)}); watermark lag median "
            f"{statistics.median(lags) if lags else float('nan'):.1f} s, max "
            f"{max(lags) if lags else float('nan'):.1f} s; RSS MiB at 25/50/75/100 % "
            f"{'/'.join(f'{r:.0f}' for r in quarter)}, max {max(s.rss for s in self.samples):.0f}; "
            f"exit {self.exit_code} after SIGTERM in {self.stop_seconds:.1f} s; the endpoint used "
            f"{(last.server_cpu - first.server_cpu) / seconds:.2f} cores; load average "
            f"{os.getloadavg()[0]:.1f}"
        )


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as answer:
        return dict(orjson.loads(answer.read()))


def _lag(archive: Path) -> float | None:
    try:
        doc = orjson.loads((archive / "_state" / TABLE / "coverage.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    watermark = doc.get("watermark")
    if not watermark:
        return None
    at = datetime.fromisoformat(watermark.replace("Z", "+00:00"))
    return (datetime.now(UTC) - at).total_seconds()


def measure(args: argparse.Namespace, parser_name: str, moto_url: str, folder: Path) -> Result:
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_url)
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=TABLE)
        time.sleep(0.5)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    label = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamLabel"]
    archive = folder / f"archive-{parser_name}"
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.live_streams",
            "--table-name",
            TABLE,
            "--label",
            label,
            "--shards",
            str(args.shards),
            "--rate",
            str(args.rate),
            "--backlog-seconds",
            str(args.backlog_seconds),
            *(["--split-every", str(args.split_every)] if args.split_every else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    poller: subprocess.Popen[bytes] | None = None
    result = Result(parser_name, processes=args.processes or 1)
    try:
        assert live.stdout is not None
        streams_url = live.stdout.readline().split()[1]
        env = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB_STREAMS=streams_url)
        if parser_name == "botocore":
            env[PARSER_ENV] = "botocore"
        else:
            env.pop(PARSER_ENV, None)
        command = [
            str(Path(sys.executable).with_name("ddb-archiver")),
            "run",
            "--table-name",
            TABLE,
            "--archive",
            str(archive),
            "--flush-seconds",
            str(args.flush_seconds),
            "--progress-seconds",
            "30",
            *(["--processes", str(args.processes)] if args.processes else []),
        ]
        log = open(folder / f"run-{parser_name}.log", "wb")  # noqa: SIM115 (closed below)
        poller = subprocess.Popen(command, env=env, stderr=log, stdout=log)
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            time.sleep(1.0)
            cpu, rss = cpu_and_rss(tree(poller.pid))
            root_cpu = cpu_and_rss([poller.pid])[0]
            stats = _stats(streams_url)
            result.samples.append(
                Sample(
                    time.monotonic(),
                    cpu,
                    rss,
                    stats["produced"],
                    stats["read"],
                    stats["pages"],
                    _lag(archive),
                    cpu_and_rss([live.pid])[0],
                    root_cpu,
                )
            )
            if poller.poll() is not None:
                break
        stopping = time.monotonic()
        poller.send_signal(signal.SIGTERM)
        result.exit_code = poller.wait(timeout=120)
        result.stop_seconds = time.monotonic() - stopping
        log.close()
        if result.exit_code != 0:
            print((folder / f"run-{parser_name}.log").read_text()[-3000:], file=sys.stderr)
    finally:
        if poller is not None and poller.poll() is None:
            poller.kill()
        live.terminate()
        live.wait(timeout=10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s per shard")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--flush-seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--split-every", type=float, default=None, metavar="S")
    parser.add_argument("--backlog-seconds", type=float, default=0.0, metavar="B")
    parser.add_argument("--parser", choices=["raw", "botocore", "both"], default="raw")
    parser.add_argument("--keep", action="store_true", help="keep the archives and logs")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    for name in [n for n in os.environ if n.startswith(("AWS_", "BOTO"))]:
        del os.environ[name]
    folder = Path(tempfile.mkdtemp(prefix="bench-poller-"))
    empty = folder / "aws-config"
    empty.write_text("")
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=moto_url,
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
    )
    print(
        f"{args.shards} shards x {args.rate:.0f} records/s = {args.shards * args.rate:.0f} "
        f"records/s offered, {args.seconds:.0f} s, --flush-seconds {args.flush_seconds:g}"
        + (f", a split every {args.split_every:g} s" if args.split_every else "")
        + (f", {args.backlog_seconds:g} s of backlog" if args.backlog_seconds else ""),
        flush=True,
    )
    try:
        parsers = ["botocore", "raw"] if args.parser == "both" else [args.parser]
        for name in parsers:
            print(measure(args, name, moto_url, folder).line(args.flush_seconds), flush=True)
    finally:
        server.stop()
        if args.keep:
            print(f"kept in {folder}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
