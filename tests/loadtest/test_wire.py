"""The open loop's HTTP/1.1 client (loadtest.wire) against scripted asyncio servers: the
framings it must read, connection reuse, and every way an answer can fail to come."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from berth_core.errors import InputError
from loadtest.wire import TIMED_OUT, Pool, request_bytes

OK_BODY = b'{"outputs":[{"name":"PROBABILITIES"}]}'
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One POST off the wire: its headers, then Content-Length bytes of body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )  # fmt: skip
    return head + await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def serve(script: Script) -> tuple[asyncio.Server, str, list[int]]:
    """A server running `script` per connection; → server, URL, connection count."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v2/models/m/infer", connections


async def ask(pool: Pool, url: str, count: int = 1) -> list[tuple[int, bytes, str]]:
    """`count` requests one after another; each answer as (status, body, error)."""
    results = []
    for _ in range(count):
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        pool.request(request_bytes(url, b"{}", {}), lambda *r, f=done: f.set_result(r))
        results.append(await done)
    return results


def run(script: Script, count: int = 1, timeout_s: float = 2.0):
    async def main():
        server, url, connections = await serve(script)
        pool = Pool(url, timeout_s)
        try:
            return await ask(pool, url, count), len(connections)
        finally:
            await pool.close()
            server.close()

    return asyncio.run(main())


def test_keep_alive_reuses_one_connection_and_reads_content_length_bodies():
    async def script(reader, writer):
        while True:
            request = await read_request(reader)
            assert request.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n")
            writer.write(answer(OK_BODY))

    results, connections = run(script, count=3)
    assert results == [(200, OK_BODY, "")] * 3
    assert connections == 1


def test_a_chunked_body_is_reassembled():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"5\r\n" + OK_BODY[:5], b"\r\n", b"%x\r\n" % (len(OK_BODY) - 5)):
            writer.write(piece)
            await writer.drain()
        writer.write(OK_BODY[5:] + b"\r\n0\r\n\r\n")

    assert run(script) == ([(200, OK_BODY, "")], 1)


def test_connection_close_is_honoured_and_the_next_request_reconnects():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(answer(b'{"error":"Exceeds maximum queue size"}', "503 Unavailable",
                            "Connection: close\r\n"))  # fmt: skip

    results, connections = run(script, count=2)
    assert [status for status, _, _ in results] == [503, 503]
    assert connections == 2


@pytest.mark.parametrize(
    "reply, error",
    [
        (b"", "connection closed by the server"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", "connection closed by the server"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "bad response: not an HTTP/1.x status line"),
    ],
)
def test_an_answer_cut_short_or_malformed_is_an_error(reply, error):
    async def script(reader, writer):
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    ((status, body, message),), _ = run(script)
    assert status == 0 and body == b"" and message.startswith(error)


def test_a_late_answer_times_out():
    async def script(reader, writer):
        await read_request(reader)
        await asyncio.sleep(1.0)

    ((status, _, message),), _ = run(script, timeout_s=0.2)
    assert (status, message) == (0, TIMED_OUT)


def test_a_refused_connection_is_an_error_not_an_exception():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v2/models/m/infer"

    async def main():
        pool = Pool(url, 2.0)
        return await ask(pool, url)

    ((status, _, message),) = asyncio.run(main())
    assert status == 0 and "ConnectionRefusedError" in message


def test_only_plain_http_urls_are_taken():
    raw = request_bytes("http://h:8000/v2/models/m/infer", b"xy", {"A": "b"})
    head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: h:8000\r\nA: b\r\n"
    assert raw == head + b"Content-Length: 2\r\n\r\nxy"
    with pytest.raises(InputError, match="plain http"):
        request_bytes("https://h/v2/models/m/infer", b"", {})
