"""The DynamoDB Streams test double served over HTTP on loopback, as the real endpoint is.

:class:`StreamsHttp` answers DynamoDB Streams' JSON protocol (``POST /`` with
``X-Amz-Target: DynamoDBStreams_20120810.<Operation>``) from any object with the double's
async methods (``list_streams``, ``describe_stream``, ``get_shard_iterator``,
``get_records``: :class:`tests.streams_double.StreamsDouble`), so that code which opens its own
client — ``ddb-archiver run`` as a command, its worker processes, botocore's response parsing —
meets the double through ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS``. A method may return a dict in
the shape botocore returns (``datetime``, ``bytes``: :func:`wire_json` writes them as the
service does — epoch seconds, base64) or the body itself as ``bytes``; a raised
``ClientError`` becomes AWS's error response (``__type``, ``message``, its HTTP status).

The server runs its own event loop in a thread: change the double through :meth:`call`, which
runs a function on that loop, so that no request sees it half-changed.

It cannot model: signatures (not checked), the 1 MB page limit, HTTP/2, TLS, connection limits.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from botocore.exceptions import ClientError

T = TypeVar("T")
_TARGET = "DynamoDBStreams_20120810."
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"


def _wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)


def wire_json(document: Any) -> bytes:
    """``document`` (in the shape botocore returns) as the service writes it."""
    return orjson.dumps(document, default=_wire_value, option=orjson.OPT_PASSTHROUGH_DATETIME)


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"__type": _ERROR_PREFIX + code, "message": message})


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class StreamsHttp:
    """``api`` (the double) served at :attr:`url` until :meth:`stop`."""

    def __init__(self, api: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StreamsHttp:
        self._thread.start()
        self.call_async(self._start)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self.call_async(self._runner.cleanup)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> StreamsHttp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on the server's loop (between requests); its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(function())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def call_async(self, function: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(function(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        target = request.headers.get("X-Amz-Target", "")
        operation = target[len(_TARGET) :] if target.startswith(_TARGET) else ""
        method = getattr(self.api, _snake(operation), None) if operation else None
        if method is None:
            return _response(400, error_body("UnknownOperationException", target))
        params = orjson.loads(await request.read() or b"{}")
        try:
            result = await method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            return _response(status, error_body(error.get("Code", ""), error.get("Message", "")))
        body = result if isinstance(result, bytes) else wire_json(result)
        return _response(200, body)


def _response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/x-amz-json-1.0")
