"""Redis-specific behaviour: connecting, server-side commands used, pub/sub recovery."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis

import telstate
import telstate.aio
from telstate import ConnectionError, TelescopeState
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend
from telstate.endpoint import Endpoint

from .servers import RedisServer, free_port


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[RedisServer]:
    server = RedisServer(tcp=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tcp_ts(tcp_server: RedisServer) -> Iterator[TelescopeState]:
    client = tcp_server.client()
    client.flushall()
    client.close()
    ts = TelescopeState(f"127.0.0.1:{tcp_server.port}")
    yield ts
    ts.backend.close()


def _commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(info["calls"]) for name, info in stats.items()}


def _calls_during(client: redis.Redis, action: object) -> dict[str, int]:
    before = _commands(client)
    action()  # type: ignore[operator]
    after = _commands(client)
    return {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}


@pytest.mark.parametrize(
    "form", ["host:port", "endpoint", "url", "url_db", "backend_url", "unix_url"]
)
def test_connect_forms(tcp_server: RedisServer, form: str) -> None:
    port = tcp_server.port
    endpoint: str | Endpoint | telstate.Backend = {
        "host:port": f"127.0.0.1:{port}",
        "endpoint": Endpoint("127.0.0.1", port),
        "url": f"redis://127.0.0.1:{port}",
        "url_db": f"redis://127.0.0.1:{port}/3",
        "backend_url": "",
        "unix_url": f"unix://{tcp_server.socket_path}",
    }[form]
    if form == "backend_url":
        endpoint = RedisBackend.from_url(f"redis://127.0.0.1:{port}", db=2)
    ts = TelescopeState(endpoint)
    key = f"connect_{form}"
    ts[key] = form
    client = tcp_server.client(db={"url_db": 3, "backend_url": 2}.get(form, 0))
    assert client.get(key) == telstate.encode_value(form)
    client.delete(key)
    client.close()
    ts.backend.close()


def test_db_argument(tcp_server: RedisServer) -> None:
    ts = TelescopeState(f"127.0.0.1:{tcp_server.port}", db=5)
    ts["in_db5"] = 1
    client = tcp_server.client(db=5)
    assert client.exists("in_db5")
    client.flushdb()
    client.close()
    ts.backend.close()


@pytest.mark.parametrize(
    "where", ["host:port", "url", "unix"], ids=["host:port", "url", "unix-socket"]
)
@pytest.mark.timeout(60)  # a refused connection retried forever would hang here
def test_unreachable_server_raises(where: str, tmp_path: object) -> None:
    port = free_port()  # nothing listens there
    endpoint = {
        "host:port": f"127.0.0.1:{port}",
        "url": f"redis://user:secret-password@127.0.0.1:{port}/0",
        "unix": f"unix://{tmp_path}/no.sock",
    }[where]
    with pytest.raises(ConnectionError) as info:
        TelescopeState(endpoint)
    message = str(info.value)
    assert (str(port) in message) or ("no.sock" in message)
    assert "secret-password" not in message
    assert "secret-password" not in repr(info.value)


def test_decoding_client_is_refused(redis_server: RedisServer) -> None:
    client = redis_server.client(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisBackend(client)
    client.close()


def test_keys_scans_delete_unlinks_clear_is_async(redis_client: redis.Redis) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    for i in range(50):
        ts[f"k{i}"] = i
    calls = _calls_during(redis_client, lambda: ts.keys("k1*"))
    assert "keys" not in calls and calls["scan"] >= 1
    assert ts.keys("k1*") == sorted(["k1"] + [f"k1{i}" for i in range(10)])
    calls = _calls_during(redis_client, lambda: ts.view("v").delete("k1"))
    assert calls.get("unlink") == 1 and "del" not in calls
    assert "k1" not in ts
    calls = _calls_during(redis_client, ts.clear)
    assert calls.get("flushdb") == 1
    assert ts.keys() == []


def test_view_reads_take_one_round_trip(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    ts["x"] = 1
    ts.add("s", 1.0, ts=1.0)
    ts.set_indexed("i", "a", 1)
    view = ts.view("a").view("b").view("c")
    reads = (
        lambda: view["x"],
        lambda: view.get_range("s", st=0),
        lambda: view.get_indexed("i", "a"),
        lambda: view.key_type("x"),
        lambda: view.exists("x"),
    )
    for read in reads:
        read()  # the first call of a script also loads it into the server
    # Round trips, counted where the transport sends: one batch of commands per read.
    from telstate._redis import sync

    sends: list[int] = []
    for cls in (sync.SocketConnection, sync.ClientConnection):
        original = cls.exchange

        def counting(
            self: Any, payload: bytes, count: int, *more: Any, original: Any = original
        ) -> Any:
            sends.append(count)
            return original(self, payload, count, *more)

        monkeypatch.setattr(cls, "exchange", counting)
    for read in reads:
        sends.clear()
        read()
        assert len(sends) == 1  # one round trip (key_type sends a TYPE per prefix in it)


def test_pipeline_is_one_round_trip_and_atomic_per_write(redis_client: redis.Redis) -> None:
    ts = TelescopeState(RedisBackend(redis_client))

    def write() -> None:
        with ts.pipeline() as batch:
            for i in range(5000):
                batch.add("s", float(i), ts=float(i))
            for i in range(10):
                batch[f"a{i}"] = i
            for i in range(10):
                batch.set_indexed("idx", i, i)

    calls = _calls_during(redis_client, write)
    # 5000 samples in chunks of 2000, then one call for the immutables, one for the sub-keys
    assert calls.get("evalsha", 0) + calls.get("eval", 0) == 5
    assert redis_client.zcard("s") == 5000
    assert ts["idx"] == {i: i for i in range(10)}


def test_wait_survives_dropped_pubsub_connection(redis_client: redis.Redis) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    admin = redis.Redis(connection_pool=redis_client.connection_pool)
    done = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            ts.wait_key("k", lambda value, stamp: value == 2, timeout=20)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    killed = admin.client_kill_filter(_type="pubsub")
    assert killed >= 1
    # This write happens while the waiter may still be reconnecting: it must not be missed.
    ts.add("k", 2, ts=1.0)
    assert done.wait(15)
    thread.join()
    assert not errors


def test_wait_key_is_woken_by_write_not_polling(redis_client: redis.Redis) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    thread = threading.Thread(target=lambda: ts.wait_key("k", timeout=10))
    before = _commands(redis_client)
    thread.start()
    time.sleep(1.0)  # a poller would issue reads meanwhile
    during = _commands(redis_client)
    ts["k"] = 1
    thread.join(10)
    assert not thread.is_alive()
    calls = {name: n - before.get(name, 0) for name, n in during.items()}
    reads = calls.get("evalsha", 0) + calls.get("exists", 0) + calls.get("get", 0)
    assert reads <= 2  # the checks before and after subscribing, nothing more


def test_connection_errors_are_also_redis_py_errors(tmp_path: Path) -> None:
    """katsdptelstate let redis-py's errors through: ``except redis.ConnectionError`` must work."""
    import fakeredis

    path = tmp_path / "one.rdb"
    source = TelescopeState()
    source["x"] = 1
    source.save_to_file(path)
    # (a short retry window: how long a first contact retries is not the point here)
    unreachable = f"redis://127.0.0.1:{free_port()}?retry_window=0.2"
    with pytest.raises(redis.ConnectionError) as info:
        TelescopeState(unreachable)
    assert isinstance(info.value, telstate.ConnectionError)

    server = fakeredis.FakeServer()
    ts = TelescopeState(RedisBackend(fakeredis.FakeRedis(server=server), retry_window=0))
    server.connected = False
    for call in (lambda: ts.get("x"), lambda: ts.load_from_file(path)):
        with pytest.raises(telstate.ConnectionError) as info:
            call()
        assert isinstance(info.value, redis.ConnectionError)
        assert not isinstance(info.value, telstate.RdbParseError)

    async def main() -> None:
        import fakeredis.aioredis

        from telstate.aio.redis import RedisBackend as AioRedisBackend

        server = fakeredis.FakeServer()
        backend = AioRedisBackend(fakeredis.aioredis.FakeRedis(server=server), retry_window=0)
        ts = telstate.aio.TelescopeState(backend)
        await ts.set("x", 1)
        server.connected = False
        for call in (lambda: ts.get("x"), lambda: ts.load_from_file(path)):
            with pytest.raises(telstate.ConnectionError) as info:
                await call()
            assert isinstance(info.value, redis.ConnectionError)
        with pytest.raises(redis.ConnectionError):
            await AioRedisBackend.from_url(unreachable)

    asyncio.run(main())


def test_clients_are_made_with_katsdptelstate_s_call() -> None:
    """Code that patches redis.Redis to inject fakeredis (as katsdptelstate's tests do) works."""
    import fakeredis

    def fake(*args: object, **kwargs: object) -> fakeredis.FakeRedis:
        return fakeredis.FakeRedis(server=fakeredis.FakeServer())

    expected = {"socket_timeout": mock.ANY, "health_check_interval": mock.ANY}
    with mock.patch("redis.Redis", side_effect=fake) as made:
        states = [TelescopeState("example.com", 1), TelescopeState("example.com:7000")]
    assert made.call_args_list == [
        mock.call(host="example.com", db=1, **expected),
        mock.call(host="example.com", db=0, port=7000, **expected),
    ]
    with mock.patch("redis.Redis.from_url", side_effect=fake) as made:
        states += [TelescopeState("redis://example.com", db=1)]
        states += [TelescopeState("redis://example.com")]
        states += [TelescopeState(RedisBackend.from_url("redis://example.com/2"))]
    assert made.call_args_list == [
        mock.call("redis://example.com", db=1, **expected),
        mock.call("redis://example.com", db=0, **expected),
        mock.call("redis://example.com/2", db=None, **expected),
    ]
    for i, ts in enumerate(states):
        ts["x"] = i
        assert ts["x"] == i


# ------------------------------------------------------------------------ the quick lane
#
# get, add and set of one key are sent without their plans when all is well
# (RedisBackend, SyncTransport.quick); anything unusual runs the plan, with every rule.


def _count_exchanges(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from telstate._redis import sync

    counts = {"quick": 0, "plan": 0}
    original_one, original = sync.SocketConnection.exchange_one, sync.SocketConnection.exchange

    def one(self: Any, payload: bytes) -> Any:
        counts["quick"] += 1
        return original_one(self, payload)

    def many(self: Any, payload: bytes, count: int, *more: Any) -> Any:
        counts["plan"] += 1
        return original(self, payload, count, *more)

    monkeypatch.setattr(sync.SocketConnection, "exchange_one", one)
    monkeypatch.setattr(sync.SocketConnection, "exchange", many)
    return counts


def test_quick_lane_carries_the_hot_calls(
    tcp_ts: TelescopeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    tcp_ts["a"] = 1  # scripts loaded
    tcp_ts.add("s", 1.0, ts=1.0)
    counts = _count_exchanges(monkeypatch)
    assert tcp_ts["a"] == 1
    tcp_ts.add("s", 2.0, ts=2.0)
    tcp_ts["a"] = 1  # an equal value set again
    tcp_ts["b"] = 2
    assert tcp_ts.get("s") == 2.0
    assert tcp_ts.get("absent") is None
    assert counts == {"quick": 6, "plan": 0}
    with pytest.raises(telstate.ImmutableKeyError):
        tcp_ts["a"] = 2


def test_quick_lane_error_replies_run_the_plan(
    tcp_server: RedisServer, tcp_ts: TelescopeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = tcp_server.client()
    try:
        tcp_ts["imm"] = 1
        admin.rpush("list", b"x")  # a type telstate does not use
        counts = _count_exchanges(monkeypatch)
        with pytest.raises(telstate.ImmutableKeyError):
            tcp_ts.add("imm", 1.0, ts=1.0)  # WRONGTYPE
        with pytest.raises(telstate.ImmutableKeyError):
            tcp_ts["list"]
        with pytest.raises(telstate.ImmutableKeyError):
            tcp_ts["list"] = 1
        assert counts == {"quick": 3, "plan": 3}  # each error reply sent again by the plan
        admin.script_flush()  # NOSCRIPT: the plan loads the scripts and sends again
        assert tcp_ts["imm"] == 1
        tcp_ts.add("s", 1.0, ts=1.0)
        assert tcp_ts.get_range("s", st=0) == [(1.0, 1.0)]
    finally:
        admin.close()


def test_quick_lane_dropped_connection_runs_the_plan(tcp_server: RedisServer) -> None:
    ts = TelescopeState(f"127.0.0.1:{tcp_server.port}")
    admin = tcp_server.client()
    try:
        ts["a"] = 1
        # telstate's idle connection is killed: the quick try fails, the plan reconnects
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert ts["a"] == 1
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        ts.add("s", 1.0, ts=1.0)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        ts["b"] = 2
        assert ts.get_range("s", st=0) == [(1.0, 1.0)]
        assert ts["b"] == 2
    finally:
        admin.close()
        ts.backend.close()


def test_silent_server_times_out_by_socket_timeout(tcp_server: RedisServer) -> None:
    """A server that stops answering: each try gives up after socket_timeout, the call
    after the retry window, and says why."""
    url = f"redis://127.0.0.1:{tcp_server.port}/?socket_timeout=0.2&retry_window=0.3"
    ts = TelescopeState(RedisBackend.from_url(url))
    admin = tcp_server.client()
    try:
        ts["a"] = 1
        admin.client_pause(1500)
        start = time.monotonic()
        with pytest.raises(ConnectionError, match=r"did not answer in 0\.2 s"):
            ts["a"]
        assert time.monotonic() - start < 1.4  # gave up before the server came back
        time.sleep(1.6)
        assert ts["a"] == 1
    finally:
        admin.close()
        ts.backend.close()


def _run_aio(url: str, body: Callable[[telstate.aio.TelescopeState], Awaitable[None]]) -> None:
    """Run `body` on an asyncio TelescopeState of `url`, closed after it."""

    async def main() -> None:
        backend = await AioRedisBackend.from_url(url)
        try:
            await body(telstate.aio.TelescopeState(backend))
        finally:
            await backend.wait_closed()

    asyncio.run(main())


def test_silent_server_times_out_by_socket_timeout_aio(tcp_server: RedisServer) -> None:
    """The asyncio twin: a request waits `socket_timeout` for a sign of life, then the
    call retries for the retry window and gives up, saying why; later calls work."""
    url = f"redis://127.0.0.1:{tcp_server.port}/?socket_timeout=0.2&retry_window=0.3"
    admin = tcp_server.client()

    async def body(ts: telstate.aio.TelescopeState) -> None:
        await ts.set("a", 1)
        admin.client_pause(1500)
        start = time.monotonic()
        with pytest.raises(ConnectionError, match=r"did not answer in 0\.2 s"):
            await ts.get("a")
        assert time.monotonic() - start < 1.4  # gave up before the server came back
        await asyncio.sleep(1.6)
        assert await ts.get("a") == 1

    try:
        _run_aio(url, body)
    finally:
        admin.close()


def test_immutables_read_again_by_get_aio(tcp_server: RedisServer) -> None:
    """The asyncio backend's quick lane: an attribute is read next by a plain GET, and a
    key of another type since is read by the script again; writes take one call each."""
    admin = tcp_server.client()
    admin.flushall()

    async def body(ts: telstate.aio.TelescopeState) -> None:
        calls = _commands(admin)
        await ts.set("k", 1)
        await ts.add("s", 1.0, ts=1.0)
        assert await ts.get("k") == 1  # by the script: an immutable
        after = _commands(admin)
        assert after["evalsha"] - calls.get("evalsha", 0) == 3  # one call each
        assert await ts.get("k") == 1
        assert _commands(admin)["get"] - after.get("get", 0) == 1
        await ts.delete("k")
        assert await ts.get("k") is None  # GET: nil
        await ts.add("k", 3.0, ts=1.0)
        assert await ts.get("k") == 3.0  # GET: WRONGTYPE, then the script
        before = _commands(admin)
        assert await ts.get("k") == 3.0
        assert _commands(admin).get("get", 0) == before.get("get", 0)  # script only
        assert await ts.get_range("s", st=0) == [(1.0, 1.0)]

    try:
        _run_aio(f"redis://127.0.0.1:{tcp_server.port}", body)
    finally:
        admin.close()


def test_stats_of_no_keys_waits_for_nothing(tcp_server: RedisServer) -> None:
    """A call of no commands (``telstate copy`` of an empty server asks the stats of no
    keys) is answered at once: it used to wait for a reply that never came, until the
    socket timeout dropped the connection."""
    url = f"redis://127.0.0.1:{tcp_server.port}/?socket_timeout=0.5"
    admin = tcp_server.client()

    def connections() -> int:
        return int(admin.info("stats")["total_connections_received"])

    async def body(ts: telstate.aio.TelescopeState) -> None:
        await ts.set("a", 1)  # connected
        before = connections()
        assert await ts.backend.stats([]) == []
        assert await ts.backend.stats([b"a"]) != [None]
        assert connections() == before  # the connection was kept: nothing timed out

    try:
        ts = TelescopeState(RedisBackend.from_url(url))
        ts["a"] = 1
        before = connections()
        assert ts.backend.stats([]) == []
        assert ts.backend.stats([b"a"]) != [None]
        assert connections() == before
        ts.backend.close()
        _run_aio(url, body)
    finally:
        admin.close()


def test_ended_wait_unsubscribes_on_the_hub_s_next_turn(
    tcp_server: RedisServer, tcp_ts: TelescopeState
) -> None:
    """A woken wait leaves without waking the hub: its UNSUBSCRIBE goes out on the hub's
    next turn; a wait on the same key meanwhile keeps the channel and is woken."""
    admin = tcp_server.client()

    def listeners() -> int:
        return int(admin.pubsub_numsub("update/s")[0][1])

    def wait_for(value: float) -> threading.Thread:
        thread = threading.Thread(
            target=tcp_ts.wait_key, args=("s", lambda v, _: v == value), kwargs={"timeout": 10}
        )
        thread.start()
        deadline = time.monotonic() + 10
        while listeners() != 1:
            assert time.monotonic() < deadline, "the wait did not subscribe"
            time.sleep(0.005)
        return thread

    try:
        first = wait_for(1.0)
        tcp_ts.add("s", 1.0, ts=1.0)
        first.join(10)
        assert not first.is_alive()
        second = wait_for(2.0)  # subscribed at once, or after the first one's UNSUBSCRIBE
        tcp_ts.add("s", 2.0, ts=2.0)
        second.join(10)
        assert not second.is_alive()
        deadline = time.monotonic() + 5
        while listeners():
            assert time.monotonic() < deadline, "the channel was never unsubscribed"
            time.sleep(0.02)
    finally:
        admin.close()


def test_immutables_read_again_by_get_whatever_became_of_them(
    tcp_server: RedisServer, tcp_ts: TelescopeState
) -> None:
    """A key read as an immutable is read next by a plain GET; a key deleted or of
    another type since still reads as the get script would read it."""
    admin = tcp_server.client()
    try:
        tcp_ts["k"] = 1
        assert tcp_ts["k"] == 1  # by the script: an immutable
        assert _calls_during(admin, lambda: tcp_ts["k"]).get("get") == 1
        tcp_ts.delete("k")
        with pytest.raises(KeyError):
            tcp_ts["k"]  # GET: nil
        assert tcp_ts.get("k") is None
        tcp_ts["k"] = 2
        assert tcp_ts["k"] == 2
        tcp_ts.delete("k")
        tcp_ts.add("k", 3.0, ts=1.0)
        assert tcp_ts["k"] == 3.0  # GET: WRONGTYPE, then the script
        assert tcp_ts.key_type("k") == telstate.KeyType.MUTABLE
        calls = _calls_during(admin, lambda: tcp_ts["k"])
        assert "get" not in calls  # no longer taken for an immutable
        tcp_ts.delete("k")
        tcp_ts["k"] = 4
        assert tcp_ts["k"] == 4
        tcp_ts.delete("k")
        tcp_ts.set_indexed("k", "a", 5)
        assert tcp_ts["k"] == {"a": 5}
    finally:
        admin.close()
