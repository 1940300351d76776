"""A minimal HTTP/1.1 keep-alive client for the load generator's simple requests.

aiohttp tops out near 14k requests/s on one core; wrk does ten times that. Most of the
gap is per-request machinery the generator does not need, so plain request/response
targets use this: asyncio protocols over a pool of keep-alive connections, responses
parsed by ``httptools`` (llhttp, the parser uvicorn uses). Streaming targets keep aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


@dataclass
class RawResponse:
    status: int
    body: bytes
    served_by: str | None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[RawResponse] | None = None
        self.body: list[bytes] = []
        self.served_by: str | None = None
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed by the server"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-served-by":
            self.served_by = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if not self.parser.should_keep_alive():
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(
                RawResponse(self.parser.get_status_code(), b"".join(self.body), self.served_by)
            )

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[RawResponse]:
        assert self.transport is not None
        self.body, self.served_by = [], None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


class RawHttpPool:
    """Keep-alive connections to one ``http://host:port``, opened on demand."""

    def __init__(self, base_url: str, max_connections: int = 256) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url!r}: the raw client speaks plain http://host:port only.")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.max_connections = max_connections
        self._idle: list[_Connection] = []
        self._open = 0
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new run on a new loop: start over
            self._loop, self._idle, self._open = loop, [], 0
            self._slots = asyncio.Semaphore(self.max_connections)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        self._bind_loop()
        assert self._slots is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        raw = head.encode() + b"\r\n" + body
        async with self._slots:
            conn = await self._acquire()
            try:
                response = await conn.send(raw)
            except BaseException:
                conn.closed = True
                if conn.transport is not None:
                    conn.transport.close()
                raise
            finally:
                self._release(conn)
        return response

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    def _release(self, conn: _Connection) -> None:
        if not conn.closed:
            self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle = []
