"""Concurrency: many processes, threads and tasks writing one telescope state at once.

* 8 processes (``spawn``), each with its own TelescopeState on one private Redis
  server: 80 000 samples of one sensor (pipelined) and 8 000 plain adds, every
  sample present exactly once; races to set one immutable / one indexed sub-key
  to 8 different values behind a barrier: exactly one winner, 7 ImmutableKeyErrors,
  everyone reads the winner's value.
* 8 threads sharing one sync TelescopeState, and 200 tasks sharing one asyncio
  TelescopeState (memory and Redis backends): mixed adds, sets, indexed sets,
  pipelines and reads on private and shared keys; every write is there exactly
  once, every read sees whole values (a torn or mixed-up reply would show as an
  array whose elements disagree, or a value that does not match its key), and each
  worker reads its own writes.

``TELSTATE_FAULT_ROUNDS=N`` (default 2) scales the race rounds (5 N) and the
iterations of each thread and task for a longer run; each test prints a one-line
summary with ``pytest -s``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis

import telstate
import telstate.aio
from telstate import ImmutableKeyError, KeyType, TelescopeState
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend

from .servers import RedisServer
from .snapshots import aio_contents as aio_snapshot
from .snapshots import contents as snapshot

ROUNDS = max(1, int(os.environ.get("TELSTATE_FAULT_ROUNDS", "2")))
PROCESSES = 8
T0 = 1_600_000_000.0
HANG = 60.0 * ROUNDS  # seconds after which a wait or a run counts as hung

# ----------------------------------------------------------------- processes


def _stamp(worker: int, i: int, workers: int) -> float:
    """Distinct timestamps, interleaved between workers (exact in float64)."""
    return T0 + i * workers + worker


def _pipeline_adds(ts: TelescopeState, worker: int, key: str, n: int, chunk: int) -> int:
    for start in range(0, n, chunk):
        with ts.pipeline() as batch:
            for i in range(start, min(n, start + chunk)):
                stamp = _stamp(worker, i, PROCESSES)
                batch.add(key, int(stamp - T0), ts=stamp)
    return n


def _single_adds(ts: TelescopeState, worker: int, key: str, n: int) -> int:
    for i in range(n):
        stamp = _stamp(worker, i, PROCESSES)
        ts.add(key, int(stamp - T0), ts=stamp)
    return n


def _race(ts: TelescopeState, worker: int, key: str, value: Any) -> tuple[bool, Any]:
    try:
        ts.set(key, value)
        won = True
    except ImmutableKeyError:
        won = False
    return won, ts[key]


def _race_indexed(
    ts: TelescopeState, worker: int, key: str, sub_key: Any, value: Any
) -> tuple[bool, Any]:
    try:
        ts.set_indexed(key, sub_key, value)
        won = True
    except ImmutableKeyError:
        won = False
    return won, ts.get_indexed(key, sub_key)


_COMMANDS: dict[str, Callable[..., Any]] = {
    "pipeline_adds": _pipeline_adds,
    "single_adds": _single_adds,
    "race": _race,
    "race_indexed": _race_indexed,
}


def _worker(index: int, url: str, barrier: Any, inbox: Any, outbox: Any) -> None:
    """A spawned process: runs commands, each started with all the others (barrier)."""
    ts = TelescopeState(url)
    try:
        while True:
            command, args = inbox.get()
            if command == "stop":
                return
            try:
                barrier.wait(timeout=60)
                outbox.put((index, "ok", _COMMANDS[command](ts, index, *args)))
            except BaseException:
                outbox.put((index, "error", traceback.format_exc()))
    finally:
        ts.backend.close()


class Workers:
    """PROCESSES spawned processes, each with its own TelescopeState on one server."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(PROCESSES)
        self.outbox: Any = ctx.Queue()
        self.inboxes: list[Any] = [ctx.Queue() for _ in range(PROCESSES)]
        self.procs = [
            ctx.Process(
                target=_worker,
                args=(i, server.url, self.barrier, self.inboxes[i], self.outbox),
                name=f"telstate-worker-{i}",
                daemon=True,
            )
            for i in range(PROCESSES)
        ]
        for proc in self.procs:
            proc.start()

    def run(self, command: str, args: Callable[[int], tuple[Any, ...]]) -> list[Any]:
        """Each worker runs `command` with ``args(index)``, all at once; their results."""
        for i, inbox in enumerate(self.inboxes):
            inbox.put((command, args(i)))
        results: list[Any] = [None] * PROCESSES
        errors = []
        for _ in range(PROCESSES):
            index, status, result = self.outbox.get(timeout=120)
            if status == "error":
                errors.append(f"worker {index}:\n{result}")
            results[index] = result
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)
        return results

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(("stop", ()))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():  # pragma: no cover - a stuck worker
                proc.kill()
                proc.join()
        for queue in [*self.inboxes, self.outbox]:
            queue.close()
            queue.join_thread()


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    server = RedisServer()
    made = Workers(server)
    try:
        yield made
    finally:
        made.close()
        server.close()


@pytest.fixture
def reader(workers: Workers) -> Iterator[TelescopeState]:
    client = workers.server.client()
    client.flushall()
    client.close()
    ts = TelescopeState(RedisBackend.from_url(workers.server.url))
    yield ts
    ts.backend.close()


def _check_one_sensor(ts: TelescopeState, key: str, per_worker: int) -> int:
    samples = ts.get_range(key, st=0)
    expected = sorted(_stamp(w, i, PROCESSES) for w in range(PROCESSES) for i in range(per_worker))
    assert [stamp for _, stamp in samples] == expected  # all there, once each, in order
    assert all(value == int(stamp - T0) for value, stamp in samples)
    return len(samples)


def test_processes_add_to_one_sensor(workers: Workers, reader: TelescopeState) -> None:
    per_worker = 10_000
    done = workers.run("pipeline_adds", lambda i: ("bulk", per_worker, 1000))
    assert done == [per_worker] * PROCESSES
    bulk = _check_one_sensor(reader, "bulk", per_worker)
    assert bulk == PROCESSES * per_worker

    singles = 1000
    workers.run("single_adds", lambda i: ("single", singles))
    single = _check_one_sensor(reader, "single", singles)
    assert single == PROCESSES * singles
    print(
        f"\n[concurrency] {PROCESSES} processes -> one sensor: {bulk} pipelined samples "
        f"and {single} single adds, all present exactly once"
    )


def test_processes_race_for_immutables(workers: Workers, reader: TelescopeState) -> None:
    rounds = 5 * ROUNDS
    winners: Counter[str] = Counter()
    for round_ in range(rounds):
        key = f"race_{round_}"
        values = [{"worker": i, "round": round_, "pad": "x" * (i * 100)} for i in range(PROCESSES)]
        results = workers.run("race", lambda i, key=key, values=values: (key, values[i]))
        won = [i for i, (ok, _) in enumerate(results) if ok]
        assert len(won) == 1, f"round {round_}: winners {won}"
        assert all(seen == values[won[0]] for _, seen in results)
        assert reader[key] == values[won[0]]
        winners[f"immutable:{won[0]}"] += 1

        sub_key = ("round", round_)
        results = workers.run(
            "race_indexed",
            lambda i, sub_key=sub_key, round_=round_: ("race_idx", sub_key, [i, round_]),
        )
        won = [i for i, (ok, _) in enumerate(results) if ok]
        assert len(won) == 1, f"round {round_} (indexed): winners {won}"
        assert all(seen == [won[0], round_] for _, seen in results)
        winners[f"indexed:{won[0]}"] += 1

        # Everyone setting the same value: all succeed (an equal value is no conflict).
        same = {"round": round_}
        results = workers.run("race", lambda i, round_=round_, same=same: (f"same_{round_}", same))
        assert results == [(True, same)] * PROCESSES
    assert len(reader["race_idx"]) == rounds
    spread = sorted(winners.items())
    print(
        f"\n[concurrency] {PROCESSES} processes racing: {rounds} rounds x (immutable, indexed "
        f"sub-key, equal values): one winner each time, {7 * 2 * rounds} ImmutableKeyErrors; "
        f"winners {dict(spread)}"
    )


# ----------------------------------------------------------------- threads and tasks
#
# Each worker w runs `iterations` steps; step i does operation i % 6:
#   0  add a sample to its own sensor own_<w>
#   1  add a sample to the shared sensor
#   2  set its own immutable attr_<w>_<i>, the common immutable common_<k> (every
#      worker sets the same value), and try the contested immutable contested_<i>
#      (every worker tries its own value once: one wins)
#   3  set its own sub-key (w, i) of shared_idx, and common sub-key k of common_idx
#      (every worker sets the same value)
#   4  a pipeline: 10 samples of its own pipe_<w>, immutable pattr_<w>_<i>, sub-key
#      ("p", w, i) of shared_idx
#   5  reads: its own sensor (read-your-writes), the shared sensor's latest sample,
#      the common immutables, shared_idx (every entry checked), a contested key
# and at the end sets done_<w> and waits for done_<w + 1> (wait_key under load).


def _array(code: int) -> np.ndarray:
    return np.full(64, code, dtype=np.int64)


def _whole(value: Any) -> int:
    """The code of an array value, checking that it was not torn."""
    assert isinstance(value, np.ndarray) and value.shape == (64,)
    assert (value == value[0]).all(), f"torn value: {value}"
    return int(value[0])


def _common(k: int) -> dict[str, Any]:
    return {"common": k, "blob": "c" * 500}


def _attr(w: int, i: int) -> dict[str, Any]:
    return {"w": w, "i": i, "blob": f"{w}:{i}:" * 50}


class Plan:
    """What the workers write, and the checks of what they read and what is left."""

    def __init__(self, workers: int, iterations: int) -> None:
        self.workers = workers
        self.iterations = iterations
        self.contested: dict[int, list[int]] = {}  # step -> workers that won it
        self.lock = threading.Lock()
        self.reads = 0

    def stamp(self, w: int, i: int) -> float:
        return _stamp(w, i, self.workers)

    def won(self, w: int, i: int) -> None:
        with self.lock:
            self.contested.setdefault(i, []).append(w)

    def check_reads(
        self,
        w: int,
        own: list[tuple[Any, float]],
        own_written: list[float],
        latest: Any,
        commons: dict[int, Any],
        shared_idx: dict[Any, Any],
        own_sub_keys: list[Any],
        contested: Any,
    ) -> None:
        assert [stamp for _, stamp in own] == own_written  # read-your-writes, in order
        for value, stamp in own:
            assert _whole(value) == int(stamp - T0)
        if latest is not None:
            code = _whole(latest)
            assert 0 <= code < self.workers * self.iterations
        for k, value in commons.items():
            assert value is None or value == _common(k), (k, value)
        for sub_key, value in shared_idx.items():
            assert value == list(sub_key[-2:]), (sub_key, value)
        missing = [sub for sub in own_sub_keys if sub not in shared_idx]
        assert not missing, f"worker {w} cannot see its own sub-keys {missing[:3]}"
        if contested is not None:
            assert contested[1] in range(self.iterations) and contested[0] in range(self.workers)
        with self.lock:
            self.reads += 1

    def steps(self, op: int) -> list[int]:
        return [i for i in range(self.iterations) if i % 6 == op]

    def check_final(self, found: dict[str, tuple[KeyType | None, Any]]) -> int:
        """Checks the final contents (from :func:`snapshot`); returns the writes checked."""
        decode = telstate.decode_value
        checked = 0
        expected_keys = {"shared_sensor", "shared_idx", "common_idx"}
        for w in range(self.workers):
            expected_keys |= {f"own_{w}", f"pipe_{w}", f"done_{w}"}
            expected_keys |= {f"attr_{w}_{i}" for i in self.steps(2)}
            expected_keys |= {f"pattr_{w}_{i}" for i in self.steps(4)}
        expected_keys |= {f"contested_{i}" for i in self.steps(2)}
        expected_keys |= {f"common_{i % 20}" for i in self.steps(2)}
        assert set(found) == expected_keys
        for w in range(self.workers):
            samples = found[f"own_{w}"][1]
            assert [stamp for _, stamp in samples] == [self.stamp(w, i) for i in self.steps(0)]
            checked += len(samples)
            for i in self.steps(2):
                assert decode(found[f"attr_{w}_{i}"][1]) == _attr(w, i)
                checked += 1
            pipe = found[f"pipe_{w}"][1]
            expected = [self.stamp(w, i) + j / 16 for i in self.steps(4) for j in range(10)]
            assert [stamp for _, stamp in pipe] == expected
            assert [decode(value) for value, _ in pipe] == [
                [w, i, j] for i in self.steps(4) for j in range(10)
            ]
            checked += len(pipe)
            for i in self.steps(4):
                assert decode(found[f"pattr_{w}_{i}"][1]) == [w, i]
                checked += 1
        shared = found["shared_sensor"][1]
        expected = sorted(self.stamp(w, i) for w in range(self.workers) for i in self.steps(1))
        assert [stamp for _, stamp in shared] == expected
        for value, stamp in shared:
            assert _whole(decode(value)) == int(stamp - T0)
        checked += len(shared)
        commons = {int(key[7:]) for key in found if re.fullmatch(r"common_\d+", key)}
        for k in commons:
            assert decode(found[f"common_{k}"][1]) == _common(k)
        checked += len(commons)
        idx = {decode(sub): decode(value) for sub, value in found["shared_idx"][1].items()}
        expected_subs = {(w, i) for w in range(self.workers) for i in self.steps(3)}
        expected_subs |= {("p", w, i) for w in range(self.workers) for i in self.steps(4)}
        assert set(idx) == expected_subs
        assert all(value == list(sub[-2:]) for sub, value in idx.items())
        checked += len(idx)
        common_idx = {decode(sub): decode(v) for sub, v in found["common_idx"][1].items()}
        assert common_idx == {k: _common(k) for k in common_idx}
        for i in self.steps(2):
            assert len(self.contested[i]) == 1, f"contested_{i}: winners {self.contested[i]}"
            assert decode(found[f"contested_{i}"][1]) == [self.contested[i][0], i]
            checked += 1
        return checked


def _sync_worker(ts: TelescopeState, plan: Plan, w: int) -> None:
    own_written: list[float] = []
    own_sub_keys: list[Any] = []
    for i in range(plan.iterations):
        stamp = plan.stamp(w, i)
        code = int(stamp - T0)
        op = i % 6
        if op == 0:
            ts.add(f"own_{w}", _array(code), ts=stamp)
            own_written.append(stamp)
        elif op == 1:
            ts.add("shared_sensor", _array(code), ts=stamp)
        elif op == 2:
            ts.set(f"attr_{w}_{i}", _attr(w, i))
            ts.set(f"common_{i % 20}", _common(i % 20))
            try:
                ts.set(f"contested_{i}", [w, i])
                plan.won(w, i)
            except ImmutableKeyError:
                pass
        elif op == 3:
            ts.set_indexed("shared_idx", (w, i), [w, i])
            own_sub_keys.append((w, i))
            ts.set_indexed("common_idx", i % 20, _common(i % 20))
        elif op == 4:
            with ts.pipeline() as batch:
                for j in range(10):
                    batch.add(f"pipe_{w}", [w, i, j], ts=stamp + j / 16)
                batch[f"pattr_{w}_{i}"] = [w, i]
                batch.set_indexed("shared_idx", ("p", w, i), [w, i])
            own_sub_keys.append(("p", w, i))
        else:
            own = ts.get_range(f"own_{w}", st=0) if own_written else []
            plan.check_reads(
                w,
                own,
                own_written,
                ts.get("shared_sensor"),
                {k: ts.get(f"common_{k}") for k in range(0, 20, 7)},
                ts.get("shared_idx", {}),
                own_sub_keys,
                ts.get(f"contested_{i - 3}"),
            )
    ts.set(f"done_{w}", True)
    ts.wait_key(f"done_{(w + 1) % plan.workers}", timeout=HANG)


async def _async_worker(ts: telstate.aio.TelescopeState, plan: Plan, w: int) -> None:
    own_written: list[float] = []
    own_sub_keys: list[Any] = []
    for i in range(plan.iterations):
        stamp = plan.stamp(w, i)
        code = int(stamp - T0)
        op = i % 6
        if op == 0:
            await ts.add(f"own_{w}", _array(code), ts=stamp)
            own_written.append(stamp)
        elif op == 1:
            await ts.add("shared_sensor", _array(code), ts=stamp)
        elif op == 2:
            await ts.set(f"attr_{w}_{i}", _attr(w, i))
            await ts.set(f"common_{i % 20}", _common(i % 20))
            try:
                await ts.set(f"contested_{i}", [w, i])
                plan.won(w, i)
            except ImmutableKeyError:
                pass
        elif op == 3:
            await ts.set_indexed("shared_idx", (w, i), [w, i])
            own_sub_keys.append((w, i))
            await ts.set_indexed("common_idx", i % 20, _common(i % 20))
        elif op == 4:
            async with ts.pipeline() as batch:
                for j in range(10):
                    batch.add(f"pipe_{w}", [w, i, j], ts=stamp + j / 16)
                batch[f"pattr_{w}_{i}"] = [w, i]
                batch.set_indexed("shared_idx", ("p", w, i), [w, i])
            own_sub_keys.append(("p", w, i))
        else:
            own = await ts.get_range(f"own_{w}", st=0) if own_written else []
            plan.check_reads(
                w,
                own,
                own_written,
                await ts.get("shared_sensor"),
                {k: await ts.get(f"common_{k}") for k in range(0, 20, 7)},
                await ts.get("shared_idx", {}),
                own_sub_keys,
                await ts.get(f"contested_{i - 3}"),
            )
    await ts.set(f"done_{w}", True)
    # (A task here may wait for the whole run: asyncio memory calls never yield.)
    await ts.wait_key(f"done_{(w + 1) % plan.workers}", timeout=HANG)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_threads_share_one_sync_telescope_state(kind: str, request: pytest.FixtureRequest) -> None:
    threads_n = 8
    iterations = 180 * ROUNDS  # a multiple of 6
    if kind == "memory":
        ts = TelescopeState()
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")  # flushed
        server: RedisServer = request.getfixturevalue("redis_server")
        ts = TelescopeState(RedisBackend.from_url(server.url))
        assert client.dbsize() == 0
    plan = Plan(threads_n, iterations)
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def run(w: int) -> None:
        try:
            start.wait(30)
            _sync_worker(ts, plan, w)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * HANG)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    checked = plan.check_final(snapshot(ts))
    ts.backend.close()
    print(
        f"\n[concurrency] {threads_n} threads, one sync TelescopeState ({kind}): "
        f"{threads_n * iterations} steps, {plan.reads} checked reads, {checked} writes "
        f"checked exactly once"
    )


def test_many_threads_wait_on_one_sync_telescope_state(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """More waits at once than redis-py's default pool (100) allows: all wake."""
    n = 150
    ts = TelescopeState(RedisBackend.from_url(redis_server.url))
    outcomes: list[Any] = []

    def waiter(i: int) -> None:
        try:
            ts.wait_key(f"w{i}", timeout=30)
            outcomes.append("woke")
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    channels = [f"update/w{i}" for i in range(n)]
    while time.monotonic() < deadline:
        listening = sum(count for _, count in redis_client.pubsub_numsub(*channels))
        if listening + len(outcomes) >= n:
            break
        time.sleep(0.05)
    for i in range(n):
        ts[f"w{i}"] = i
    for thread in threads:
        thread.join(40)
    ts.backend.close()
    errors = [outcome for outcome in outcomes if outcome != "woke"]
    assert not errors, f"{len(errors)} of {n} waits failed, e.g. {errors[0]!r}"
    assert not any(thread.is_alive() for thread in threads), "a wait hung"
    assert outcomes.count("woke") == n
    print(f"\n[concurrency] {n} threads waiting on one sync TelescopeState (redis): all woke")


@pytest.mark.parametrize(
    ("kind", "tasks_n"),
    [
        ("memory", 200),
        ("redis", 90),
        ("redis", 200),  # more than the pool's 32 connections: calls queue for one
    ],
)
def test_tasks_share_one_asyncio_telescope_state(
    kind: str, tasks_n: int, request: pytest.FixtureRequest
) -> None:
    iterations = 18 * ROUNDS  # a multiple of 6
    if kind == "redis":
        request.getfixturevalue("redis_client")  # flushes the server
        server: RedisServer = request.getfixturevalue("redis_server")

    async def main() -> tuple[Plan, int]:
        if kind == "memory":
            backend: Any = telstate.aio.MemoryBackend()
        else:
            backend = await AioRedisBackend.from_url(server.url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            plan = Plan(tasks_n, iterations)
            async with asyncio.timeout(2 * HANG):
                await asyncio.gather(*(_async_worker(ts, plan, w) for w in range(tasks_n)))
            checked = plan.check_final(await aio_snapshot(ts))
        return plan, checked

    plan, checked = asyncio.run(main())
    print(
        f"\n[concurrency] {tasks_n} tasks, one asyncio TelescopeState ({kind}): "
        f"{tasks_n * iterations} steps, {plan.reads} checked reads, {checked} writes "
        f"checked exactly once"
    )
