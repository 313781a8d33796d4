"""``ddb-replayer serve`` as users run it: the command, then the AWS CLI and PynamoDB pointed
at it with ``--endpoint-url`` / ``host``, unchanged.

The server runs as its own process (``python -m replayer.cli serve --port 0``) and is read
through the URL it prints; the AWS CLI is AWS CLI v1 (``awscli``, which bundles its own
botocore) run as a subprocess, PynamoDB in-process. Also: the command's safety checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from tests.replay_helpers import TABLE, at, replayer, write_coverage
from tests.serve_helpers import describe, put_items

ROOT = Path(__file__).resolve().parents[1]


def history(archive: Archive) -> None:
    """``orders`` (pk S, sk N): 30 items at +10 s, their ``status`` changed at +20 s."""
    write_coverage(archive, watermark=at(100))
    describe(
        archive,
        keys=(("pk", "S"), ("sk", "N")),
        gsis=[
            {
                "IndexName": "by_status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        attributes={"status": "S"},
    )
    first = [
        {"pk": {"S": f"c{i % 3}"}, "sk": {"N": str(i)}, "status": {"S": "new"}} for i in range(30)
    ]
    seq = put_items(archive, first, ["pk", "sk"], at=at(10))
    later = [dict(item, status={"S": "paid"}) for item in first[:10]]
    put_items(archive, later, ["pk", "sk"], start_seq=seq, at=at(20))


@pytest.fixture
def server(archive: Archive, archive_path: Path) -> Iterator[str]:
    """``ddb-replayer serve`` over the archive, in a process of its own; yields its URL."""
    history(archive)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replayer.cli",
            "serve",
            "--archive",
            str(archive_path),
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ddb-replayer serve: http://127.0.0.1:"), (
            first + process.stderr.read()
        )
        url = first.split()[2]
        defaults = process.stdout.readline()
        assert defaults.strip() == f"{TABLE} at {iso_ms(at(100))} (latest restorable time)"
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


def aws(url: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "awscli",
            "dynamodb",
            *args,
            "--endpoint-url",
            url,
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_aws_cli_reads_the_past(server: str) -> None:
    before = f"{TABLE}@{iso_ms(at(15))}"
    key = {"pk": {"S": "c0"}, "sk": {"N": "0"}}
    both = aws(
        server,
        "batch-get-item",
        "--request-items",
        json.dumps({before: {"Keys": [key]}, TABLE: {"Keys": [key]}}),
    )
    assert both["Responses"][before][0]["status"] == {"S": "new"}
    assert both["Responses"][TABLE][0]["status"] == {"S": "paid"}
    # the CLI pages by itself; --page-size makes it fetch 4 at a time
    queried = aws(
        server,
        "query",
        "--table-name",
        before,
        "--key-condition-expression",
        "pk = :p AND sk > :s",
        "--expression-attribute-values",
        '{":p": {"S": "c1"}, ":s": {"N": "5"}}',
        "--page-size",
        "4",
    )
    assert [int(i["sk"]["N"]) for i in queried["Items"]] == [7, 10, 13, 16, 19, 22, 25, 28]
    paid = aws(
        server,
        "scan",
        "--table-name",
        TABLE,
        "--index-name",
        "by_status",
        "--filter-expression",
        "#s = :s",
        "--expression-attribute-names",
        '{"#s": "status"}',
        "--expression-attribute-values",
        '{":s": {"S": "paid"}}',
        "--select",
        "COUNT",
    )
    assert paid["Count"] == 10 and paid["ScannedCount"] == 30
    described = aws(server, "describe-table", "--table-name", before)["Table"]
    assert described["ItemCount"] == 30 and described["TableName"] == before


def model_at(url: str, name: str) -> type[Model]:
    class Order(Model):
        class Meta:
            table_name = name
            host = url
            region = "us-east-1"
            aws_access_key_id = "anything"
            aws_secret_access_key = "anything"

        pk = UnicodeAttribute(hash_key=True)
        sk = NumberAttribute(range_key=True)
        status = UnicodeAttribute(null=True)

    return Order


def test_pynamodb_reads_the_past(server: str) -> None:
    before = model_at(server, f"{TABLE}@{iso_ms(at(15))}")
    now = model_at(server, TABLE)
    assert before.get("c0", 0).status == "new"
    assert now.get("c0", 0).status == "paid"
    assert [o.sk for o in before.query("c2", before.sk >= 20)] == [20, 23, 26, 29]
    assert [o.sk for o in now.query("c2", scan_index_forward=False, limit=2)] == [29, 26]
    assert sum(1 for _ in now.scan(now.status == "paid")) == 10
    assert now.count("c1") == 10
    with pytest.raises(Exception, match="read-only"):
        now(pk="c9", sk=1).save()


def test_a_non_loopback_address_needs_allow_remote(
    archive: Archive, archive_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history(archive)
    code, _, err = replayer(capsys, "serve", "--archive", str(archive_path), "--host", "0.0.0.0")
    assert code == 4
    assert "not a loopback address" in err and "--allow-remote" in err
    code, _, err = replayer(
        capsys, "serve", "--archive", str(archive_path), "--host", "0.0.0.0", "--allow-remote"
    )
    assert code == 2
    assert "--allow-remote needs --credentials-file" in err
    empty = archive_path.parent / "credentials"
    empty.write_text("[default]\nregion = x\n")
    code, _, err = replayer(
        capsys,
        "serve",
        "--archive",
        str(archive_path),
        "--credentials-file",
        str(empty),
    )
    assert code == 2 and "no section with aws_access_key_id" in err
