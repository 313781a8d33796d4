"""Shared fixtures: moto's server on loopback, an isolated AWS environment, archives, tables.

moto runs as a real HTTP server (one per test session and xdist worker, port 0), because
in-process mocking does not reach aiobotocore or s3fs: tests talk HTTP exactly as production
does. The autouse ``aws_env`` fixture strips every AWS setting from the environment and points
the SDKs at that server, so no test can reach a real account or read a developer's credentials.

Every test starts from an empty moto, but a reset is paid only when one is due: the server
counts the requests it answers, and ``aws_env`` resets it only when a request came since the
last reset (most tests of the format, the codec or planning never talk to AWS). A module or
test marked ``no_aws`` does not even start the server (its import and start cost about a
second and a half): its SDKs point at a closed loopback port, so an AWS call fails at once —
unless the test asks for moto itself (``ddb``, ``s3``, ``moto_url``).
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import Phase, settings

from archiver.format.storage import Archive

REGION = "us-east-1"

# Property tests report a failing example as found: shrinking one built from a moto table can
# take minutes. `HYPOTHESIS_PROFILE=debug` shrinks it to the smallest case.
settings.register_profile(
    "suite", phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target], print_blob=True
)
settings.register_profile("debug", print_blob=True)
# CI (.ci/run) draws the same examples on every run: a gate that passes or fails on the code, not
# on the draw; `make test` elsewhere keeps exploring new ones.
settings.register_profile("ci", parent=settings.get_profile("suite"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


class JsonLines:
    """What AWS's ImportTable reads from a DYNAMODB_JSON object: one JSON document per line.

    moto's ImportTable parses its input with py_partiql_parser's ``JsonParser``, which cuts a
    string at an escaped quote (``{"S": "it's \\"quoted\\""}`` is imported as ``"it"``). The
    moto server runs in this process, so the session swaps that parser for this one; the rest
    of moto's import (the table, counts, status) is unchanged.
    """

    @staticmethod
    def parse(original: str, **_: Any) -> Iterator[Any]:
        return (json.loads(line) for line in original.splitlines() if line.strip())


# Where the SDKs of a ``no_aws`` test point: a loopback port nothing listens on (the discard
# port), so a call is refused at once rather than reaching anything.
NO_AWS_ENDPOINT = "http://127.0.0.1:9"


class MotoServer:
    """moto's server, counting the requests it answers so that a reset is made only when due."""

    def __init__(self) -> None:
        import py_partiql_parser
        from moto.server import ThreadedMotoServer

        py_partiql_parser.JsonParser = JsonLines  # type: ignore[misc,assignment]
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.requests = 0  # answered so far (every thread, every process that calls it)
        self._clean_at = 0  # the count when moto was last known empty
        # moto's werkzeug server calls its ``app`` for every request: count them there.
        wsgi = self.server._server
        assert wsgi is not None
        answer = wsgi.app

        def counting(environ: Any, start_response: Any) -> Any:
            self.requests += 1
            return answer(environ, start_response)

        wsgi.app = counting

    def reset_if_used(self) -> bool:
        """Reset moto if anything talked to it since it was last empty; whether it did."""
        if self.requests == self._clean_at:
            return False
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request).close()
        self._clean_at = self.requests  # the reset's own request included
        return True

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_url(moto_server: MotoServer) -> str:
    return moto_server.url


@pytest.fixture(scope="session")
def empty_aws_config(tmp_path_factory: Any) -> str:
    """An empty AWS config and credentials file: no profile of the developer's is read."""
    empty = tmp_path_factory.mktemp("aws-config") / "none"
    empty.write_text("")
    return str(empty)


@pytest.fixture(autouse=True)
def aws_env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, empty_aws_config: str
) -> Iterator[str]:
    """Isolate the AWS environment and point it at an empty moto, so every test starts from
    nothing (or, marked ``no_aws``, at nothing at all)."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("BOTO"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", empty_aws_config)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", empty_aws_config)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    wants_moto = "moto_server" in request.fixturenames
    if request.node.get_closest_marker("no_aws") is not None and not wants_moto:
        monkeypatch.setenv("AWS_ENDPOINT_URL", NO_AWS_ENDPOINT)
        yield NO_AWS_ENDPOINT
        return
    moto: MotoServer = request.getfixturevalue("moto_server")
    moto.reset_if_used()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    yield moto.url


@pytest.fixture
def ddb(aws_env: str, moto_url: str) -> Any:
    """A boto3 DynamoDB client on the moto server."""
    return boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture
def s3(aws_env: str, moto_url: str) -> Any:
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture
def archive_path(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def archive(archive_path: Path) -> Archive:
    """A local-folder archive."""
    return Archive.open(str(archive_path))


@pytest.fixture
def s3_archive(s3: Any) -> Archive:
    """An archive in a moto S3 bucket."""
    s3.create_bucket(Bucket="archive-bucket")
    return Archive.open("s3://archive-bucket/ddb")


def create_table(
    ddb: Any,
    name: str,
    *,
    range_key: str | None = None,
    key_types: tuple[str, str] = ("S", "S"),
    stream: str | None = "NEW_AND_OLD_IMAGES",
    gsis: list[dict[str, Any]] | None = None,
    extra_attributes: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Create a pay-per-request table (``pk`` hash key, optional range key) and return its
    description."""
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": key_types[0]}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_key, "AttributeType": key_types[1]})
    attrs.extend(extra_attributes or [])
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": attrs,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    ddb.create_table(**kwargs)
    return dict(ddb.describe_table(TableName=name)["Table"])


class Crash(Exception):
    """A fault injected between archive writes (``crash_after``)."""


@pytest.fixture
def crash_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """``crash_after(n)``: the n-th archive write or delete from now on raises."""
    state = {"left": -1}
    put, delete = Archive.put_bytes, Archive.delete

    def counted(original: Any) -> Any:
        def wrapper(self: Archive, *args: Any, **kwargs: Any) -> Any:
            if state["left"] == 0:
                state["left"] = -1
                raise Crash("injected")
            if state["left"] > 0:
                state["left"] -= 1
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Archive, "put_bytes", counted(put))
    monkeypatch.setattr(Archive, "delete", counted(delete))

    class Arm:
        def __call__(self, n: int) -> None:
            state["left"] = n

        @contextlib.contextmanager
        def paused(self) -> Iterator[None]:
            """Writes inside do not count (another process's writes, run in this one)."""
            left, state["left"] = state["left"], -1
            try:
                yield
            finally:
                state["left"] = left

    yield Arm()
