"""Both CLIs under faults: credentials never reach a log line, an endpoint where nothing
listens is named in one line, and so is the fix for missing credentials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from archiver.cliutil import REDACTED, redact, unreachable_endpoint
from replayer.cli import main as replayer_main
from tests.conftest import create_table

ROOT = Path(__file__).resolve().parents[1]
KEY_ID = "AKIAMARKERKEYID00042"
SECRET = "SecretMarker/secret+marker42"
TOKEN = "SessionTokenMarker//token+marker42=="
MARKERS = (KEY_ID, SECRET, TOKEN, "SecretMarker", "SessionTokenMarker", "MARKERKEYID")


def _cli(tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a CLI as a process, as a user does, with marker credentials in its environment."""
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN)
    return subprocess.run(
        [sys.executable, "-m", f"{tool}.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
    )


def _assert_no_credentials(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"{marker} is in the output"


@pytest.mark.slow  # two CLI processes against moto, all three services
def test_debug_logs_show_requests_but_never_credentials(ddb: Any, s3: Any) -> None:
    """DynamoDB, Streams and S3 calls, logged at DEBUG: headers, canonical requests and
    signatures are all in botocore's lines, redacted."""
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    s3.create_bucket(Bucket="archive-bucket")
    archive = "s3://archive-bucket/ddb"
    run = _cli(
        "archiver", "run", "--table-name", "orders", "--archive", archive, "--once", "--debug"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    status = _cli("replayer", "status", "--archive", archive, "--debug")
    assert status.returncode == 0, status.stderr[-2000:]
    # run called all three services, each through a signed request.
    assert "DynamoDB_20120810.DescribeTable" in run.stderr
    assert "DynamoDBStreams_20120810.GetRecords" in run.stderr
    assert "/archive-bucket/ddb/changes/" in run.stderr
    for result in (run, status):
        # The lines that used to carry the credentials are still logged…
        assert "DEBUG" in result.stderr
        assert "'Authorization': b'" in result.stderr
        assert "x-amz-security-token:" in result.stderr
        # …with the credentials replaced.
        assert f"'X-Amz-Security-Token': b'{REDACTED}'" in result.stderr
        _assert_no_credentials(result.stderr + result.stdout)


@pytest.mark.parametrize(
    "line",
    [
        f"headers={{'Authorization': b'AWS4-HMAC-SHA256 Credential={KEY_ID}/20260131/us-east-1/"
        f"s3/aws4_request, SignedHeaders=host, Signature={'a' * 64}', "
        f"'X-Amz-Security-Token': b'{TOKEN}'}}",
        f"CanonicalRequest:\nGET\n/\n\nhost:x\nx-amz-security-token:{TOKEN}\n\nhost",
        f"Signature:\n{'0123456789abcdef' * 4}",
        f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        f"{KEY_ID}%2F20260131&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={'b' * 64}",
        f"<Credentials><AccessKeyId>{KEY_ID}</AccessKeyId><SecretAccessKey>{SECRET}"
        f"</SecretAccessKey><SessionToken>{TOKEN}</SessionToken></Credentials>",
        f'{{"AccessKeyId": "{KEY_ID}", "SecretAccessKey": "{SECRET}", "Token": "{TOKEN}", '
        f'"Expiration": "2026-01-31T12:00:00Z"}}',
        f'{{"roleCredentials": {{"accessKeyId": "{KEY_ID}", "secretAccessKey": "{SECRET}", '
        f'"sessionToken": "{TOKEN}", "expiration": 1769860800000}}}}',
        f"aws_access_key_id = {KEY_ID}\naws_secret_access_key={SECRET}\naws_session_token={TOKEN}",
        f"{{'aws_access_key_id': '{KEY_ID}', 'aws_session_token': '{TOKEN}'}}",
    ],
    ids=[
        "headers",
        "canonical-request",
        "signature",
        "presigned",
        "sts-xml",
        "container-json",
        "sso-json",
        "ini",
        "kw",
    ],
)
def test_redaction_covers_every_form_credentials_take(line: str) -> None:
    clean = redact(line)
    assert REDACTED in clean
    _assert_no_credentials(clean)
    assert "'0123456789abcdef'" not in clean and "a" * 64 not in clean and "b" * 64 not in clean


def test_redaction_keeps_ordinary_lines() -> None:
    line = 'Response body: b\'{"Table":{"TableName":"orders","NextToken":"n1"}}\''
    assert redact(line) == line


# -- endpoints nothing listens on -------------------------------------------------------------


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow  # botocore retries a refused connection for some seconds before giving up
def test_an_unreachable_s3_endpoint_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = _dead_endpoint()
    code = replayer_main(["status", "--archive", "s3://archive-bucket/ddb", "--endpoint-url", dead])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ddb-replayer: error: could not connect to the S3 endpoint {dead} (")
    assert "AWS_ENDPOINT_URL_S3" in err
    assert "unexpected failure" not in err


def test_an_unreachable_dynamodb_endpoint_names_the_service_and_call() -> None:
    """With one --endpoint-url for every service the URL alone does not say which one failed."""
    dead = _dead_endpoint()
    client = boto3.client(
        "dynamodbstreams",
        endpoint_url=dead,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(EndpointConnectionError) as caught:
        client.list_streams()
    assert unreachable_endpoint(caught.value) == (
        f"could not connect to the DynamoDB Streams endpoint {dead} (ListStreams): check "
        "--endpoint-url, AWS_ENDPOINT_URL_DYNAMODB_STREAMS or AWS_ENDPOINT_URL, --region and "
        "the network"
    )
    wrapped = RuntimeError("reading the stream failed")
    wrapped.__cause__ = caught.value
    assert unreachable_endpoint(wrapped) == unreachable_endpoint(caught.value)
    assert unreachable_endpoint(RuntimeError("something else")) is None


# -- failures -------------------------------------------------------------------------------

_FAILING = """
import sys
import replayer.commands.status

def fail(args):
    raise RuntimeError("the call to {url} failed")

replayer.commands.status.main = fail
from replayer.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_failure_is_reported_with_its_credentials_redacted(tmp_path: Path, debug: bool) -> None:
    """An exception's text can quote a signed URL; the error line (and with --debug, the
    logged traceback) shows it redacted."""
    url = (f"https://b.s3.amazonaws.com/k?X-Amz-Credential={KEY_ID}%2F20260131"
           f"&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={'b' * 64}")  # fmt: skip
    argv = ["status", "--archive", str(tmp_path), *(["--debug"] if debug else [])]
    done = subprocess.run(
        [sys.executable, "-c", _FAILING.format(url=url), *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert done.returncode == 1
    _assert_no_credentials(done.stderr + done.stdout)
    assert REDACTED in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ddb-replayer: unexpected failure: RuntimeError: the call to https://")
    if debug:
        assert "Traceback (most recent call last)" in done.stderr
        assert "(rerun with --debug" not in last
    else:
        assert len(done.stderr.strip().splitlines()) == 1
        assert last.endswith("(rerun with --debug for details)")


@pytest.mark.parametrize(
    "argv",
    [
        ["ddb-archiver", "run", "--table-name", "orders", "--once"],
        ["ddb-archiver", "snapshot", "--table-name", "orders"],
        ["ddb-replayer", "restore", "--source-table-name", "orders", "--target-table-name",
         "copy", "--use-latest-restorable-time", "--strategy", "pitr"],
    ],
    ids=["run", "snapshot", "restore"],
)  # fmt: skip
def test_no_region_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    from archiver.cli import main as archiver_main

    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    main = archiver_main if argv[0] == "ddb-archiver" else replayer_main
    assert main([*argv[1:], "--archive", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"{argv[0]}: error: no AWS region: set AWS_REGION or pass --region\n"


# -- no credentials -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["ddb-archiver", "run", "--table-name", "orders", "--archive", "{local}", "--once"],
        ["ddb-archiver", "snapshot", "--table-name", "orders", "--archive", "{local}"],
        ["ddb-archiver", "pitr", "--table-name", "orders", "--status"],
        ["ddb-archiver", "backup", "list", "--table-name", "orders"],
        ["ddb-replayer", "status", "--archive", "s3://archive-bucket/ddb"],
        ["ddb-replayer", "restore", "--source-table-name", "orders", "--target-table-name",
         "copy", "--use-latest-restorable-time", "--strategy", "pitr", "--archive", "{local}"],
        ["ddb-replayer", "diff", "--table-name", "orders", "--other-table-name", "copy"],
    ],
    ids=["run", "snapshot", "pitr", "backup", "status-s3", "restore", "diff"],
)  # fmt: skip
def test_no_credentials_is_one_line_naming_where_they_come_from_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """No credentials anywhere (the autouse fixture already points the config files at an
    empty file and turns the instance metadata lookup off): every command, DynamoDB, Streams
    or S3 first, says so in the same line — the CLI wrapper maps it, not each command."""
    from archiver.cli import main as archiver_main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).read_text() == ""
    main = archiver_main if argv[0] == "ddb-archiver" else replayer_main
    code = main([arg.format(local=tmp_path / "archive") for arg in argv[1:]])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert not (tmp_path / "archive").exists()  # nothing half-written
    assert err == (
        f"{argv[0]}: error: no AWS credentials found: pass --profile or set AWS_PROFILE, or set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run with an instance, task or function "
        "role)\n"
    )


def test_no_credentials_wrapped_in_a_commands_own_error_still_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that translates the failure (keeping it as the cause) or fails in a task
    group still gets the credentials line, not its own message or "unexpected failure"."""
    from botocore.exceptions import NoCredentialsError

    import replayer.commands.status
    from replayer.exceptions import ReplayError

    def fail(args: Any) -> int:
        try:
            raise ExceptionGroup("tasks", [NoCredentialsError()])
        except ExceptionGroup as group:
            raise ReplayError("reading the archive failed") from group

    monkeypatch.setattr(replayer.commands.status, "main", fail)
    assert replayer_main(["status", "--archive", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddb-replayer: error: no AWS credentials found: pass --profile")
    assert len(err.splitlines()) == 1


def test_aws_region_alone_is_honoured_by_every_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """botocore reads only AWS_DEFAULT_REGION; a user who sets AWS_REGION (as Lambda, the AWS
    CLI v2 and our own messages do) gets a working command, not "no AWS region"."""
    import boto3

    from archiver.cli import main as archiver_main

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert archiver_main(["pitr", "--table-name", "orders", "--status"]) == 0
    assert "no AWS region" not in capsys.readouterr().err
