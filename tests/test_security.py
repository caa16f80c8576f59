"""Security: access control, TLS, secrets, hostile stored data and bad input.

1. Redis ACL users and ``requirepass``: credentials in URLs (TCP and Unix socket)
   and in redis-py clients, sync and asyncio; wrong credentials and refused
   commands raise :class:`telstate.ConnectionError` saying so, and a refused
   write leaves the database as it was.
2. TLS: a CA, server and client certificates made with ``openssl`` at test time;
   reads, writes, waits (pub/sub), pipelines, RDB save and load and large replies
   over ``rediss://`` (telstate's fast path talks over redis-py's SSL socket);
   untrusted servers and clients are refused promptly.
3. Passwords never show in reprs, exception chains, log records or the CLI's output.
4. Pickles that would run code are refused on every read path unless pickles are
   allowed; the source holds no other way to run stored data.
5. Bad keys, timestamps, sub-keys, encodings and values raise before anything is
   sent: the server holds nothing and ran no command (INFO commandstats).

Every server is private (tests/servers.py); none of this touches port 6379.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import datetime
import decimal
import logging
import math
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AioRetry
from redis.backoff import NoBackoff

import telstate
import telstate.aio
from telstate import (
    ConnectionError,
    DecodeError,
    EncodeError,
    ImmutableKeyError,
    InvalidTimestampError,
    KeyType,
    TelescopeState,
)
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends._redis_protocol import member
from telstate.backends.redis import RedisBackend
from telstate.cli import main as cli_main
from telstate.endpoint import Endpoint

from .security_support import (
    ADMIN_COMMANDS,
    Pki,
    assert_no_secret,
    command_calls,
    exception_texts,
    hostile_pickles,
    log_texts,
    make_pki,
    snapshot,
    tls_server_args,
    userinfo,
)
from .servers import RedisServer, free_port

SRC = Path(__file__).resolve().parents[1] / "src"

#: Seconds a test whose connection must fail may take before it counts as hung.
HANG = 60


# =========================================================================== shared workloads


def exercise_sync(ts: TelescopeState, tmp_path: Path) -> None:
    """Everything a client does: writes, reads, a pipeline, a wait woken by pub/sub, RDB I/O."""
    ts["attr"] = {"a": 1}
    ts.add("sensor", 1.5, ts=10.0)
    ts.add("sensor", 2.5, ts=20.0)
    ts.set_indexed("idx", ("m000", "h"), 1 + 2j)
    assert ts["attr"] == {"a": 1}
    assert ts.get_range("sensor", st=0) == [(1.5, 10.0), (2.5, 20.0)]
    assert ts.get_indexed("idx", ("m000", "h")) == 1 + 2j
    assert ts.key_type("idx") is KeyType.INDEXED
    assert "attr" in ts
    assert ts.view("cb")["attr"] == {"a": 1}
    with ts.pipeline() as batch:
        for i in range(100):
            batch.add("piped", i, ts=float(i))
        batch["piped_done"] = True
    assert [value for value, _ in ts.get_range("piped", st=0)] == list(range(100))

    writer = threading.Timer(0.1, lambda: ts.add("waited", 42, ts=1.0))
    writer.start()
    try:
        ts.wait_key("waited", lambda value, stamp: value == 42, timeout=10)
    finally:
        writer.join()

    path = tmp_path / "sync.rdb"
    count = ts.save_to_file(path)
    assert count == len(ts.keys()) == 6
    ts.clear()
    assert ts.keys() == []
    assert ts.load_from_file(path) == count
    assert ts.get_range("sensor", st=0) == [(1.5, 10.0), (2.5, 20.0)]
    assert ts["idx"] == {("m000", "h"): 1 + 2j}


async def exercise_aio(ts: telstate.aio.TelescopeState, tmp_path: Path) -> None:
    """:func:`exercise_sync` for asyncio, plus watch()."""
    await ts.set("attr", {"a": 1})
    await ts.add("sensor", 1.5, ts=10.0)
    await ts.add("sensor", 2.5, ts=20.0)
    await ts.set_indexed("idx", ("m000", "h"), 1 + 2j)
    assert await ts["attr"] == {"a": 1}
    assert await ts.get_range("sensor", st=0) == [(1.5, 10.0), (2.5, 20.0)]
    assert await ts.get_indexed("idx", ("m000", "h")) == 1 + 2j
    assert await ts.key_type("idx") is KeyType.INDEXED
    async with ts.pipeline() as batch:
        for i in range(100):
            batch.add("piped", i, ts=float(i))
        batch["piped_done"] = True
    assert [value for value, _ in await ts.get_range("piped", st=0)] == list(range(100))

    waiter = asyncio.create_task(ts.wait_key("waited", lambda v, t: v == 42, timeout=10))
    watched: list[tuple[Any, Any]] = []
    first = asyncio.Event()

    async def watch() -> None:
        async for item in ts.watch("watched"):
            watched.append(item)
            first.set()
            if len(watched) == 2:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    await ts.add("waited", 42, ts=1.0)
    await ts.add("watched", "a", ts=1.0)
    await asyncio.wait_for(first.wait(), 10)
    await ts.add("watched", "b", ts=2.0)
    await asyncio.wait_for(waiter, 10)
    await asyncio.wait_for(watcher, 10)
    assert watched == [("a", 1.0), ("b", 2.0)]

    path = tmp_path / "aio.rdb"
    count = await ts.save_to_file(path)
    assert count == len(await ts.keys()) == 7
    await ts.clear()
    assert await ts.keys() == []
    assert await ts.load_from_file(path) == count
    assert await ts.get_range("sensor", st=0) == [(1.5, 10.0), (2.5, 20.0)]
    assert await ts.get("idx") == {("m000", "h"): 1 + 2j}


@contextlib.contextmanager
def refused_once(admin: redis.Redis, kind: str | None) -> Iterator[None]:
    """The block's one refusal (ACL `kind`: auth, channel...) reached the server once.

    A refusal is final: reported at once, never retried with backoff, so the
    server's ACL LOG (which counts repeats of an entry) gains exactly one denial.
    With `kind` None (a client that sends no credentials, refused with NOAUTH,
    which the log does not record), the server accepts exactly one connection.
    """

    def denials() -> int:
        if kind is None:
            return int(admin.info("stats")["total_connections_received"])
        entries = admin.acl_log(count=128)
        return sum(int(entry["count"]) for entry in entries if entry["reason"] == kind)

    before = denials()
    yield
    # The admin's own INFO opens no connection: it reuses the one of the first call.
    assert denials() - before == 1


# =========================================================================== 1. access control

ADMIN_PW = "adm1n-Pa55/word"
DEFAULT_PW = "requirepass-S3cret#1"
#: ACL users: name -> (password, rules).  Passwords hold characters that URLs must escape.
USERS = {
    "alice": ("al1ce-S3cret/pw?#%:@x", "~* &* +@all"),
    "reader": ("r3ader-S3cret", "~* &* +@all -@write"),
    "scoped": ("sc0ped-S3cret", "~ok_* &* +@all"),
    # Redis 7's default (acl-pubsub-default resetchannels): no channel may be used
    "nochan": ("n0chan-S3cret", "~* resetchannels +@all"),
}


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A server with ACL users, whose default user needs a password (requirepass)."""
    server = RedisServer(tcp=True)
    try:
        setup = server.client()
        for name, (password, rules) in {"admin": (ADMIN_PW, "~* &* +@all"), **USERS}.items():
            setup.execute_command("ACL", "SETUSER", name, "on", f">{password}", *rules.split())
        setup.config_set("requirepass", DEFAULT_PW)
        setup.close()
        yield server
    finally:
        server.close()


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    client = acl_server.client(username="admin", password=ADMIN_PW)
    client.flushall()
    client.config_resetstat()
    try:
        yield client
    finally:
        client.close()


def admin_ts(server: RedisServer) -> TelescopeState:
    return TelescopeState(RedisBackend(server.client(username="admin", password=ADMIN_PW)))


def _password(user: str, password: str | None) -> str:
    if password is not None:
        return password
    return DEFAULT_PW if user in ("", "default") else USERS[user][0]


def connect_sync(
    server: RedisServer, form: str, user: str = "alice", password: str | None = None
) -> TelescopeState:
    """A TelescopeState logged in as `user`, connected in one of the ways users can."""
    password = _password(user, password)
    creds = userinfo(user, password)
    if form == "url":
        return TelescopeState(f"redis://{creds}@127.0.0.1:{server.port}/0")
    if form == "unix-url":
        return TelescopeState(f"unix://{creds}@{server.socket_path}")
    if form == "unix-query":
        query = urlencode({"username": user, "password": password})
        return TelescopeState(f"unix://{server.socket_path}?{query}")
    assert form == "client"
    client = redis.Redis(
        host="127.0.0.1", port=server.port, username=user or None, password=password
    )
    return TelescopeState(RedisBackend(client))


async def connect_aio(
    server: RedisServer, form: str, user: str = "alice", password: str | None = None
) -> AioRedisBackend:
    password = _password(user, password)
    creds = userinfo(user, password)
    if form == "url":
        return await AioRedisBackend.from_url(f"redis://{creds}@127.0.0.1:{server.port}/0")
    if form == "unix-url":
        return await AioRedisBackend.from_url(f"unix://{creds}@{server.socket_path}")
    assert form == "client"
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=server.port, username=user or None, password=password
    )
    return AioRedisBackend(client)


@pytest.mark.parametrize("form", ["url", "unix-url", "unix-query", "client"])
def test_acl_user_does_everything_sync(
    acl_server: RedisServer, admin: redis.Redis, form: str, tmp_path: Path
) -> None:
    ts = connect_sync(acl_server, form)
    try:
        exercise_sync(ts, tmp_path)
    finally:
        ts.backend.close()
    assert admin.dbsize() == 6


@pytest.mark.parametrize("form", ["url", "unix-url", "client"])
def test_acl_user_does_everything_aio(
    acl_server: RedisServer, admin: redis.Redis, form: str, tmp_path: Path
) -> None:
    async def main() -> None:
        backend = await connect_aio(acl_server, form)
        try:
            await exercise_aio(telstate.aio.TelescopeState(backend), tmp_path)
        finally:
            await backend.wait_closed()

    asyncio.run(main())
    assert admin.dbsize() == 7


@pytest.mark.parametrize(
    ("form", "user"), [("url", ""), ("url", "default"), ("unix-url", ""), ("client", "")]
)
def test_requirepass_default_user(
    acl_server: RedisServer, admin: redis.Redis, form: str, user: str
) -> None:
    """``requirepass``: the default user's password, with or without its name."""
    ts = connect_sync(acl_server, form, user)
    ts["x"] = 1
    ts.add("s", 2.0, ts=1.0)
    assert ts["x"] == 1 and ts.get_range("s", st=0) == [(2.0, 1.0)]
    ts.backend.close()

    async def main() -> None:
        backend = await connect_aio(acl_server, form, user)
        try:
            aio_ts = telstate.aio.TelescopeState(backend)
            await aio_ts.set("y", 2)
            assert await aio_ts.get("x") == 1
        finally:
            await backend.wait_closed()

    asyncio.run(main())
    assert admin.dbsize() == 3


# (user, password) that the server must refuse, and how the message says so
BAD_CREDENTIALS = {
    "wrong-password": ("alice", "not-the-password", "refused the credentials"),
    "unknown-user": ("mallory", "whatever", "refused the credentials"),
    "wrong-default-password": ("", "not-the-default", "refused the credentials"),
    "no-password": (None, None, "refused (access|the credentials)"),
}


def _bad_url(server: RedisServer, case: str) -> str:
    user, password, _ = BAD_CREDENTIALS[case]
    creds = "" if user is None else userinfo(user, password or "") + "@"
    return f"redis://{creds}127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("front", ["sync-url", "sync-client", "aio-url", "aio-client"])
@pytest.mark.parametrize("case", sorted(BAD_CREDENTIALS))
def test_bad_credentials_refused_promptly(
    acl_server: RedisServer, admin: redis.Redis, case: str, front: str
) -> None:
    user, password, message = BAD_CREDENTIALS[case]
    url = _bad_url(acl_server, case)
    where = f"redis server at redis://127.0.0.1:{acl_server.port}/0 "
    kind = None if user is None else "auth"
    with refused_once(admin, kind), pytest.raises(ConnectionError, match=where + message) as info:
        if front == "sync-url":
            TelescopeState(url)
        elif front == "sync-client":
            RedisBackend(
                redis.Redis(
                    host="127.0.0.1", port=acl_server.port, username=user, password=password
                )
            )
        else:

            async def main() -> None:
                if front == "aio-url":
                    await AioRedisBackend.from_url(url)
                    return
                # Our own client: its retry policy is ours.  redis-py's default one retries
                # refused credentials with backoff (~4 s); the sync backend's fast path never.
                client = redis.asyncio.Redis(
                    host="127.0.0.1",
                    port=acl_server.port,
                    username=user,
                    password=password,
                    retry=AioRetry(NoBackoff(), 0),
                )
                backend = AioRedisBackend(client)
                try:
                    await telstate.aio.TelescopeState(backend).get("x")
                finally:
                    await backend.wait_closed()

            asyncio.run(main())
    if password:
        assert_no_secret(exception_texts(info.value), password)


def _fill(server: RedisServer, prefix: str = "") -> None:
    ts = admin_ts(server)
    ts[f"{prefix}attr"] = "a"
    ts.add(f"{prefix}sensor", 1.0, ts=1.0)
    ts.set_indexed(f"{prefix}idx", "a", 1)
    ts.backend.close()


def _rdb(tmp_path: Path, prefix: str = "") -> Path:
    ts = TelescopeState()
    ts[f"{prefix}from_file"] = 1
    ts.add(f"{prefix}sensor", 5.0, ts=5.0)
    path = tmp_path / "load.rdb"
    ts.save_to_file(path)
    return path


def _pipeline_sync(ts: TelescopeState, prefix: str = "") -> None:
    with ts.pipeline() as batch:
        batch.add(f"{prefix}sensor", 2.0, ts=2.0)
        batch.set_indexed(f"{prefix}idx", "b", 2)
        batch[f"{prefix}done"] = True


async def _pipeline_aio(ts: telstate.aio.TelescopeState, prefix: str = "") -> None:
    async with ts.pipeline() as batch:
        batch.add(f"{prefix}sensor", 2.0, ts=2.0)
        batch.set_indexed(f"{prefix}idx", "b", 2)
        batch[f"{prefix}done"] = True


def _sync_writes(rdb: Path, prefix: str = "") -> dict[str, Callable[[TelescopeState], Any]]:
    return {
        "set": lambda ts: ts.set(f"{prefix}new", 1),
        "set-equal": lambda ts: ts.set(f"{prefix}attr", "a"),
        "add": lambda ts: ts.add(f"{prefix}sensor", 2.0, ts=2.0),
        "set_indexed": lambda ts: ts.set_indexed(f"{prefix}idx", "b", 2),
        "pipeline": lambda ts: _pipeline_sync(ts, prefix),
        "load_from_file": lambda ts: ts.load_from_file(rdb),
        "delete": lambda ts: ts.delete(f"{prefix}attr"),
        "clear": lambda ts: ts.clear(),
    }


def _aio_writes(rdb: Path, prefix: str = "") -> dict[str, Callable[[Any], Any]]:
    return {
        "set": lambda ts: ts.set(f"{prefix}new", 1),
        "add": lambda ts: ts.add(f"{prefix}sensor", 2.0, ts=2.0),
        "set_indexed": lambda ts: ts.set_indexed(f"{prefix}idx", "b", 2),
        "pipeline": lambda ts: _pipeline_aio(ts, prefix),
        "load_from_file": lambda ts: ts.load_from_file(rdb),
        "delete": lambda ts: ts.delete(f"{prefix}attr"),
        "clear": lambda ts: ts.clear(),
    }


#: Commands that would have changed the data, had the server run them.
_WRITE_COMMANDS = ("setnx", "set", "zadd", "hsetnx", "hset", "restore", "unlink", "del", "flushdb")


def _assert_nothing_written(admin: redis.Redis, before: dict[bytes, bytes | None]) -> None:
    assert snapshot(admin) == before
    calls = command_calls(admin)
    assert not [name for name in _WRITE_COMMANDS if calls.get(name)], calls


def test_read_only_user_sync(acl_server: RedisServer, admin: redis.Redis, tmp_path: Path) -> None:
    """A user without @write reads everything; every write is refused, clearly and wholly."""
    _fill(acl_server)
    before = snapshot(admin)
    admin.config_resetstat()
    ts = connect_sync(acl_server, "url", "reader")
    try:
        assert ts["attr"] == "a"
        assert ts.get_range("sensor", st=0) == [(1.0, 1.0)]
        assert ts.get_indexed("idx", "a") == 1
        assert ts.keys() == ["attr", "idx", "sensor"]
        ts.wait_key("sensor", lambda value, stamp: value == 1.0, timeout=5)
        for name, write in _sync_writes(_rdb(tmp_path)).items():
            with pytest.raises(ConnectionError, match="refused access") as info:
                write(ts)
            assert f"127.0.0.1:{acl_server.port}" in str(info.value), name
            _assert_nothing_written(admin, before)
    finally:
        ts.backend.close()


def test_read_only_user_aio(acl_server: RedisServer, admin: redis.Redis, tmp_path: Path) -> None:
    _fill(acl_server)
    before = snapshot(admin)
    admin.config_resetstat()
    rdb = _rdb(tmp_path)

    async def main() -> None:
        backend = await connect_aio(acl_server, "url", "reader")
        ts = telstate.aio.TelescopeState(backend)
        try:
            assert await ts.get("attr") == "a"
            assert await ts.get_range("sensor", st=0) == [(1.0, 1.0)]
            await ts.wait_key("sensor", lambda value, stamp: value == 1.0, timeout=5)
            for write in _aio_writes(rdb).values():
                with pytest.raises(ConnectionError, match="refused access"):
                    await write(ts)
                _assert_nothing_written(admin, before)
        finally:
            await backend.wait_closed()

    asyncio.run(main())


def _scoped_reads() -> dict[str, Callable[[TelescopeState], Any]]:
    return {
        "get": lambda ts: ts.get("attr"),
        "getitem": lambda ts: ts["attr"],
        "get_range": lambda ts: ts.get_range("sensor", st=0),
        "get_indexed": lambda ts: ts.get_indexed("idx", "a"),
        "key_type": lambda ts: ts.key_type("attr"),
        "exists": lambda ts: ts.exists("attr"),
        "contains": lambda ts: "attr" in ts,
        "wait_key": lambda ts: ts.wait_key("attr", timeout=1),
        "view-fallback": lambda ts: ts.view("ok")["attr"],  # reads ok_attr, then attr
        "stats": lambda ts: ts.backend.stats([b"attr"]),  # what `telstate keys` shows
    }


def test_key_pattern_user_sync(acl_server: RedisServer, admin: redis.Redis, tmp_path: Path) -> None:
    """A user limited to ok_* keys: those work; any other key is refused, never misreported."""
    _fill(acl_server)
    ts = connect_sync(acl_server, "url", "scoped")
    try:
        ts["ok_attr"] = 1
        ts.add("ok_sensor", 1.0, ts=1.0)
        ts.set_indexed("ok_idx", "a", 1)
        _pipeline_sync(ts, "ok_")
        ts.wait_key("ok_sensor", lambda value, stamp: value == 2.0, timeout=5)
        assert ts.get_range("ok_sensor", st=0) == [(1.0, 1.0), (2.0, 2.0)]
        assert ts.load_from_file(_rdb(tmp_path, "ok_")) == 2
        before = snapshot(admin)
        admin.config_resetstat()
        # key_type (and the stats behind `telstate keys`) used to answer "no such key"
        for name, read in _scoped_reads().items():
            try:
                read(ts)
            except ConnectionError as exc:
                assert "refused access: NOPERM" in str(exc), name
            else:
                pytest.fail(f"{name} of a forbidden key was not refused")
        writes = _sync_writes(_rdb(tmp_path))
        for name in ("set", "add", "set_indexed", "pipeline", "load_from_file", "delete"):
            with pytest.raises(ConnectionError, match="refused access"):
                writes[name](ts)
            _assert_nothing_written(admin, before)
    finally:
        ts.backend.close()


def test_key_pattern_user_aio(acl_server: RedisServer, admin: redis.Redis, tmp_path: Path) -> None:
    _fill(acl_server)
    rdb = _rdb(tmp_path)

    async def main() -> None:
        backend = await connect_aio(acl_server, "url", "scoped")
        ts = telstate.aio.TelescopeState(backend)
        try:
            await ts.set("ok_attr", 1)
            await _pipeline_aio(ts, "ok_")
            assert await ts.get_range("ok_sensor", st=0) == [(2.0, 2.0)]
            before = snapshot(admin)
            admin.config_resetstat()
            reads = (
                lambda: ts.get("attr"),
                lambda: ts.get_range("sensor", st=0),
                lambda: ts.get_indexed("idx", "a"),
                lambda: ts.key_type("attr"),
                lambda: ts.exists("attr"),
                lambda: ts.wait_key("attr", timeout=1),
                lambda: backend.stats([b"attr"]),
            )
            for read in reads:
                with pytest.raises(ConnectionError, match="refused access"):
                    await read()
            writes = _aio_writes(rdb)
            for name in ("set", "add", "set_indexed", "pipeline", "load_from_file", "delete"):
                with pytest.raises(ConnectionError, match="refused access"):
                    await writes[name](ts)
                _assert_nothing_written(admin, before)
        finally:
            await backend.wait_closed()

    asyncio.run(main())


def test_no_channel_permission_wait_sync(acl_server: RedisServer, admin: redis.Redis) -> None:
    """A user who may not subscribe learns so at once, not at the wait's timeout."""
    ts = connect_sync(acl_server, "url", "nochan")
    try:
        with (
            refused_once(admin, "channel"),
            # "...access one of the channels..." (Redis 7.0), "...access a channel" (7.2+)
            pytest.raises(ConnectionError, match=r"refused access.*channel"),
        ):
            ts.wait_key("absent", timeout=30)
    finally:
        ts.backend.close()


def test_no_channel_permission_wait_aio(acl_server: RedisServer, admin: redis.Redis) -> None:
    async def main() -> None:
        backend = await connect_aio(acl_server, "url", "nochan")
        try:
            ts = telstate.aio.TelescopeState(backend)
            with (
                refused_once(admin, "channel"),
                pytest.raises(ConnectionError, match="refused access"),
            ):
                await ts.wait_key("absent", timeout=30)
        finally:
            await backend.wait_closed()

    asyncio.run(main())


@pytest.mark.parametrize("front", ["sync", "aio"])
def test_no_channel_permission_write_is_not_partial(
    acl_server: RedisServer, admin: redis.Redis, front: str
) -> None:
    if front == "sync":
        ts = connect_sync(acl_server, "url", "nochan")
        with pytest.raises(ConnectionError, match="refused access"):
            ts["flag"] = 1
        ts.backend.close()
    else:

        async def main() -> None:
            backend = await connect_aio(acl_server, "url", "nochan")
            try:
                with pytest.raises(ConnectionError, match="refused access"):
                    await telstate.aio.TelescopeState(backend).set("flag", 1)
            finally:
                await backend.wait_closed()

        asyncio.run(main())
    assert admin.dbsize() == 0, "the refused write was applied"


# =========================================================================== 2. TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class TlsServer:
    server: RedisServer
    port: int
    pki: Pki

    def url(self, host: str = "127.0.0.1", creds: str = "", **query: str | Path) -> str:
        text = urlencode({name: str(value) for name, value in query.items()})
        return f"rediss://{creds}{host}:{self.port}/0" + (f"?{text}" if text else "")

    def trusted_url(self, **query: str | Path) -> str:
        return self.url(ssl_ca_certs=self.pki.ca, **query)

    def client_cert(self) -> dict[str, Path]:
        return {"ssl_certfile": self.pki.client_cert, "ssl_keyfile": self.pki.client_key}


def _tls_server(pki: Pki, auth_clients: str) -> Iterator[TlsServer]:
    port = free_port()
    server = RedisServer(args=("--port", "0", *tls_server_args(pki, port, auth_clients)))
    try:
        setup = server.client()
        password, rules = USERS["alice"]
        setup.execute_command("ACL", "SETUSER", "alice", "on", f">{password}", *rules.split())
        setup.close()
        yield TlsServer(server, port, pki)
    finally:
        server.close()


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[TlsServer]:
    """TLS on TCP (client certificates optional); no plain TCP port."""
    yield from _tls_server(pki, "optional")


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[TlsServer]:
    """TLS that requires a client certificate signed by the CA."""
    yield from _tls_server(pki, "yes")


@pytest.fixture
def tls_admin(tls_server: TlsServer) -> Iterator[redis.Redis]:
    client = tls_server.server.client()  # over the (plain) Unix socket
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def _assert_fast_path_is_tls(ts: TelescopeState) -> None:
    transport = ts.backend._transport  # type: ignore[attr-defined]
    assert transport.foreign is None  # telstate's own sockets, not a client's connections
    idle = [connection for pool in transport._idle.values() for connection in pool]
    assert idle
    assert all(isinstance(connection.sock, ssl.SSLSocket) for connection in idle)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_sync(tls_server: TlsServer, tls_admin: redis.Redis, host: str, tmp_path: Path) -> None:
    ts = TelescopeState(tls_server.url(host, ssl_ca_certs=tls_server.pki.ca))
    try:
        assert repr(ts.backend) == f"<RedisBackend rediss://{host}:{tls_server.port}/0>"
        exercise_sync(ts, tmp_path)
        _assert_fast_path_is_tls(ts)
    finally:
        ts.backend.close()
    assert tls_admin.dbsize() == 6


def test_tls_with_acl_user(tls_server: TlsServer, tls_admin: redis.Redis) -> None:
    password = USERS["alice"][0]
    url = tls_server.url(creds=userinfo("alice", password) + "@", ssl_ca_certs=tls_server.pki.ca)
    ts = TelescopeState(url)
    ts["x"] = 1
    assert ts["x"] == 1
    assert_no_secret([repr(ts), repr(ts.backend)], password)
    ts.backend.close()
    wrong = tls_server.url(creds="alice:wrong@", ssl_ca_certs=tls_server.pki.ca)
    with (
        refused_once(tls_admin, "auth"),
        pytest.raises(ConnectionError, match=r"rediss://.* refused the credentials"),
    ):
        TelescopeState(wrong)


def test_tls_large_replies_sync(tls_server: TlsServer, tls_admin: redis.Redis) -> None:
    """Replies of megabytes through the fast path's reads from the SSL socket."""
    ts = TelescopeState(tls_server.trusted_url())
    try:
        big = bytes(range(256)) * 4096  # 1 MiB
        ts["big"] = big
        assert ts["big"] == big
        array = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
        ts["array"] = array
        np.testing.assert_array_equal(ts["array"], array)
        n = 100_000
        with ts.pipeline() as batch:
            for i in range(n):
                batch.add("fixed", float(i), ts=float(i))  # members of one size: one string
        with ts.pipeline() as batch:
            for i in range(20_000):
                batch.add("mixed", i, ts=float(i))  # members of many sizes: a list
        samples = ts.get_range("fixed", st=0)
        assert len(samples) == n
        assert samples[0] == (0.0, 0.0) and samples[-1] == (n - 1.0, n - 1.0)
        assert all(value == stamp for value, stamp in samples)
        assert ts.get_range("mixed", st=0) == [(i, float(i)) for i in range(20_000)]
        _assert_fast_path_is_tls(ts)
    finally:
        ts.backend.close()


def test_tls_aio(tls_server: TlsServer, tls_admin: redis.Redis, tmp_path: Path) -> None:
    async def main() -> None:
        backend = await AioRedisBackend.from_url(tls_server.trusted_url())
        try:
            assert repr(backend).endswith(f"rediss://127.0.0.1:{tls_server.port}/0>")
            ts = telstate.aio.TelescopeState(backend)
            await exercise_aio(ts, tmp_path)
            big = os.urandom(1 << 20)
            await ts.set("big", big)
            assert await ts.get("big") == big
            async with ts.pipeline() as batch:
                for i in range(100_000):
                    batch.add("fixed", float(i), ts=float(i))
            samples = await ts.get_range("fixed", st=0)
            assert len(samples) == 100_000 and samples[-1] == (99_999.0, 99_999.0)
        finally:
            await backend.wait_closed()

    asyncio.run(main())


def _connect_fails(url: str, front: str, match: str) -> ConnectionError:
    with pytest.raises(ConnectionError, match=match) as info:
        if front == "sync":
            TelescopeState(url)
        else:

            async def main() -> None:
                backend = await AioRedisBackend.from_url(url)
                await backend.wait_closed()

            asyncio.run(main())
    return info.value


@pytest.mark.parametrize("front", ["sync", "aio"])
@pytest.mark.parametrize("trust", ["system-cas", "rogue-ca", "plain-tcp"])
@pytest.mark.timeout(HANG)  # a refusal that hung instead
def test_tls_untrusted_server_refused_promptly(
    tls_server: TlsServer, trust: str, front: str
) -> None:
    """A client that does not trust the server's CA (or does not speak TLS) cannot connect."""
    url = {
        "system-cas": tls_server.url(),
        "rogue-ca": tls_server.url(ssl_ca_certs=tls_server.pki.rogue_ca),
        "plain-tcp": f"redis://127.0.0.1:{tls_server.port}/0",
    }[trust]
    scheme = "redis" if trust == "plain-tcp" else "rediss"
    what = (
        "cannot reach redis server at"
        if trust == "plain-tcp"
        else ("TLS connection to redis server at")
    )
    error = _connect_fails(url, front, f"{what} {scheme}://127.0.0.1:{tls_server.port}/0")
    if trust != "plain-tcp":
        assert "certificate verify failed" in str(error)


@pytest.mark.parametrize("front", ["sync", "aio"])
@pytest.mark.timeout(HANG)  # a refusal that hung instead
def test_mutual_tls(mtls_server: TlsServer, front: str, tmp_path: Path) -> None:
    """With --tls-auth-clients yes: a client certificate from the CA gets in, nothing else."""
    pki = mtls_server.pki
    good = mtls_server.trusted_url(**mtls_server.client_cert())
    if front == "sync":
        ts = TelescopeState(good)
        ts.add("s", 1.0, ts=1.0)
        writer = threading.Timer(0.1, lambda: ts.add("s", 2.0, ts=2.0))
        writer.start()
        ts.wait_key("s", lambda value, stamp: value == 2.0, timeout=10)
        writer.join()
        assert ts.get_range("s", st=0) == [(1.0, 1.0), (2.0, 2.0)]
        _assert_fast_path_is_tls(ts)
        ts.clear()
        ts.backend.close()
    else:

        async def main() -> None:
            backend = await AioRedisBackend.from_url(good)
            try:
                ts = telstate.aio.TelescopeState(backend)
                await ts.set("x", 1)
                assert await ts.get("x") == 1
                await ts.clear()
            finally:
                await backend.wait_closed()

        asyncio.run(main())
    no_cert = mtls_server.trusted_url()
    rogue = mtls_server.trusted_url(
        ssl_certfile=pki.rogue_client_cert, ssl_keyfile=pki.rogue_client_key
    )
    where = f"cannot reach redis server at rediss://127.0.0.1:{mtls_server.port}/0: "
    for url in (no_cert, rogue):
        _connect_fails(url, front, where)


# =========================================================================== 3. secrets


@pytest.mark.parametrize("form", ["url", "unix-url", "unix-query", "client"])
@pytest.mark.parametrize("user", ["alice", ""])
def test_reprs_never_show_password(
    acl_server: RedisServer, admin: redis.Redis, form: str, user: str
) -> None:
    password = _password(user, None)
    ts = connect_sync(acl_server, form, user)
    backend = ts.backend
    texts = [repr(ts), str(ts), repr(ts.view("cb")), repr(backend), str(backend)]
    texts += [backend.server, repr(backend.client)]  # type: ignore[attr-defined]
    backend.close()
    assert_no_secret(texts, password)
    assert "127.0.0.1" in texts[0] or acl_server.socket_path in texts[0]

    async def main() -> list[str]:
        aio_backend = await connect_aio(acl_server, "unix-url" if "unix" in form else form, user)
        aio_ts = telstate.aio.TelescopeState(aio_backend)
        texts = [repr(aio_ts), str(aio_ts), repr(aio_backend), aio_backend.server]
        await aio_backend.wait_closed()
        return texts

    assert_no_secret(asyncio.run(main()), password)


SECRET = "Sup3r-S3cret/pw?#%:@leak"


@pytest.fixture
def dropped_server() -> Iterator[RedisServer]:
    """A server with the user 'alice' (password SECRET), killed by the test."""
    server = RedisServer(tcp=True)
    setup = server.client()
    setup.execute_command("ACL", "SETUSER", "alice", "on", f">{SECRET}", "~*", "&*", "+@all")
    setup.close()
    try:
        yield server
    finally:
        server.close()


def _failure_url(scenario: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    creds = userinfo("alice", SECRET)
    if scenario == "wrong-password":
        server: RedisServer = request.getfixturevalue("acl_server")
        return f"redis://{creds}@127.0.0.1:{server.port}/0"
    if scenario == "unreachable-tcp":
        return f"redis://{creds}@127.0.0.1:{free_port()}/0"
    if scenario == "unreachable-unix":
        return f"unix://{creds}@{tmp_path}/no-such.sock"
    assert scenario == "dropped"
    server = request.getfixturevalue("dropped_server")
    return f"redis://{creds}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("front", ["sync-url", "sync-client", "aio-url", "aio-client"])
@pytest.mark.parametrize(
    "scenario", ["wrong-password", "unreachable-tcp", "unreachable-unix", "dropped"]
)
@pytest.mark.timeout(HANG)  # a refusal that hung instead
def test_failures_never_show_password(
    scenario: str,
    front: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exception chains and log records (DEBUG and up) of failing connections: no password.

    "dropped": connected, then the server dies and the next call fails (after retrying).
    """
    caplog.set_level(logging.DEBUG)
    url = _failure_url(scenario, request, tmp_path)
    server = request.getfixturevalue("dropped_server") if scenario == "dropped" else None

    def sync() -> None:
        if front == "sync-url" and server is None:
            TelescopeState(url)  # the usual way
        if front == "sync-url":
            backend = RedisBackend.from_url(url, retry_window=0.3)
        else:
            backend = RedisBackend(redis.Redis.from_url(url), retry_window=0.3)
        try:
            ts = TelescopeState(backend)
            ts["x"] = 1
            assert server is not None
            server.stop(kill=True)
            ts.get("x")
        finally:
            backend.close()

    async def aio() -> None:
        if front == "aio-url":
            backend = await AioRedisBackend.from_url(url, retry_window=0.3)
        else:
            backend = AioRedisBackend(redis.asyncio.Redis.from_url(url), retry_window=0.3)
        try:
            ts = telstate.aio.TelescopeState(backend)
            await ts.set("x", 1)
            assert server is not None
            server.stop(kill=True)
            await ts.get("x")
        finally:
            await backend.wait_closed()

    with pytest.raises(ConnectionError) as info:
        if front.startswith("sync"):
            sync()
        else:
            asyncio.run(aio())
    message = str(info.value)
    assert "refused the credentials" in message or "cannot reach" in message
    assert_no_secret(exception_texts(info.value), SECRET)
    assert_no_secret([*log_texts(caplog.records), caplog.text], SECRET)


def test_cli_never_shows_password(
    acl_server: RedisServer, admin: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(acl_server)
    password = USERS["alice"][0]
    good = f"redis://{userinfo('alice', password)}@127.0.0.1:{acl_server.port}/0"
    wrong = f"redis://{userinfo('alice', SECRET)}@127.0.0.1:{acl_server.port}/0"
    unreachable = f"redis://{userinfo('alice', SECRET)}@127.0.0.1:{free_port()}/0"
    assert cli_main(["info", good]) == 0
    assert cli_main(["get", good, "attr"]) == 0
    assert cli_main(["keys", good]) == 0
    out, err = capsys.readouterr()
    assert f"127.0.0.1:{acl_server.port}" in out and "'a'" in out
    assert_no_secret([out, err], password)
    for url in (wrong, unreachable):
        assert cli_main(["get", url, "attr"]) == 1
        out, err = capsys.readouterr()
        assert err.startswith("telstate: error: ") and "Traceback" not in err
        assert_no_secret([out, err], SECRET)


@pytest.mark.parametrize(
    "endpoint",
    ["alice:Sup3r@127.0.0.1:1", "alice:Sup3r@localhost", "Endpoint"],
)
def test_credentials_outside_a_url_are_not_echoed(endpoint: str) -> None:
    """``user:password@host`` is no host: refused without repeating the password."""
    where: str | Endpoint = endpoint
    if endpoint == "Endpoint":
        where = Endpoint("alice:Sup3r@127.0.0.1", 1)
    with pytest.raises(ValueError, match="redis://user:password@host") as info:
        TelescopeState(where)
    assert_no_secret(exception_texts(info.value), "Sup3r")


# =========================================================================== 4. hostile data


@dataclass
class Planted:
    """Keys planted by a raw client, each holding a code-running pickle somewhere."""

    marker: Path
    payload: bytes

    def ran(self) -> bool:
        return self.marker.exists()


def plant(client: redis.Redis, payload: bytes, suffix: str = "") -> None:
    """Write the pickle into every kind of key, bypassing telstate."""
    enc = telstate.encode_value
    client.set(f"imm{suffix}", payload)
    client.zadd(f"sensor{suffix}", {member(10.0, enc(1.0)): 0, member(20.0, payload): 0})
    client.zadd(f"sensor_old{suffix}", {member(10.0, payload): 0, member(20.0, enc(2.0)): 0})
    client.hset(f"idx{suffix}", mapping={enc("a"): payload, enc("b"): enc(2)})
    client.hset(f"idx_key{suffix}", mapping={payload: enc(1)})  # a pickled sub-key


PROTOCOLS = ["protocol0", "protocol2", "protocol5"]


@pytest.fixture(params=PROTOCOLS)
def planted(
    request: pytest.FixtureRequest, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Planted]:
    marker = tmp_path / "PWNED"
    payload = hostile_pickles(marker)[request.param]
    plant(redis_client, payload)
    made = Planted(marker, payload)
    yield made
    assert not made.ran(), "a stored pickle ran code"


@pytest.fixture
def planted2(redis_client: redis.Redis, tmp_path: Path) -> Iterator[Planted]:
    """The protocol-2 pickle only (for the slower paths)."""
    marker = tmp_path / "PWNED"
    payload = hostile_pickles(marker)["protocol2"]
    plant(redis_client, payload)
    yield Planted(marker, payload)


SYNC_HOSTILE_READS: dict[str, Callable[[TelescopeState], Any]] = {
    "get": lambda ts: ts.get("imm"),
    "getitem": lambda ts: ts["imm"],
    "getattr": lambda ts: ts.imm,
    "view-fallback": lambda ts: ts.view("cb")["imm"],
    "get-sensor": lambda ts: ts.get("sensor"),
    "get_range-latest": lambda ts: ts.get_range("sensor"),
    "get_range-all": lambda ts: ts.get_range("sensor_old", st=0),
    "get_range-previous": lambda ts: ts.get_range("sensor_old", st=15, include_previous=True),
    "get_indexed": lambda ts: ts.get_indexed("idx", "a"),
    "get-indexed-dict": lambda ts: ts.get("idx"),
    "get-pickled-sub-key": lambda ts: ts.get("idx_key"),
    "wait_key-condition": lambda ts: ts.wait_key("imm", lambda v, t: True, timeout=5),
    "wait_key-sensor": lambda ts: ts.wait_key("sensor", lambda v, t: True, timeout=5),
    "wait_indexed-condition": lambda ts: ts.wait_indexed("idx", "a", lambda v: True, timeout=5),
}


def test_hostile_pickle_refused_sync(redis_client: redis.Redis, planted: Planted) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    for name, read in SYNC_HOSTILE_READS.items():
        with pytest.raises(DecodeError, match=r"pickle.*KATSDPTELSTATE_ALLOW_PICKLE=1"):
            read(ts)
        assert not planted.ran(), name
    # Paths that do not decode the hostile value are unaffected
    assert ts.get("sensor_old") == 2.0
    assert ts.get("imm", return_encoded=True) == planted.payload
    assert ts.get_range("sensor", st=0, return_encoded=True)[1] == (planted.payload, 20.0)
    assert ts.get_indexed("idx", "a", return_encoded=True) == planted.payload
    assert ts.get_indexed("idx", "b") == 2
    assert ts.key_type("idx_key") is KeyType.INDEXED
    assert ts.keys() == ["idx", "idx_key", "imm", "sensor", "sensor_old"]
    # Writes that must compare with the stored value cannot, and say so
    for write in (
        lambda: ts.set("imm", 1),
        lambda: ts.set_indexed("idx", "a", 1),
        lambda: _pipeline_set(ts, "imm"),
    ):
        with pytest.raises(ImmutableKeyError, match=r"cannot be decoded.*pickle"):
            write()


def _pipeline_set(ts: TelescopeState, key: str) -> None:
    with ts.pipeline() as batch:
        batch[key] = 1


def test_hostile_notification_refused_sync(redis_client: redis.Redis, planted2: Planted) -> None:
    """A waiter woken by a forged PUBLISH carrying a pickle refuses it too."""
    ts = TelescopeState(RedisBackend(redis_client))
    errors: list[BaseException] = []

    def wait(key: str) -> None:
        try:
            ts.wait_key(key, lambda value, stamp: True, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait, args=(key,)) for key in ("later", "later_s")]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    # what a (hostile) writer does: store, then announce
    redis_client.set("later", planted2.payload)
    redis_client.publish("update/later", planted2.payload)
    redis_client.zadd("later_s", {member(1.0, planted2.payload): 0})
    redis_client.publish("update/later_s", b"\x02" + member(1.0, planted2.payload))
    for thread in threads:
        thread.join(10)
    assert [type(error) for error in errors] == [DecodeError, DecodeError]
    assert not planted2.ran()


def test_hostile_pickle_refused_aio(
    redis_server: RedisServer, redis_client: redis.Redis, planted: Planted
) -> None:
    async def main() -> None:
        backend = await AioRedisBackend.from_url(f"unix://{redis_server.socket_path}")
        ts = telstate.aio.TelescopeState(backend)
        reads = {
            "get": lambda: ts.get("imm"),
            "getitem": lambda: ts["imm"],
            "get_range": lambda: ts.get_range("sensor_old", st=0),
            "get_indexed": lambda: ts.get_indexed("idx", "a"),
            "get-indexed-dict": lambda: ts.get("idx"),
            "get-pickled-sub-key": lambda: ts.get("idx_key"),
            "wait_key": lambda: ts.wait_key("sensor", lambda v, t: True, timeout=5),
            "wait_indexed": lambda: ts.wait_indexed("idx", "a", lambda v: True, timeout=5),
            "watch": lambda: anext(aiter(ts.watch("imm"))),
        }
        try:
            for name, read in reads.items():
                with pytest.raises(DecodeError, match="pickle"):
                    await read()
                assert not planted.ran(), name
            # watch(): a forged update carrying a pickle
            watched = ts.watch("fresh", initial=False)
            step = asyncio.ensure_future(anext(watched))
            await asyncio.sleep(0.2)
            redis_client.zadd("fresh", {member(1.0, planted.payload): 0})
            redis_client.publish("update/fresh", b"\x02" + member(1.0, planted.payload))
            with pytest.raises(DecodeError, match="pickle"):
                await asyncio.wait_for(step, 10)
            await watched.aclose()
        finally:
            await backend.wait_closed()

    asyncio.run(main())


def _assert_refused(ts: TelescopeState, planted: Planted) -> None:
    for name in ("get", "get_range-all", "get-pickled-sub-key", "get_indexed"):
        with pytest.raises(DecodeError, match="pickle"):
            SYNC_HOSTILE_READS[name](ts)
    assert ts.get("sensor_old") == 2.0
    assert not planted.ran()


def test_hostile_pickle_in_rdb_files(
    redis_server: RedisServer, redis_client: redis.Redis, planted2: Planted, tmp_path: Path
) -> None:
    """Saving, opening and loading files holding pickles never unpickles them."""
    source = TelescopeState(RedisBackend(redis_client))
    path = tmp_path / "hostile.rdb"
    assert source.save_to_file(path) == 5
    redis_client.save()  # and redis-server's own dump of the same keys
    server_dump = redis_server.dir / "dump.rdb"
    for dump in (path, server_dump):
        _assert_refused(TelescopeState.open(dump), planted2)
        _assert_refused(TelescopeState.open(dump.read_bytes(), verify_checksum=True), planted2)
        memory = TelescopeState()
        assert memory.load_from_file(dump) == 5
        _assert_refused(memory, planted2)
    # into Redis: the keys are merged with ones already there, then restored whole
    assert source.load_from_file(path) == 5
    _assert_refused(source, planted2)
    source.clear()
    assert source.load_from_file(server_dump) == 5
    _assert_refused(source, planted2)

    async def main() -> None:
        opened = await telstate.aio.TelescopeState.open(path)
        with pytest.raises(DecodeError, match="pickle"):
            await opened.get("imm")
        loaded = telstate.aio.TelescopeState()
        assert await loaded.load_from_file(path) == 5
        with pytest.raises(DecodeError, match="pickle"):
            await loaded.get_range("sensor_old", st=0)

    asyncio.run(main())
    assert not planted2.ran()


def test_hostile_pickle_cli(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    planted2: Planted,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"unix://{redis_server.socket_path}"
    path = tmp_path / "hostile.rdb"
    TelescopeState(RedisBackend(redis_client)).save_to_file(path)
    for source in (url, str(path)):
        for argv in (["get", source, "imm"], ["get", source, "idx"], ["range", source, "sensor"]):
            assert cli_main(argv) == 1, argv
            _, err = capsys.readouterr()
            assert err.startswith("telstate: error: this value is a Python pickle"), err
        for argv in (["keys", source], ["info", source], ["get", source, "sensor_old"]):
            assert cli_main(argv) == 0, argv
        assert cli_main(["copy", source, str(tmp_path / "copy.rdb"), "--force"]) == 0
        capsys.readouterr()
    assert not planted2.ran()


@pytest.mark.parametrize("value", [b"", b"\x81", b"\xfe", b"\xff", b"\xff\xc1", b"\xff\x92\x01"])
def test_corrupt_stored_values_raise_decode_error(redis_client: redis.Redis, value: bytes) -> None:
    """Unknown encoding bytes and broken MessagePack: DecodeError, on get and get_range."""
    redis_client.set("imm", value)
    redis_client.zadd("sensor", {bytes(8) + value: 0})
    ts = TelescopeState(RedisBackend(redis_client))
    for read in (lambda: ts["imm"], lambda: ts.get_range("sensor", st=0)):
        with pytest.raises(DecodeError):
            read()


def test_set_allow_pickle_is_the_switch(
    redis_client: redis.Redis, planted2: Planted, restore_pickle_setting: None
) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    with pytest.raises(DecodeError):
        ts["imm"]
    assert not planted2.ran()
    telstate.set_allow_pickle(True)
    assert ts["imm"] is None  # what exec() returns: the pickle ran
    assert planted2.ran()
    planted2.marker.unlink()
    # a per-call refusal beats the global switch
    with pytest.raises(DecodeError):
        telstate.decode_value(planted2.payload, allow_pickle=False)
    telstate.set_allow_pickle(True, warn=True)
    with pytest.warns(FutureWarning, match="pickle"):
        ts.get_indexed("idx", "a")
    planted2.marker.unlink()
    telstate.set_allow_pickle(False)
    with pytest.raises(DecodeError):
        ts.get_range("sensor", st=0)
    assert not planted2.ran()


_SUBPROCESS_READ = """
import sys, telstate
ts = telstate.TelescopeState(sys.argv[1])
try:
    print("value", ts[sys.argv[2]])
except telstate.DecodeError as exc:
    print("refused", exc)
"""


def test_environment_variable_is_the_switch(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """KATSDPTELSTATE_ALLOW_PICKLE=1 allows pickles; unset, 0 or anything else does not."""
    settings = {"one": "1", "zero": "0", "unset": None, "yes": "yes", "empty": ""}
    markers = {}
    procs = {}
    for name, setting in settings.items():
        markers[name] = tmp_path / f"PWNED-{name}"
        redis_client.set(f"imm_{name}", hostile_pickles(markers[name])["protocol2"])
        env = {k: v for k, v in os.environ.items() if k != "KATSDPTELSTATE_ALLOW_PICKLE"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        if setting is not None:
            env["KATSDPTELSTATE_ALLOW_PICKLE"] = setting
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", _SUBPROCESS_READ, redis_server.url, f"imm_{name}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        if name == "one":
            assert out.startswith("value None") and markers[name].exists()
        else:
            assert out.startswith("refused this value is a Python pickle"), (name, out, err)
            assert not markers[name].exists(), name
        if name in ("yes", "empty"):
            assert "KATSDPTELSTATE_ALLOW_PICKLE should be 0 or 1" in err
        else:
            assert "Warning" not in err


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_source_has_no_other_way_to_run_data() -> None:
    """No eval/exec/compile, no unpickling but the gated call in _codec.py, no pickled numpy."""
    risky = {"eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"}
    loaders = {"pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.load", "marshal.loads"}
    found: list[str] = []
    unpickles: list[str] = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        text = path.read_text()
        tree = ast.parse(text, str(path))
        where = str(path.relative_to(SRC))
        for node, name in _calls(tree):
            if name in risky:
                found.append(f"{where}:{node.lineno} {name}(")
            if name in loaders:
                unpickles.append(f"{where}:{node.lineno} {name}(")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{where}:{node.lineno} allow_pickle={ast.unparse(keyword.value)}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names]
                module = getattr(node, "module", None) or ""
                for banned in ("marshal", "shelve", "yaml", "dill", "cloudpickle", "jsonpickle"):
                    if banned in names or module.startswith(banned):
                        found.append(f"{where}:{node.lineno} import {banned}")
                if module == "pickle":
                    found.append(f"{where}:{node.lineno} from pickle import {names}")
    assert found == []
    assert len(unpickles) == 1 and unpickles[0].startswith("telstate/_codec.py:"), unpickles
    # ... and that one call sits behind the refusal
    codec = ast.parse((SRC / "telstate" / "_codec.py").read_text())
    (unpickle,) = [
        node
        for node in ast.walk(codec)
        if isinstance(node, ast.FunctionDef) and node.name == "_unpickle"
    ]
    source = ast.unparse(unpickle)
    gate = source.index("if not allow_pickle:\n        raise DecodeError(_PICKLE_REFUSED)")
    assert gate < source.index("pickle.loads(")
    callers = [
        f"{path.name}:{node.lineno}"
        for path in files
        for node, name in _calls(ast.parse(path.read_text()))
        if name == "_unpickle"
    ]
    assert callers == [callers[0]] and callers[0].startswith("_codec.py")


# =========================================================================== 5. bad input

NAN = math.nan
_recursive: list[Any] = []
_recursive.append(_recursive)
_gen = (x for x in ())

Op = tuple[str, tuple[Any, ...], dict[str, Any]]
#: (description, operation, exception, message pattern)
BAD_INPUT: list[tuple[str, Op, type[BaseException], str]] = []


def _case(what: str, op: Op, exc: type[BaseException], match: str) -> None:
    BAD_INPUT.append((what, op, exc, match))


for _key in (1, None, 2.5, ["k"], ("k",), {"k": 1}, object(), True):
    _name = type(_key).__name__
    _case(f"key {_name} (sensor)", ("add", (_key, 1), {"ts": 1.0}), TypeError, "key must be str")
    _case(f"key {_name} (immutable)", ("set", (_key, 1), {}), TypeError, "key must be str")
    _case(f"key {_name} (indexed)", ("set_indexed", (_key, "a", 1), {}), TypeError, "key must")
    _case(f"key {_name} (item)", ("setitem", (_key, 1), {}), TypeError, "key must be str")

for _ts in (NAN, math.inf, -math.inf, -1.0, -1e-300, np.float64("nan"), np.float32(-1), -(2**70)):
    _case(f"timestamp {_ts!r}", ("add", ("s", 1), {"ts": _ts}), InvalidTimestampError, "timest")
_case("timestamp 'abc'", ("add", ("s", 1), {"ts": "abc"}), ValueError, "could not convert")
_case("timestamp 1j", ("add", ("s", 1), {"ts": 1j}), TypeError, "float")
_case("timestamp []", ("add", ("s", 1), {"ts": []}), TypeError, "float")

for _sub in ([1], {"a": 1}, {1}, np.arange(3), bytearray(b"x"), (1, [2])):
    _what = f"sub-key {type(_sub).__name__} {_sub!r}"
    _case(_what, ("set_indexed", ("i", _sub, 1), {}), TypeError, "unhashable")
for _sub in (
    object(),
    frozenset({1}),
    2**64,
    (1, object()),
    decimal.Decimal("1"),
    print,
    datetime.date(2020, 1, 1),
    Endpoint("h", 1),
):
    _what = f"sub-key {type(_sub).__name__}"
    _case(_what, ("set_indexed", ("i", _sub, 1), {}), EncodeError, "cannot encode")

for _enc in (b"\x00", b"", "msgpack", b"\xfe", None, b"\xff\xff", 255, b"\x7f"):
    for _op in (
        ("add", ("s", 1), {"ts": 1.0, "encoding": _enc}),
        ("add", ("k", 1), {"immutable": True, "encoding": _enc}),
        ("set", ("k", 1), {"encoding": _enc}),
        ("set_indexed", ("i", "a", 1), {"encoding": _enc}),
    ):
        _case(f"encoding {_enc!r} ({_op[0]})", _op, ValueError, "unknown encoding")


_BAD_VALUES: list[tuple[str, Any, str]] = [
    ("object", object(), "cannot encode values of type object"),
    ("set", {1, 2}, "type set"),
    ("frozenset", frozenset(), "type frozenset"),
    ("int 2**64", 2**64, "integer 18446744073709551616: MessagePack integers are 64-bit"),
    ("int -2**63-1", -(2**63) - 1, "integers are 64-bit"),
    ("int 10**5000", 10**5000, "integer of 16610 bits"),
    ("function", print, "type builtin_function_or_method"),
    ("recursive list", _recursive, "recursion limit"),
    ("object array", np.array([object()]), "dtype object"),
    ("mixed object array", np.array([1, "a"], dtype=object), "dtype object"),
    ("nested object", {"a": [1, (2, {"b": object()})]}, "type object"),
    ("nested set", [1, {2: {3}}], "type set"),
    ("unencodable dict key", {object(): 1}, "type object"),
    ("Decimal", decimal.Decimal("1.5"), "type Decimal"),
    ("datetime", datetime.datetime(2020, 1, 1), "type datetime"),
    ("generator", _gen, "type generator"),
    ("Endpoint", Endpoint("h", 1), "type Endpoint"),
]
for _what, _value, _match in _BAD_VALUES:
    _case(f"value {_what} (immutable)", ("set", ("k", _value), {}), EncodeError, _match)
    _case(f"value {_what} (sensor)", ("add", ("s", _value), {"ts": 1.0}), EncodeError, _match)
    _case(f"value {_what} (indexed)", ("set_indexed", ("i", "a", _value), {}), EncodeError, _match)

for _what, _value in (("lambda", lambda: 0), ("lock", threading.Lock()), ("generator", _gen)):
    _op = ("set", ("k", _value), {"encoding": telstate.ENCODING_PICKLE})
    _case(f"value {_what} (pickle encoding)", _op, EncodeError, "cannot pickle")


def _sync_apply(ts: TelescopeState, op: Op, pipeline: bool) -> None:
    kind, args, kwargs = op
    if not pipeline:
        if kind == "setitem":
            ts[args[0]] = args[1]
        else:
            getattr(ts, kind)(*args, **kwargs)
        return
    with ts.pipeline() as batch:
        batch["good_before"] = 1  # never sent: the batch fails before it is executed
        if kind == "setitem":
            batch[args[0]] = args[1]
        else:
            getattr(batch, kind)(*args, **kwargs)


async def _aio_apply(ts: telstate.aio.TelescopeState, op: Op, pipeline: bool) -> None:
    kind, args, kwargs = op
    if not pipeline:
        if kind == "setitem":
            kind = "set"
        await getattr(ts, kind)(*args, **kwargs)
        return
    async with ts.pipeline() as batch:
        batch["good_before"] = 1
        if kind == "setitem":
            batch[args[0]] = args[1]
        else:
            getattr(batch, kind)(*args, **kwargs)


def _check_outcome(
    what: str, exc: type[BaseException], match: str, error: BaseException | None
) -> str | None:
    if error is None:
        return f"{what}: no error"
    if not isinstance(error, exc):
        return f"{what}: {type(error).__name__}({error}) is not a {exc.__name__}"
    if not re.search(match, str(error)):
        return f"{what}: message {str(error)!r} lacks {match!r}"
    return None


@pytest.mark.parametrize("front", ["sync", "sync-pipeline", "aio", "aio-pipeline"])
def test_bad_input_refused_before_any_write(
    redis_server: RedisServer, redis_client: redis.Redis, front: str
) -> None:
    problems: list[str] = []
    if front.startswith("sync"):
        ts = TelescopeState(RedisBackend(redis_client))
        redis_client.config_resetstat()
        for what, op, exc, match in BAD_INPUT:
            error = None
            try:
                _sync_apply(ts, op, front.endswith("pipeline"))
            except Exception as caught:
                error = caught
            problems.append(_check_outcome(what, exc, match, error) or "")
    else:

        async def main() -> None:
            backend = await AioRedisBackend.from_url(f"unix://{redis_server.socket_path}")
            ts = telstate.aio.TelescopeState(backend)
            redis_client.config_resetstat()
            try:
                for what, op, exc, match in BAD_INPUT:
                    error = None
                    try:
                        await _aio_apply(ts, op, front.endswith("pipeline"))
                    except Exception as caught:
                        error = caught
                    problems.append(_check_outcome(what, exc, match, error) or "")
            finally:
                await backend.wait_closed()

        asyncio.run(main())
    assert [problem for problem in problems if problem] == []
    calls = command_calls(redis_client)
    assert set(calls) <= ADMIN_COMMANDS, calls  # not one command reached the server
    assert redis_client.dbsize() == 0


def test_negative_zero_timestamp_is_stored_as_zero(redis_client: redis.Redis) -> None:
    """-0.0 is the one negative-looking timestamp accepted: stored as +0.0, so it sorts first."""
    ts = TelescopeState(RedisBackend(redis_client))
    ts.add("s", "zero", ts=-0.0)
    ts.add("s", "one", ts=1.0)
    assert ts.get_range("s", st=0) == [("zero", 0.0), ("one", 1.0)]
    assert redis_client.zrange("s", 0, 0)[0][:8] == bytes(8)
