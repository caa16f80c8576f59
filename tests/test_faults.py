"""Server faults: real redis-server processes SIGKILLed and restarted mid-operation.

Every server here runs with ``--appendonly yes --appendfsync always``
(:data:`.servers.DURABLE_ARGS`): Redis fsyncs its append-only file before it sends
any reply, so every write a client saw acknowledged survives SIGKILL, and the
server restarted on the same directory, socket and port loads it back.  (Without
that a kill would lose acknowledged writes for reasons that have nothing to do
with telstate.)  A kill "in the middle" of an operation is made deterministic by
:func:`kill_midway`: it waits until the operation has changed the server, freezes
every client with ``CLIENT PAUSE ALL`` (so the operation cannot finish), then
SIGKILLs the server, waits, and restarts it.

What a user gets, as these tests check it (the sync and asyncio backends share one
transport, so the same rules hold for both):

* a call that meets a dead, restarting or refusing server is sent again on fresh
  connections with backoff (50 ms doubling to 1 s) until ``retry_window`` (default
  5 s) would be overrun, then raises ``telstate.ConnectionError`` naming the server.
  A restart shorter than that is invisible: adds, pipelines, RDB loads and saves all
  complete, each write applied exactly once.  Once the server is back the same
  TelescopeState works again;
* a blocked ``wait_key`` rides through restarts (the pub/sub hub resubscribes and
  tells it to look again) and is woken by a write made afterwards; if the server
  stays down it raises ConnectionError once the hub's retries are spent, or
  TimeoutError at its own timeout if that comes first;
* a ``save_to_file`` that raises removes its file (nothing that looks complete).

``TELSTATE_FAULT_ROUNDS=N`` (default 2) sets the kill/restart cycles per test for a
longer run, e.g. ``TELSTATE_FAULT_ROUNDS=20 pytest -s tests/test_faults.py``; each
test prints a one-line summary of the faults injected and the data checked.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

import telstate
import telstate.aio
from telstate import TelescopeState
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend

from .servers import DURABLE_ARGS, RedisServer
from .snapshots import aio_contents, contents

ROUNDS = max(1, int(os.environ.get("TELSTATE_FAULT_ROUNDS", "2")))
DOWNTIME = 0.5  # seconds a killed server stays down
T0 = 1_600_000_000.0  # timestamps of the samples written
AIO_GIVE_UP = (4.5, 9.0)  # a call to a server that stays away raises in between


@pytest.fixture
def make_server() -> Iterator[Callable[..., RedisServer]]:
    """Durable private servers (closed at the end of the test)."""
    made: list[RedisServer] = []

    def make(tcp: bool = False) -> RedisServer:
        server = RedisServer(tcp=tcp, args=DURABLE_ARGS)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture(params=["unix", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url_of(server: RedisServer, transport: str = "unix") -> str:
    if transport == "tcp":
        assert server.port
        return f"redis://127.0.0.1:{server.port}"
    return f"unix://{server.socket_path}"


def bounce(server: RedisServer, downtime: float = DOWNTIME) -> None:
    """SIGKILL the server, leave it down for `downtime` seconds, restart it."""
    server.kill()
    time.sleep(downtime)
    server.start()


def kill_midway(
    server: RedisServer,
    progress: Callable[[redis.Redis], bool],
    done: threading.Event,
    downtime: float = DOWNTIME,
    restart: bool = True,
) -> bool:
    """Kill `server` once an operation has made `progress`, before it can finish.

    Polls ``progress(admin_client)``; then CLIENT PAUSE ALL freezes every client
    (the operation's next command waits in the server), the server is SIGKILLed,
    and restarted after `downtime`.  Returns whether the operation was still
    running (`done` not set) when it was killed: a hit in its middle.
    """
    admin = server.client(socket_timeout=5)
    try:
        deadline = time.monotonic() + 20
        while not progress(admin):
            assert time.monotonic() < deadline, "the operation made no progress in 20 s"
            time.sleep(0.001)
        admin.client_pause(10_000, all=True)
        time.sleep(0.05)
        hit = not done.is_set()
    finally:
        server.kill()
        admin.close()
    if restart:
        time.sleep(downtime)
        server.start()
    return hit


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)


def subscribers(server: RedisServer, key: str) -> int:
    """How many pub/sub connections listen to `key`'s updates (0 if the server is down)."""
    client = server.client(socket_timeout=2)
    try:
        return int(dict(client.pubsub_numsub(f"update/{key}")).get(f"update/{key}".encode(), 0))
    except redis.ConnectionError:
        return 0
    finally:
        client.close()


def check_stream(
    stored: list[tuple[Any, float]], ok: list[float], failed: list[float]
) -> tuple[int, int]:
    """Samples of a kill-interrupted stream: none lost, none doubled, none invented.

    Returns how many of the failed adds landed anyway, and how many did not.
    """
    stamps = [stamp for _, stamp in stored]
    assert len(stamps) == len(set(stamps)), "a sample is stored twice"
    for value, stamp in stored:
        assert value == int(stamp - T0), f"sample at {stamp} holds {value!r}"
    present = set(stamps)
    lost = set(ok) - present
    assert not lost, f"{len(lost)} acknowledged samples are missing, e.g. {sorted(lost)[:5]}"
    invented = present - set(ok) - set(failed)
    assert not invented, f"samples nobody wrote: {sorted(invented)[:5]}"
    landed = len(set(failed) & present)
    return landed, len(failed) - landed


# ----------------------------------------------------------------- streams of adds


def test_sync_add_stream_survives_kills(make_server: Any, transport: str) -> None:
    """A thread adds samples as fast as it can while the server is killed and restarted."""
    server = make_server(tcp=transport == "tcp")
    ts = TelescopeState(RedisBackend.from_url(url_of(server, transport)))
    ok: list[float] = []
    failed: list[float] = []
    errors: list[BaseException] = []
    latency: list[float] = []  # adds that took over 0.2 s: they met an outage
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            stamp = T0 + i
            start = time.monotonic()
            try:
                ts.add("stream", i, ts=stamp)
            except telstate.ConnectionError:
                failed.append(stamp)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return
            else:
                ok.append(stamp)
            elapsed = time.monotonic() - start
            if elapsed > 0.2:
                latency.append(elapsed)
            i += 1

    def progress(count: int) -> None:
        target = len(ok) + count
        wait_until(lambda: len(ok) >= target or not thread.is_alive(), 15, f"{count} adds")

    thread = threading.Thread(target=writer, name="sync add stream", daemon=True)
    thread.start()
    try:
        for _ in range(ROUNDS):
            progress(200)
            bounce(server)
        progress(200)  # the same TelescopeState goes on working
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive(), "the writer hung"
    assert not errors, errors
    stored = ts.get_range("stream", st=0)
    check_stream(stored, ok, failed)
    # Each outage (0.5 s) is far inside the retry window (5 s): no add fails, the one
    # in flight (or the next one) waits for the server and then completes.
    assert not failed
    assert len(latency) >= ROUNDS
    assert max(latency) < 5.0
    ts.backend.close()
    print(
        f"\n[faults] sync add stream ({transport}): {ROUNDS} kills, {len(ok)} adds returned, "
        f"{len(failed)} raised, {len(stored)} samples checked, slowest add {max(latency):.2f} s"
    )


def test_aio_add_stream_survives_kills(make_server: Any, transport: str) -> None:
    """The same with the asyncio TelescopeState: each add in an outage waits and completes."""
    server = make_server(tcp=transport == "tcp")

    async def main() -> tuple[list[float], list[float], list[tuple[Any, float]], float]:
        backend = await AioRedisBackend.from_url(url_of(server, transport))
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            ok: list[float] = []
            failed: list[float] = []
            stop = asyncio.Event()
            slowest = 0.0

            async def writer() -> None:
                nonlocal slowest
                i = 0
                while not stop.is_set():
                    stamp = T0 + i
                    start = time.monotonic()
                    try:
                        await ts.add("stream", i, ts=stamp)
                    except telstate.ConnectionError:
                        failed.append(stamp)
                    else:
                        ok.append(stamp)
                    slowest = max(slowest, time.monotonic() - start)
                    i += 1

            async def progress(count: int) -> None:
                before = len(ok)
                async with asyncio.timeout(15):
                    while len(ok) < before + count and not task.done():
                        await asyncio.sleep(0.005)

            task = asyncio.create_task(writer())
            try:
                for _ in range(ROUNDS):
                    await progress(200)
                    await asyncio.to_thread(server.kill)
                    await asyncio.sleep(DOWNTIME)
                    await asyncio.to_thread(server.start)
                await progress(200)  # the same TelescopeState works again
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)  # the writer never hangs
            stored = await ts.get_range("stream", st=0)
        return ok, failed, stored, slowest

    ok, failed, stored, slowest = asyncio.run(main())
    check_stream(stored, ok, failed)
    # Each outage (0.5 s) is far inside the retries (~6.5 s): no add fails, the one in
    # flight waits for the server and then completes, exactly once.
    assert not failed
    assert len(stored) == len(ok)
    assert DOWNTIME * 0.5 < slowest < 5.0
    print(
        f"\n[faults] aio add stream ({transport}): {ROUNDS} kills, {len(ok)} adds returned, "
        f"{len(failed)} raised, {len(stored)} samples checked, slowest add {slowest:.2f} s"
    )


# ----------------------------------------------------------------- waits


@pytest.mark.parametrize("write", ["after_resubscribe", "at_once"])
def test_sync_wait_key_rides_through_restarts(make_server: Any, write: str) -> None:
    """A blocked wait_key resubscribes after each restart and wakes on a later write.

    The write comes either once the waiter has resubscribed, or at once when the
    server is back (the waiter may not have noticed the restart yet: it must look
    at the key again after resubscribing).
    """
    server = make_server()
    ts = TelescopeState(RedisBackend.from_url(server.url))
    outcome: list[Any] = []

    def waiter() -> None:
        try:
            ts.wait_key("late", lambda value, stamp: value == "go", timeout=60)
            outcome.append(("woke", time.monotonic()))
        except BaseException as exc:
            outcome.append((exc, time.monotonic()))

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    try:
        wait_until(lambda: subscribers(server, "late") == 1, 10, "the wait to subscribe")
        for round_ in range(ROUNDS):
            bounce(server)
            if write == "at_once" and round_ == ROUNDS - 1:
                break
            # The waiter resubscribes on its own (it must, to hear the write below).
            wait_until(lambda: subscribers(server, "late") == 1, 10, "a resubscription")
        writer = TelescopeState(RedisBackend.from_url(server.url))
        written = time.monotonic()
        writer.add("late", "go", ts=T0)
        thread.join(10)
    finally:
        thread.join(20)
    assert not thread.is_alive()
    (result, when), *_ = outcome
    assert result == "woke", result
    assert when - written < 2.0
    writer.backend.close()
    ts.backend.close()
    print(
        f"\n[faults] sync wait_key ({write}): {ROUNDS} kills while waiting, "
        f"woken {when - written:.3f} s after the write"
    )


def test_sync_wait_key_raises_when_server_stays_down(make_server: Any) -> None:
    """A wait whose server never comes back raises ConnectionError when the window ends."""
    server = make_server()
    window = 2.0
    ts = TelescopeState(RedisBackend.from_url(server.url, retry_window=window))
    outcome: list[Any] = []

    def waiter() -> None:
        try:
            ts.wait_key("never", timeout=20)
            outcome.append("woke")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    wait_until(lambda: subscribers(server, "never") == 1, 10, "the wait to subscribe")
    server.kill()
    killed = time.monotonic()
    thread.join(window + 10)
    elapsed = time.monotonic() - killed
    assert not thread.is_alive()
    assert isinstance(outcome[0], telstate.ConnectionError), outcome
    assert server.socket_path in str(outcome[0])
    assert elapsed < window + 3.0
    ts.backend.close()
    print(f"\n[faults] sync wait_key, server gone: ConnectionError {elapsed:.2f} s after the kill")


def test_sync_wait_key_timeout_holds_when_server_stays_down(make_server: Any) -> None:
    server = make_server()
    ts = TelescopeState(RedisBackend.from_url(server.url, retry_window=3.0))
    outcome: list[Any] = []
    timeout = 0.5

    def waiter() -> None:
        start = time.monotonic()
        try:
            ts.wait_key("never", timeout=timeout)
            outcome.append(("woke", time.monotonic() - start))
        except BaseException as exc:
            outcome.append((exc, time.monotonic() - start))

    thread = threading.Thread(target=waiter, daemon=True)
    try:
        server.kill()
        thread.start()
        thread.join(15)
        assert not thread.is_alive()
        error, elapsed = outcome[0]
        assert isinstance(error, telstate.TimeoutError | telstate.ConnectionError), error
        assert elapsed < timeout + 1.0, f"wait_key({timeout=}) returned after {elapsed:.2f} s"
    finally:
        ts.backend.close()


def test_aio_wait_key_raises_when_server_stays_away(make_server: Any) -> None:
    """Blocked asyncio waits raise ConnectionError once the retries are spent.

    Several backends wait at once (one kill covers each of them): a wait used to raise
    AttributeError from redis-py about half the time (unsubscribing on the dropped
    connection, while cleaning up, replaced the ConnectionError).
    """
    server = make_server()
    waits = 2 * ROUNDS

    async def one(index: int) -> tuple[BaseException | str, float]:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            result: BaseException | str
            task = asyncio.create_task(ts.wait_key(f"never{index}", timeout=60))
            # main() kills the server once every wait is subscribed (a check made here, in
            # a worker thread, could run after the kill and never see its subscription).
            await killed.wait()
            start = time.monotonic()
            try:
                await asyncio.wait_for(task, 30)
                result = "woke"
            except Exception as exc:
                result = exc
            return result, time.monotonic() - start

    async def main() -> list[tuple[BaseException | str, float]]:
        running = [asyncio.create_task(one(i)) for i in range(waits)]
        await asyncio.to_thread(
            wait_until,
            lambda: all(subscribers(server, f"never{i}") == 1 for i in range(waits)),
            10,
            "the subscriptions",
        )
        await asyncio.to_thread(server.kill)
        killed.set()
        return await asyncio.gather(*running)

    killed = asyncio.Event()
    results = asyncio.run(main())
    for result, elapsed in results:
        assert isinstance(result, telstate.ConnectionError), repr(result)
        assert server.socket_path in str(result)
        # as a call: once the hub has spent its retry window
        assert AIO_GIVE_UP[0] < elapsed < AIO_GIVE_UP[1], elapsed
    times = [elapsed for _, elapsed in results]
    print(
        f"\n[faults] aio wait_key, server gone: {waits} waits, each raised ConnectionError "
        f"{min(times):.2f}-{max(times):.2f} s after the kill"
    )


def test_aio_wait_key_gives_up_with_the_retries(make_server: Any) -> None:
    server = make_server()

    async def main() -> None:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            task = asyncio.create_task(ts.wait_key("never", timeout=60))
            await asyncio.to_thread(
                wait_until, lambda: subscribers(server, "never") == 1, 10, "the subscription"
            )
            await asyncio.to_thread(server.kill)
            with pytest.raises(telstate.ConnectionError):
                await asyncio.wait_for(task, AIO_GIVE_UP[1])

    asyncio.run(main())


@pytest.mark.parametrize("write", ["after_resubscribe", "at_once"])
def test_aio_wait_key_rides_through_restarts(make_server: Any, write: str) -> None:
    """A blocked asyncio wait resubscribes after each restart and wakes on a later write."""
    server = make_server()

    async def main() -> float:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            task = asyncio.create_task(
                ts.wait_key("late", lambda value, stamp: value == "go", timeout=60)
            )
            await asyncio.to_thread(
                wait_until, lambda: subscribers(server, "late") == 1, 10, "the subscription"
            )
            for round_ in range(ROUNDS):
                await asyncio.to_thread(bounce, server)
                if write == "at_once" and round_ == ROUNDS - 1:
                    break
                await asyncio.to_thread(
                    wait_until, lambda: subscribers(server, "late") == 1, 10, "a resubscription"
                )
            assert not task.done(), task
            writer = await AioRedisBackend.from_url(server.url)
            async with writer:
                written = time.monotonic()
                await telstate.aio.TelescopeState(writer).add("late", "go", ts=T0)
                await asyncio.wait_for(task, 10)
                return time.monotonic() - written

    woken = asyncio.run(main())
    assert woken < 2.0
    print(
        f"\n[faults] aio wait_key ({write}): {ROUNDS} kills while waiting, "
        f"woken {woken:.3f} s after the write"
    )


def test_aio_add_rides_through_short_restart(make_server: Any) -> None:
    """A call made while the server is down waits for it, and other tasks run meanwhile."""
    server = make_server()

    async def main() -> tuple[float, int]:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.add("s", 0, ts=T0)
            await asyncio.to_thread(server.kill)
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            other = asyncio.create_task(ticker())
            start = time.monotonic()
            adding = asyncio.create_task(ts.add("s", 1, ts=T0 + 1))
            try:
                await asyncio.sleep(DOWNTIME)
                assert not adding.done(), adding  # it waits for the server...
                while_down = ticks  # ...and does not block the event loop
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(adding, 10)
            finally:
                other.cancel()
            elapsed = time.monotonic() - start
            assert await ts.get_range("s", st=0) == [(0, T0), (1, T0 + 1)]
            return elapsed, while_down

    elapsed, ticks = asyncio.run(main())
    assert DOWNTIME <= elapsed < 5.0
    assert ticks >= 50, f"only {ticks} ticks of another task in {DOWNTIME} s"
    print(
        f"\n[faults] aio add in a restart: completed after {elapsed:.2f} s, exactly once; "
        f"another task ran {ticks} times meanwhile"
    )


# ----------------------------------------------------------------- bulk operations


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An RDB file of ~1300 keys (200 000 samples) and its expected contents."""
    mem = TelescopeState()
    stamps = T0 + np.arange(2000) * 0.25
    for k in range(100):
        with mem.pipeline() as batch:
            for i, stamp in enumerate(stamps):
                batch.add(f"sensor_{k:03d}", float(i * k), ts=float(stamp))
    with mem.pipeline() as batch:
        for k in range(1200):
            batch[f"attr_{k:04d}"] = {"k": k, "arr": np.arange(k % 40), "name": f"a{k}"}
        for k in range(300):
            batch.set_indexed("indexed", ("m", k), k * 0.5)
    path = tmp_path_factory.mktemp("archive") / "archive.rdb"
    mem.save_to_file(path)
    return path, contents(mem)


PIPELINE_SAMPLES = 60_000


def _pipeline_data(n: int) -> Callable[[Any], None]:
    def queue(batch: Any) -> None:
        for i in range(n):
            batch.add("pipe_sensor", i, ts=T0 + i)
        for k in range(100):
            batch[f"pipe_attr_{k}"] = ("attr", k)
        for k in range(200):
            batch.set_indexed("pipe_idx", k, -k)
        batch["pipe_done"] = True

    return queue


def _check_pipeline_data(found: dict[str, Any], n: int) -> None:
    samples = found["pipe_sensor"][1]
    assert len(samples) == n
    assert [telstate.decode_value(value) for value, _ in samples] == list(range(n))
    assert [stamp for _, stamp in samples] == [T0 + i for i in range(n)]
    for k in range(100):
        assert telstate.decode_value(found[f"pipe_attr_{k}"][1]) == ("attr", k)
    indexed = found["pipe_idx"][1]
    decoded = {telstate.decode_value(sub): telstate.decode_value(v) for sub, v in indexed.items()}
    assert decoded == {k: -k for k in range(200)}
    assert found["pre_attr"][1] == telstate.encode_value("before")
    assert telstate.decode_value(found["pipe_done"][1]) is True
    assert len(found) == 100 + 4


def _killed_midway(server: RedisServer) -> Callable[..., tuple[Any, bool]]:
    """Runs a sync operation in a thread, killing the server in its middle."""

    def run(
        operation: Callable[[], Any], progress: Callable[[redis.Redis], bool]
    ) -> tuple[Any, bool]:
        done = threading.Event()
        result: list[Any] = []

        def target() -> None:
            try:
                result.append(operation())
            except BaseException as exc:
                result.append(exc)
            done.set()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        hit = kill_midway(server, progress, done)
        thread.join(30)
        assert not thread.is_alive(), "the operation hung"
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0], hit

    return run


def _sync_bulk_round(
    server: RedisServer, path: Path, expected: dict[str, Any], saved_path: Path
) -> int:
    """One round of the sync bulk test: returns how many kills hit mid-operation."""
    ts = TelescopeState(RedisBackend.from_url(server.url))
    run = _killed_midway(server)
    n = PIPELINE_SAMPLES
    # A pipeline: samples, then immutables (one already set), sub-keys, a flag.
    ts["pre_attr"] = "before"
    ts["pipe_attr_0"] = ("attr", 0)

    def pipeline() -> None:
        with ts.pipeline() as batch:
            _pipeline_data(n)(batch)
            batch["pre_attr"] = "before"

    hits = run(pipeline, lambda admin: admin.zcard("pipe_sensor") > 0)[1]
    _check_pipeline_data(contents(ts), n)

    # An RDB load into the (emptied) server.
    ts.clear()
    loaded, hit = run(lambda: ts.load_from_file(path), lambda admin: admin.dbsize() > 0)
    hits += hit
    assert loaded == len(expected)
    assert contents(ts) == expected

    # An RDB save of what was loaded.
    saved, hit = run(
        lambda: ts.save_to_file(saved_path),
        lambda admin: saved_path.exists() and saved_path.stat().st_size > 65536,
    )
    hits += hit
    assert saved == len(expected)
    assert contents(TelescopeState.open(saved_path, verify_checksum=True)) == expected
    ts.backend.close()
    return hits


def test_sync_bulk_operations_survive_kills(
    make_server: Any, archive: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A pipeline, an RDB load and an RDB save, each killed in its middle, ROUNDS times.

    Each call rides through the restart (retry window 5 s) and the data come out
    exactly right: retried writes are idempotent and a retried RESTORE of a key
    already restored is merged.
    """
    path, expected = archive
    hits = 0
    for round_ in range(ROUNDS):
        hits += _sync_bulk_round(make_server(), path, expected, tmp_path / f"saved{round_}.rdb")
    samples = ROUNDS * (PIPELINE_SAMPLES + 2 * 200_000)
    print(
        f"\n[faults] sync pipeline/load/save: {3 * ROUNDS} kills ({hits} mid-operation), all "
        f"completed, {samples} samples and {ROUNDS * 3 * 1300} keys checked"
    )


def _aio_killed_midway(server: RedisServer, stats: dict[str, int]) -> Callable[..., Any]:
    """Awaits an asyncio operation, killing the server in its middle."""

    async def run(operation: Callable[[], Any], progress: Callable[[redis.Redis], bool]) -> Any:
        done = threading.Event()
        killer = asyncio.create_task(asyncio.to_thread(kill_midway, server, progress, done))
        try:
            return await operation()
        finally:
            done.set()
            stats["hits"] += await killer
            stats["kills"] += 1

    return run


def test_aio_bulk_operations_survive_kills(
    make_server: Any, archive: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """An asyncio RDB load and save, each killed in its middle: they complete, exact.

    (A pipeline killed in its middle: see test_aio_pipeline_survives_kill.)
    """
    path, expected = archive
    stats = {"kills": 0, "hits": 0}

    async def main(server: RedisServer, round_: int) -> None:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            run = _aio_killed_midway(server, stats)
            loaded = await run(lambda: ts.load_from_file(path), lambda admin: admin.dbsize() > 0)
            assert loaded == len(expected)
            assert await aio_contents(ts) == expected

            saved_path = tmp_path / f"saved{round_}.rdb"

            def saving_progress(admin: redis.Redis) -> bool:
                return saved_path.exists() and saved_path.stat().st_size > 65536

            saved = await run(lambda: ts.save_to_file(saved_path), saving_progress)
            assert saved == len(expected)
            reopened = TelescopeState.open(saved_path, verify_checksum=True)
            assert contents(reopened) == expected
            assert await aio_contents(ts) == expected  # the save changed nothing

    for round_ in range(ROUNDS):
        asyncio.run(main(make_server(), round_))
    print(
        f"\n[faults] aio load/save: {stats['kills']} kills ({stats['hits']} mid-operation), "
        f"all completed, {ROUNDS * 2 * 200_000} samples and {ROUNDS * 3 * 1300} keys checked"
    )


def test_aio_pipeline_survives_kill(make_server: Any) -> None:
    n = PIPELINE_SAMPLES
    server = make_server()

    async def main() -> None:
        backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.set("pre_attr", "before")
            await ts.set("pipe_attr_0", ("attr", 0))

            async def pipeline() -> None:
                async with ts.pipeline() as batch:
                    _pipeline_data(n)(batch)
                    batch["pre_attr"] = "before"

            run = _aio_killed_midway(server, {"hits": 0, "kills": 0})
            await run(pipeline, lambda admin: admin.zcard("pipe_sensor") > 0)
            _check_pipeline_data(await aio_contents(ts), n)

    asyncio.run(main())


@pytest.mark.parametrize("front", ["sync", "aio"])
def test_failed_save_leaves_no_file(
    make_server: Any, archive: tuple[Path, dict[str, Any]], tmp_path: Path, front: str
) -> None:
    """A save_to_file whose server dies part-way raises ConnectionError and removes its file."""
    path, _ = archive
    server = make_server()
    saved_path = tmp_path / "saved.rdb"
    done = threading.Event()
    raised: list[BaseException] = []

    def progress(admin: redis.Redis) -> bool:
        return saved_path.exists() and saved_path.stat().st_size > 65536

    if front == "sync":
        ts = TelescopeState(RedisBackend.from_url(server.url, retry_window=0.5))
        ts.load_from_file(path)

        def save() -> None:
            try:
                ts.save_to_file(saved_path)
            except telstate.ConnectionError as exc:
                raised.append(exc)
            done.set()

        thread = threading.Thread(target=save, daemon=True)
        thread.start()
        kill_midway(server, progress, done, restart=False)
        thread.join(20)
        ts.backend.close()
    else:

        async def main() -> None:
            backend = await AioRedisBackend.from_url(server.url, retry_window=0.5)
            async with backend:
                ts = telstate.aio.TelescopeState(backend)
                await ts.load_from_file(path)
                killer = asyncio.to_thread(kill_midway, server, progress, done, DOWNTIME, False)
                killing = asyncio.create_task(killer)
                try:
                    await ts.save_to_file(saved_path)
                except telstate.ConnectionError as exc:
                    raised.append(exc)
                done.set()
                await killing

        asyncio.run(main())
    assert raised, "the save completed: no failure to look at"
    assert isinstance(raised[0], telstate.ConnectionError)
    assert not saved_path.exists(), "a failed save left a partial file"


# ----------------------------------------------------------------- long outages


def test_sync_outage_longer_than_retry_window(make_server: Any, tmp_path: Path) -> None:
    """Every call raises ConnectionError within ~retry_window; all work again afterwards."""
    server = make_server()
    window = 1.0
    ts = TelescopeState(RedisBackend.from_url(server.url, retry_window=window))
    ts["attr"] = "kept"
    ts.add("sensor", 1.0, ts=T0)
    ts.set_indexed("idx", "a", 1)
    small = TelescopeState()
    small["from_file"] = 42
    rdb = tmp_path / "small.rdb"
    small.save_to_file(rdb)

    def pipeline() -> None:
        with ts.pipeline() as batch:
            batch.add("sensor", 2.0, ts=T0 + 1)
            batch["attr2"] = 2

    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: ts["attr"],
        "set": lambda: ts.set("attr2", 2),
        "add": lambda: ts.add("sensor", 2.0, ts=T0 + 1),
        "set_indexed": lambda: ts.set_indexed("idx", "b", 2),
        "get_indexed": lambda: ts.get_indexed("idx", "a"),
        "get_range": lambda: ts.get_range("sensor", st=0),
        "exists": lambda: "attr" in ts,
        "key_type": lambda: ts.key_type("attr"),
        "keys": lambda: ts.keys(),
        "pipeline": pipeline,
        "wait_key": lambda: ts.wait_key("attr", timeout=30),
        "load_from_file": lambda: ts.load_from_file(rdb),
        "save_to_file": lambda: ts.save_to_file(tmp_path / "out.rdb"),
    }
    worst = 0.0
    outcomes: dict[str, tuple[Any, float]] = {}

    def call(name: str, func: Callable[[], Any]) -> None:
        start = time.monotonic()
        try:
            outcomes[name] = (func(), time.monotonic() - start)
        except BaseException as exc:
            outcomes[name] = (exc, time.monotonic() - start)

    for _ in range(ROUNDS):
        server.kill()
        outcomes.clear()
        threads = [threading.Thread(target=call, args=item, daemon=True) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(window + 15)
        assert not any(thread.is_alive() for thread in threads), "a call hung"
        for name, (result, elapsed) in outcomes.items():
            assert isinstance(result, telstate.ConnectionError), (name, result)
            # It gives up when the next backoff would overrun the window: 0.75-1 s here.
            assert window * 0.5 < elapsed < window + 3.0, (name, elapsed)
            worst = max(worst, elapsed)
        assert not (tmp_path / "out.rdb").exists()  # the failed save left nothing
        server.start()
        # The same TelescopeState works again, and nothing acknowledged was lost.
        for func in calls.values():
            func()
        assert ts["attr"] == "kept" and ts["attr2"] == 2 and ts["from_file"] == 42
        assert ts.get_range("sensor", st=0) == [(1.0, T0), (2.0, T0 + 1)]
        assert ts["idx"] == {"a": 1, "b": 2}
        (tmp_path / "out.rdb").unlink()
    ts.backend.close()
    print(
        f"\n[faults] sync outage > retry_window ({window} s): {ROUNDS} outages x {len(calls)} "
        f"calls, all raised ConnectionError within {worst:.2f} s and worked after the restart"
    )


def test_aio_outage(make_server: Any, tmp_path: Path) -> None:
    """asyncio: every call raises ConnectionError after ~6.5 s; all work again afterwards."""
    server = make_server()
    small = TelescopeState()
    small["from_file"] = 42
    rdb = tmp_path / "small.rdb"
    small.save_to_file(rdb)

    async def main() -> tuple[float, float]:
        backend = await AioRedisBackend.from_url(server.url)
        best, worst = 100.0, 0.0
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.set("attr", "kept")
            await ts.add("sensor", 1.0, ts=T0)
            await ts.set_indexed("idx", "a", 1)

            async def pipeline() -> None:
                async with ts.pipeline() as batch:
                    batch.add("sensor", 2.0, ts=T0 + 1)
                    batch["attr2"] = 2

            calls: dict[str, Callable[[], Any]] = {
                "get": lambda: ts.get("attr"),
                "set": lambda: ts.set("attr2", 2),
                "add": lambda: ts.add("sensor", 2.0, ts=T0 + 1),
                "set_indexed": lambda: ts.set_indexed("idx", "b", 2),
                "get_indexed": lambda: ts.get_indexed("idx", "a"),
                "get_range": lambda: ts.get_range("sensor", st=0),
                "exists": lambda: ts.exists("attr"),
                "key_type": lambda: ts.key_type("attr"),
                "keys": lambda: ts.keys(),
                "pipeline": pipeline,
                "wait_key": lambda: ts.wait_key("attr", timeout=30),
                "load_from_file": lambda: ts.load_from_file(rdb),
                "save_to_file": lambda: ts.save_to_file(tmp_path / "out.rdb"),
            }

            async def timed(call: Callable[[], Any]) -> tuple[Any, float]:
                start = time.monotonic()
                try:
                    result = await asyncio.wait_for(call(), 20)
                except Exception as exc:
                    result = exc
                return result, time.monotonic() - start

            for _ in range(ROUNDS):
                await asyncio.to_thread(server.kill)
                # All at once (each takes the whole retry time).
                results = await asyncio.gather(*(timed(call) for call in calls.values()))
                for name, (result, elapsed) in zip(calls, results, strict=True):
                    assert isinstance(result, telstate.ConnectionError), (name, result)
                    assert server.socket_path in str(result), (name, result)
                    assert AIO_GIVE_UP[0] < elapsed < AIO_GIVE_UP[1], (name, elapsed)
                    best = min(best, elapsed)
                    worst = max(worst, elapsed)
                assert not (tmp_path / "out.rdb").exists()  # the failed save left nothing
                await asyncio.to_thread(server.start)
                for call in calls.values():
                    await call()
                assert await ts.get("attr") == "kept" and await ts.get("from_file") == 42
                assert await ts.get_range("sensor", st=0) == [(1.0, T0), (2.0, T0 + 1)]
                assert await ts.get("idx") == {"a": 1, "b": 2}
                (tmp_path / "out.rdb").unlink()
        return best, worst

    best, worst = asyncio.run(main())
    print(
        f"\n[faults] aio outage: {ROUNDS} outages x 13 calls, all raised ConnectionError "
        f"{best:.2f}-{worst:.2f} s after the call and worked after the restart"
    )
