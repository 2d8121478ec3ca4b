"""A minimal HTTP/1.1 client for the open loop: prebuilt requests over keep-alive
connections, answered through callbacks.

Why not aiohttp: on a 2-core machine the generator shares the cores with the server it
overloads, and aiohttp's session, task and response objects cost ~0.3 ms of CPU a request,
a third of a core at 2,000 req/s, taken from the server under test. Here a request is one
`transport.write` of bytes built before the run and one header scan of its answer, with no
task or coroutine per request. It speaks only what a load generator needs: POST with a
Content-Length body, answers framed by Content-Length or chunked, `Connection: close`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from berth_core.errors import InputError

# on_done(status, body, error): status 0 and a message in `error` when no answer came.
Done = Callable[[int, bytes, str], None]
TIMED_OUT = "TimeoutError"  # the error of an answer that did not come within the timeout
HEADER_END = b"\r\n\r\n"
MAX_HEADER = 64 * 1024


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole POST of `body` to `url`, built once before a run."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InputError(f"the open loop speaks plain http://HOST:PORT/... only, got {url!r}")
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80


class _Answer:
    """Incremental parse of one response: headers, then a Content-Length or chunked body."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.length = 0  # the body's size when not chunked; no framing = empty (204)
        self.chunked = False
        self.body_start = -1
        self.keep_alive = True
        self.body = b""

    def feed(self, data: bytes) -> bool:
        """True once the whole response is in; raises ValueError on a malformed one."""
        self.buffer += data
        if self.body_start < 0 and not self._headers():
            return False
        if self.chunked:
            return self._chunks()
        if len(self.buffer) - self.body_start < self.length:
            return False
        self.body = bytes(self.buffer[self.body_start : self.body_start + self.length])
        return True

    def _headers(self) -> bool:
        end = self.buffer.find(HEADER_END)
        if end < 0:
            if len(self.buffer) > MAX_HEADER:
                raise ValueError("response headers over 64 KiB")
            return False
        status_line, *fields = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        self.status = int(rest[:3])
        for line in fields:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value
            elif name == "connection":
                self.keep_alive = value != "close"
        self.body_start = end + len(HEADER_END)
        return True

    def _chunks(self) -> bool:
        pos, body = self.body_start, bytearray()
        while True:
            line_end = self.buffer.find(b"\r\n", pos)
            if line_end < 0:
                return False
            size = int(bytes(self.buffer[pos:line_end]).split(b";")[0], 16)
            start = line_end + 2
            if size == 0:  # the last chunk, then optional trailers and an empty line
                if self.buffer.find(HEADER_END, line_end) < 0:
                    return False
                self.body = bytes(body)
                return True
            if len(self.buffer) < start + size + 2:
                return False
            body += self.buffer[start : start + size]
            pos = start + size + 2


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.on_done: Done | None = None
        self.answer = _Answer()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, on_done: Done, timeout_s: float) -> None:
        assert self.transport is not None
        self.on_done, self.answer = on_done, _Answer()
        self.timer = self.pool.loop.call_later(timeout_s, self._timed_out)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self.on_done is None:
            return
        try:
            complete = self.answer.feed(data)
        except ValueError as exc:
            self._finish(0, b"", f"bad response: {exc}", reuse=False)
            return
        if complete:
            self._finish(self.answer.status, self.answer.body, "", self.answer.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        if self.on_done is not None:
            cause = f"{type(exc).__name__}: {exc}" if exc else "connection closed by the server"
            self._finish(0, b"", cause, reuse=False)

    def _timed_out(self) -> None:
        self.timer = None
        self._finish(0, b"", TIMED_OUT, reuse=False)

    def _finish(self, status: int, body: bytes, error: str, reuse: bool) -> None:
        on_done, self.on_done = self.on_done, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if reuse:
            self.pool.release(self)
        elif self.transport is not None:
            self.transport.abort()  # connection_lost then drops it from the pool
        if on_done is not None:
            on_done(status, body, error)


class Pool:
    """Idle keep-alive connections to one host; opens another when none is idle."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.host, self.port = address(url)
        self.timeout_s = timeout_s
        self.loop = asyncio.get_running_loop()
        self.idle: deque[Connection] = deque()
        self.open: set[Connection] = set()
        self.opening: set[asyncio.Task] = set()

    def request(self, request: bytes, on_done: Done) -> None:
        """Send `request` now on an idle connection, or as soon as a new one is open."""
        if self.idle:
            self.idle.pop().send(request, on_done, self.timeout_s)
            return
        task = self.loop.create_task(self._connect_and_send(request, on_done))
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)

    async def _connect_and_send(self, request: bytes, on_done: Done) -> None:
        """Connecting counts against the request's timeout, as it would in any client."""
        deadline = self.loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port
                )
        except TimeoutError:
            on_done(0, b"", TIMED_OUT)
            return
        except OSError as exc:
            on_done(0, b"", f"{type(exc).__name__}: {exc}")
            return
        self.open.add(conn)
        conn.send(request, on_done, max(deadline - self.loop.time(), 0.0))

    def release(self, conn: Connection) -> None:
        self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self.open.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    async def close(self) -> None:
        for task in list(self.opening):
            task.cancel()
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
        self.open.clear()
        await asyncio.sleep(0)
