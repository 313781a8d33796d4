"""The HTTP side: DynamoDB's JSON 1.0 protocol over the standard library's threading server.

A request is ``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Operation>`` and a JSON body;
the answer is JSON with ``Content-Type: application/x-amz-json-1.0``, an
``x-amzn-RequestId`` and the ``x-amz-crc32`` of the body (which botocore checks when present),
or an error in DynamoDB's shape (:mod:`replayer.serve.dynamodb_errors`) with its status. A
``GET /`` answers a health line, as DynamoDB's endpoints do. Connections are kept alive
(HTTP/1.1), as SDKs expect; each is served by a thread of its own.

With an ``SSLContext`` (:mod:`replayer.serve.tls`) the listening socket is wrapped once, before
serving, with ``do_handshake_on_connect=False``: accepting a connection does no TLS work, and
each connection's handshake runs on its own thread, bounded by :data:`HANDSHAKE_SECONDS`. A
client that fails it (plain HTTP to the TLS port, an untrusted certificate, a stalled peer)
loses its connection only — logged at debug level — and never stalls accepting the next.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import sys
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from replayer.serve.dynamodb_errors import (
    DynamoDBError,
    InternalServerError,
    SerializationException,
    UnknownOperationException,
)
from replayer.serve.endpoint import Endpoint
from replayer.serve.operations import dispatch
from replayer.serve.signatures import SignatureVerifier

log = logging.getLogger(__name__)

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_BODY = 32 * 1024 * 1024
# The most a TLS handshake may take before its connection is dropped (a stalled client holds
# only its own thread, and not for long).
HANDSHAKE_SECONDS = 10.0


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in addresses
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm on, the second waits for
    # the client's delayed ACK (~40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_SECONDS)
            self.request.do_handshake()
            self.request.settimeout(self.timeout)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = CONTENT_TYPE) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", uuid.uuid4().hex.upper())
        self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b"healthy: ddb-replayer serve ", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        operation = ""
        try:
            headers = {name.lower(): value for name, value in self.headers.items()}
            if self.server.verifier is not None:
                self.server.verifier.verify(self.command, self.path, headers, body)
            target = headers.get("x-amz-target", "")
            if not target.startswith(TARGET_PREFIX) or target == TARGET_PREFIX:
                raise UnknownOperationException()
            operation = target[len(TARGET_PREFIX) :]
            try:
                parsed = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                raise SerializationException(
                    "Start of structure or map found where not expected"
                ) from None
            answer = dispatch(self.server.endpoint, operation, parsed)
            status, data = 200, orjson.dumps(answer)
        except DynamoDBError as exc:
            log.debug("%s: %s %s", operation or "request", exc.code, exc.message)
            status, data = exc.status, orjson.dumps(exc.body())
        except Exception as exc:
            log.exception("%s failed", operation or "request")
            error = InternalServerError(f"{type(exc).__name__}: {exc}")
            status, data = error.status, orjson.dumps(error.body())
        self._send(status, data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        endpoint: Endpoint,
        verifier: SignatureVerifier | None,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.endpoint = endpoint
        self.verifier = verifier
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (a TLS handshake, a timeout, a client gone mid-request: an
        ``OSError``) is that connection's end, not the server's: logged at debug level."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s failed", client_address, exc_info=True)
        else:
            super().handle_error(request, client_address)


class Server:
    """The endpoint on ``host:port`` (port 0: any free port), over TLS with ``tls``;
    :meth:`serve_forever` blocks, :meth:`start` serves from a background thread (tests)."""

    def __init__(
        self,
        endpoint: Endpoint,
        host: str = "127.0.0.1",
        port: int = 8000,
        verifier: SignatureVerifier | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._server = _Server((host, port), endpoint, verifier, tls)
        self._scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"{self._scheme}://{shown}:{port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> Server:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
