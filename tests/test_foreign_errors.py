"""No redis-py (or hiredis) error escapes telstate's Redis backends.

telstate's transport parses replies with hiredis and turns every failure into a
:class:`telstate.ConnectionError` (also a ``redis.ConnectionError``); clients it
cannot reproduce (fakeredis, custom connection classes) are driven through their
own redis-py connections, which fail in redis-py's own ways.  These tests meet
both edges with peers that misbehave: a TCP server that answers in HTTP (not RESP),
and connection classes whose handshake gets an error reply or whose replies do not
parse.  Each must end as telstate's error, naming the problem, and the
``telstate`` command must show it as one line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import telstate
import telstate.aio
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend
from telstate.cli import main

_HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture
def http_server() -> Iterator[str]:
    """``redis://127.0.0.1:PORT`` of a private server answering every request in HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(100_000):  # about 3 hours of idle polls at most
            if stop.is_set():
                return
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5.0)
                try:
                    conn.recv(65536)
                    conn.sendall(_HTTP_REPLY)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10.0)
        listener.close()


def test_sync_peer_that_is_not_redis(http_server: str) -> None:
    with pytest.raises(telstate.ConnectionError, match="does not speak the Redis protocol"):
        telstate.TelescopeState(http_server)


def test_aio_peer_that_is_not_redis(http_server: str, caplog: pytest.LogCaptureFixture) -> None:
    async def connect() -> None:
        async with await AioRedisBackend.from_url(http_server):
            pass  # pragma: no cover - the connection fails

    with (
        caplog.at_level(logging.ERROR, logger="asyncio"),
        pytest.raises(telstate.ConnectionError, match="does not speak the Redis protocol"),
    ):
        asyncio.run(connect())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_cli_peer_that_is_not_redis(http_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", http_server]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("telstate: error: cannot reach redis server at ")
    assert "does not speak the Redis protocol" in err and len(err.splitlines()) == 1


class _HandshakeRefused(redis.Connection):
    def connect(self) -> None:
        raise redis.ResponseError("ERR unknown option in HELLO")


class _Garbled(redis.Connection):
    def connect(self) -> None:
        pass

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        pass

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.InvalidResponse("Protocol Error: b'?'")


class _AioHandshakeRefused(redis.asyncio.Connection):
    async def connect(self) -> None:
        raise redis.ResponseError("ERR unknown option in HELLO")


class _AioGarbled(redis.asyncio.Connection):
    async def connect(self) -> None:
        pass

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        pass

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.InvalidResponse("Protocol Error: b'?'")


@pytest.mark.parametrize(
    ("connection_class", "message"),
    [(_HandshakeRefused, "unknown option in HELLO"), (_Garbled, "Protocol Error")],
)
def test_sync_foreign_client_errors(connection_class: type[Any], message: str) -> None:
    pool = redis.ConnectionPool(connection_class=connection_class, host="127.0.0.1", port=1)
    client = redis.Redis(connection_pool=pool)
    with pytest.raises(telstate.ConnectionError, match=message) as caught:
        RedisBackend(client)
    assert isinstance(caught.value, telstate.TelstateError)


@pytest.mark.parametrize(
    ("connection_class", "message"),
    [(_AioHandshakeRefused, "unknown option in HELLO"), (_AioGarbled, "Protocol Error")],
)
def test_aio_foreign_client_errors(connection_class: type[Any], message: str) -> None:
    async def connect() -> None:
        pool = redis.asyncio.ConnectionPool(
            connection_class=connection_class, host="127.0.0.1", port=1
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            async with AioRedisBackend(client, retry_window=0.3) as backend:
                await backend.exists([b"key"])
        finally:
            await client.aclose()

    with pytest.raises(telstate.ConnectionError, match=message):
        asyncio.run(connect())
