"""``ddb-replayer serve`` over HTTPS: ``--tls-cert``/``--tls-key``.

A self-signed certificate for ``127.0.0.1``/``localhost`` is made per module — with the
``cryptography`` package when it is installed (moto depends on it), else with the ``openssl``
command, else the module is skipped. Clients trust it the way users would: boto3 with
``verify=<cert>``, the AWS CLI with ``--ca-bundle``. Also: a client that fails the handshake
(plain HTTP to the TLS port, a stalled one, one that does not trust the certificate) costs
only its own connection; a pair that cannot be used stops the command with one line, exit 2;
``--allow-remote`` without TLS still serves, with a warning.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms
from replayer.engines.fold import FoldSettings
from replayer.serve.catalog import Catalog
from replayer.serve.endpoint import Endpoint
from replayer.serve.http_server import Server
from replayer.serve.state import StateStore
from replayer.serve.tls import server_context
from tests.replay_helpers import TABLE, at, replayer, write_coverage
from tests.serve_helpers import REGION, describe, put_items

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _with_cryptography(folder: Path, name: str, passphrase: bytes | None) -> Pair:
    import ipaddress
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pair = Pair(folder / f"{name}-cert.pem", folder / f"{name}-key.pem")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return pair


def _with_openssl(folder: Path, name: str, passphrase: bytes | None) -> Pair:
    pair = Pair(folder / f"{name}-cert.pem", folder / f"{name}-key.pem")
    secret = ["-passout", f"pass:{passphrase.decode()}"] if passphrase else ["-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         *secret, "-keyout", str(pair.key), "-out", str(pair.cert), "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return pair


def self_signed(folder: Path, name: str, passphrase: bytes | None = None) -> Pair:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl to make a certificate")
        return _with_openssl(folder, name, passphrase)
    return _with_cryptography(folder, name, passphrase)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return self_signed(tmp_path_factory.mktemp("tls"), "server")


def history(archive: Archive) -> None:
    """``orders`` (pk S, sk N): 9 items at +10 s, the ``c0`` ones ``paid`` at +20 s."""
    write_coverage(archive, watermark=at(100))
    describe(archive, keys=(("pk", "S"), ("sk", "N")))
    first = [
        {"pk": {"S": f"c{i % 3}"}, "sk": {"N": str(i)}, "status": {"S": "new"}} for i in range(9)
    ]
    seq = put_items(archive, first, ["pk", "sk"], at=at(10))
    paid = [dict(item, status={"S": "paid"}) for item in first[::3]]
    put_items(archive, paid, ["pk", "sk"], start_seq=seq, at=at(20))


@contextmanager
def serving_tls(archive: Archive, pair: Pair) -> Iterator[Server]:
    """The endpoint over HTTPS on a free loopback port, in-process, while the block runs."""
    catalog = Catalog(archive)
    store = StateStore.open(catalog.archive, FoldSettings(memory_limit="512MB"), 1 << 30)
    tls = server_context(str(pair.cert), str(pair.key))
    server = Server(Endpoint(catalog, store), "127.0.0.1", 0, None, tls).start()
    try:
        yield server
    finally:
        server.stop()
        store.close()


def client(url: str, verify: str | bool) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="anything",
        aws_secret_access_key="anything",
        verify=verify,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30),
    )


def read_the_past(url: str, cert: Path) -> None:
    """GetItem and Query at an instant and now, over HTTPS, trusting ``cert``."""
    dynamodb = client(url, str(cert))
    before = f"{TABLE}@{iso_ms(at(15))}"
    key = {"pk": {"S": "c0"}, "sk": {"N": "3"}}
    assert dynamodb.get_item(TableName=before, Key=key)["Item"]["status"] == {"S": "new"}
    assert dynamodb.get_item(TableName=TABLE, Key=key)["Item"]["status"] == {"S": "paid"}
    queried = dynamodb.query(
        TableName=before,
        KeyConditionExpression="pk = :p AND sk > :s",
        ExpressionAttributeValues={":p": {"S": "c1"}, ":s": {"N": "1"}},
    )
    assert [(i["sk"]["N"], i["status"]["S"]) for i in queried["Items"]] == [
        ("4", "new"),
        ("7", "new"),
    ]


def test_boto3_reads_the_past_over_https(archive: Archive, pair: Pair) -> None:
    history(archive)
    with serving_tls(archive, pair) as server:
        assert server.url.startswith("https://127.0.0.1:")
        read_the_past(server.url, pair.cert)


def test_a_failed_handshake_costs_only_its_connection(archive: Archive, pair: Pair) -> None:
    history(archive)
    with serving_tls(archive, pair) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # a client that connects and says nothing holds its own thread, not the accept loop
        stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            # plain HTTP to the TLS port: no answer a client could mistake for DynamoDB's
            plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with pytest.raises((http.client.HTTPException, OSError)):
                plain.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "x"})
                plain.getresponse()
            plain.close()
            # a client that does not trust the certificate refuses it, as it should
            with pytest.raises(SSLError):
                client(server.url, True).list_tables()
            # the next good request is served at once, though the stalled one is still open
            started = time.monotonic()
            read_the_past(server.url, pair.cert)
            assert time.monotonic() - started < 8
        finally:
            stalled.close()
        read_the_past(server.url, pair.cert)


def test_the_server_context_is_tls_1_2_or_later(pair: Pair) -> None:
    context = server_context(str(pair.cert), str(pair.key))
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificate asked for


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}


@contextmanager
def command(archive_path: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``ddb-replayer serve`` in a process of its own; yields its URL and the process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "replayer.cli", "serve", "--archive", str(archive_path),
         "--port", "0", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ddb-replayer serve: "), first + (
            process.stderr.read() if process.stderr else ""
        )
        yield first.split()[2], process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0


def test_the_command_serves_https_to_the_aws_cli(
    archive: Archive, archive_path: Path, pair: Pair
) -> None:
    history(archive)
    credentials = archive_path.parent / "credentials"
    credentials.write_text("[reader]\naws_access_key_id = AKIDREADER\naws_secret_access_key = s\n")
    tls = ("--tls-cert", str(pair.cert), "--tls-key", str(pair.key))
    with command(archive_path, "--allow-remote", "--credentials-file", str(credentials), *tls) as (
        url,
        process,
    ):
        assert url.startswith("https://127.0.0.1:")
        env = cli_env() | {"AWS_ACCESS_KEY_ID": "AKIDREADER", "AWS_SECRET_ACCESS_KEY": "s"}
        done = subprocess.run(
            [sys.executable, "-m", "awscli", "dynamodb", "get-item", "--endpoint-url", url,
             "--ca-bundle", str(pair.cert), "--region", REGION, "--output", "json",
             "--table-name", f"{TABLE}@{iso_ms(at(15))}",
             "--key", '{"pk": {"S": "c0"}, "sk": {"N": "3"}}'],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert '"status": {\n            "S": "new"' in done.stdout
    assert process.stderr is not None
    assert "warning" not in process.stderr.read()


def test_allow_remote_without_tls_still_serves_and_warns(
    archive: Archive, archive_path: Path
) -> None:
    history(archive)
    credentials = archive_path.parent / "credentials"
    credentials.write_text("[reader]\naws_access_key_id = AKIDREADER\naws_secret_access_key = s\n")
    with command(archive_path, "--allow-remote", "--credentials-file", str(credentials)) as (
        url,
        process,
    ):
        assert url.startswith("http://127.0.0.1:")
        assert process.stderr is not None
        warning = process.stderr.readline()
        assert "unencrypted" in warning and "--tls-cert" in warning
        signed = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="AKIDREADER",
            aws_secret_access_key="s",
        )
        assert signed.list_tables()["TableNames"] == [TABLE]


@pytest.mark.parametrize(
    "case",
    ["cert only", "key only", "missing cert", "missing key", "not pem", "mismatched", "encrypted"],
)
def test_an_unusable_pair_exits_2_with_one_line(
    archive: Archive,
    archive_path: Path,
    pair: Pair,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    history(archive)
    cert, key = str(pair.cert), str(pair.key)
    expected = {
        "cert only": "--tls-cert and --tls-key go together",
        "key only": "--tls-cert and --tls-key go together",
        "missing cert": "cannot read it",
        "missing key": "cannot read it",
        "not pem": "not a PEM certificate",
        "mismatched": "does not match the certificate",
        "encrypted": "passphrase",
    }[case]
    args: list[str]
    if case == "cert only":
        args = ["--tls-cert", cert]
    elif case == "key only":
        args = ["--tls-key", key]
    elif case == "missing cert":
        args = ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", key]
    elif case == "missing key":
        args = ["--tls-cert", cert, "--tls-key", str(tmp_path / "nope.pem")]
    elif case == "not pem":
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("hello\n")
        args = ["--tls-cert", str(garbage), "--tls-key", key]
    elif case == "mismatched":
        other = self_signed(tmp_path, "other")
        args = ["--tls-cert", cert, "--tls-key", str(other.key)]
    else:
        locked = self_signed(tmp_path, "locked", passphrase=b"secret")
        args = ["--tls-cert", str(locked.cert), "--tls-key", str(locked.key)]
    code, out, err = replayer(capsys, "serve", "--archive", str(archive_path), "--port", "0", *args)
    assert code == 2
    assert out == ""  # nothing was served: no URL printed
    assert len(err.strip().splitlines()) == 1 and expected in err, err
