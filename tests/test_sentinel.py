"""Redis Sentinel: telstate follows failovers, and with ``min_replicas`` loses nothing.

Every test here runs a real deployment on loopback (:class:`.servers.SentinelDeployment`:
a primary, two replicas, three sentinels with a 1 s down-after time) and injects one
fault while writer *processes* stream sensor samples through the sync front end, a
sync pipeline and the asyncio front end:

* ``kill``: SIGKILL of the primary (restarted once the sentinels have promoted a
  replica, so it rejoins as a replica);
* ``failover``: a graceful ``SENTINEL FAILOVER`` (the old primary keeps running and
  is demoted by the sentinels a little later);
* ``stop``: SIGSTOP of the primary (it freezes with its connections open), SIGCONT
  once the sentinels have promoted a replica.

Each writer counts the writes it saw acknowledged; afterwards every acknowledged
sample must be on the new primary when ``min_replicas`` equals the number of
replicas (2), and writes stall (they are retried, for up to the retry window) while
fewer replicas are online.  Without ``min_replicas`` Redis replication is asynchronous, so a
write acknowledged by a primary that dies before passing it on can be lost: the
tests report how many were, and check that nothing else went wrong (writes resume,
waits are woken).  A wait started before each fault must be woken by a write made
after it (a sync and an asyncio waiter).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import katsdptelstate
import pytest

import telstate
import telstate.aio
from telstate import TelescopeState
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend

from .servers import RedisServer, SentinelDeployment, server_product

T0 = 1_700_000_000.0
MODES = ("sync", "pipeline", "aio")
WRITER_LIMIT = 60.0  # seconds: a writer stops by itself after this, whatever happens
PIPELINE = 50


@pytest.fixture
def deployment() -> Iterator[SentinelDeployment]:
    """A fresh deployment for a test that will fail it over."""
    made = SentinelDeployment()
    try:
        yield made
    finally:
        made.close()


# ------------------------------------------------------------------ writer processes


def _write_stream(mode: str, url: str, key: str, go: Any, stop: Any) -> dict[str, Any]:
    acked: list[int] = []
    times: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + WRITER_LIMIT
    n = 0
    if mode == "aio":

        async def main() -> None:
            nonlocal n
            backend = await AioRedisBackend.from_url(url)
            async with backend:
                ts = telstate.aio.TelescopeState(backend)
                await asyncio.to_thread(go.wait, 60)  # all connected: start together
                while not stop.is_set() and time.monotonic() < end:
                    try:
                        await ts.add(key, float(n), ts=T0 + n)
                        acked.append(n)
                        times.append(time.monotonic())
                    except telstate.ConnectionError as exc:
                        errors.append(repr(exc))
                    n += 1

        asyncio.run(main())
    else:
        ts = TelescopeState(url)
        go.wait(60)  # all connected: start together
        while not stop.is_set() and time.monotonic() < end:
            try:
                if mode == "sync":
                    ts.add(key, float(n), ts=T0 + n)
                    acked.append(n)
                else:
                    with ts.pipeline() as batch:
                        for i in range(n, n + PIPELINE):
                            batch.add(key, float(i), ts=T0 + i)
                    acked.extend(range(n, n + PIPELINE))
                times.append(time.monotonic())
            except telstate.ConnectionError as exc:
                errors.append(repr(exc))
            n += 1 if mode == "sync" else PIPELINE
        ts.backend.close()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {"acked": acked, "errors": errors, "gap": max(gaps, default=0.0), "sent": n}


def _writer(mode: str, url: str, key: str, go: Any, stop: Any, outbox: Any) -> None:
    """A spawned process streaming samples to `key` until told to stop."""
    try:
        outbox.put((key, "ok", _write_stream(mode, url, key, go, stop)))
    except BaseException:
        outbox.put((key, "error", traceback.format_exc()))


class Writers:
    """One writer process per mode, on one deployment."""

    def __init__(self, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.go = ctx.Barrier(len(MODES) + 1)
        self.stop = ctx.Event()
        self.outbox: Any = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_writer,
                args=(mode, url, f"{mode}_sensor", self.go, self.stop, self.outbox),
                name=f"telstate-writer-{mode}",
                daemon=True,
            )
            for mode in MODES
        ]
        for proc in self.procs:
            proc.start()

    def results(self) -> dict[str, dict[str, Any]]:
        self.stop.set()
        results: dict[str, dict[str, Any]] = {}
        errors = []
        for _ in self.procs:
            key, status, result = self.outbox.get(timeout=WRITER_LIMIT + 30)
            if status == "error":
                errors.append(f"{key}:\n{result}")
            else:
                results[key] = result
        for proc in self.procs:
            proc.join(10)
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)
        return results

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():  # pragma: no cover - a stuck writer
                proc.kill()
                proc.join()
        self.outbox.close()
        self.outbox.join_thread()


# ------------------------------------------------------------------------- faults


def _inject(deployment: SentinelDeployment, fault: str) -> tuple[RedisServer, float]:
    """Inject `fault`; returns the primary the deployment settled on, with both replicas
    online (the new one, unless the sentinels failed over again meanwhile), and the
    sentinels' failover time."""
    old = deployment.primary()
    start = time.monotonic()
    if fault == "kill":
        old.kill()
    elif fault == "failover":
        deployment.failover()
    else:
        assert old.proc is not None
        os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        new = deployment.wait_for_new_primary(old)
        switched = time.monotonic() - start
    finally:
        if fault == "kill":
            old.start()  # it comes back, and the sentinels make it a replica
        elif fault == "stop":
            assert old.proc is not None
            os.kill(old.proc.pid, signal.SIGCONT)
    # A killed primary that comes back is made a replica when a sentinel next polls it
    # (every 10 s), then it loads a full copy: 20 s is not always enough on a busy machine.
    settled = deployment.wait_primary_replicated(2, timeout=60.0 if fault == "kill" else 20.0)
    if settled is not new:  # a second failover: seen once in CI, with the machine loaded
        print(f"the sentinels failed over again, to {settled.port}", file=sys.stderr)
    return settled, switched


def _run_fault(deployment: SentinelDeployment, fault: str, min_replicas: int) -> dict[str, Any]:
    # With min_replicas=2, writes stall until the two replicas of the new primary are
    # online: a killed primary must come back and be made a replica by the sentinels,
    # which they do within ~10 s (seen up to ~20 s on a busy machine).  The retry window
    # must cover that, and the test's wait for it in `_inject`.
    url = deployment.url + (f"?min_replicas={min_replicas}&retry_window=60" if min_replicas else "")
    writers = Writers(url)
    ts = TelescopeState(url)
    woken: list[Any] = []

    def waiter() -> None:
        try:
            ts.wait_key("after_fault", timeout=60)
            woken.append(time.monotonic())
        except BaseException as exc:
            woken.append(exc)

    def aio_waiter() -> None:
        async def main() -> None:
            backend = await AioRedisBackend.from_url(url)
            async with backend:
                await telstate.aio.TelescopeState(backend).wait_key("after_fault", timeout=60)

        try:
            asyncio.run(main())
            woken.append(time.monotonic())
        except BaseException as exc:
            woken.append(exc)

    thread = threading.Thread(target=waiter, daemon=True)
    aio_thread = threading.Thread(target=aio_waiter, daemon=True)
    try:
        thread.start()
        aio_thread.start()
        writers.go.wait(60)  # every writer is connected
        time.sleep(0.5)  # writes flowing
        new, switched = _inject(deployment, fault)
        time.sleep(0.5)  # writes flowing on the new primary
        written = time.monotonic()
        ts["after_fault"] = fault
        thread.join(30)
        aio_thread.join(30)
        results = writers.results()
        assert ts.backend.server.endswith(f"(primary 127.0.0.1:{new.port})")
        stored = {key: {round(t - T0) for _, t in ts.get_range(key, st=0)} for key in results}
    finally:
        writers.close()
        ts.backend.close()
    assert len(woken) == 2 and all(isinstance(when, float) for when in woken), woken
    lost = {key: sorted(set(result["acked"]) - stored[key]) for key, result in results.items()}
    for key, result in results.items():
        assert result["acked"], f"{key}: nothing acknowledged"
        assert max(result["acked"]) > 0.8 * result["sent"], f"{key}: writes did not resume"
    return {
        "lost": lost,
        "acked": {key: len(result["acked"]) for key, result in results.items()},
        "errors": {key: result["errors"] for key, result in results.items()},
        "gap": max(result["gap"] for result in results.values()),
        "switched": switched,
        "woken": max(woken) - written,
    }


def _report(fault: str, min_replicas: int, outcome: dict[str, Any]) -> None:
    lost = sum(len(v) for v in outcome["lost"].values())
    errors = sum(len(v) for v in outcome["errors"].values())
    print(
        f"\n[sentinel] {fault}, min_replicas={min_replicas}: "
        f"{sum(outcome['acked'].values())} writes acknowledged, {lost} lost, "
        f"{errors} raised; sentinels switched after {outcome['switched']:.2f} s, longest "
        f"write gap {outcome['gap']:.2f} s; waiter woken {outcome['woken'] * 1000:.1f} ms "
        "after the write"
    )


@pytest.mark.parametrize("fault", ["kill", "failover", "stop"])
def test_no_acknowledged_write_lost_with_min_replicas(
    deployment: SentinelDeployment, fault: str
) -> None:
    outcome = _run_fault(deployment, fault, min_replicas=2)
    _report(fault, 2, outcome)
    assert outcome["lost"] == {key: [] for key in outcome["lost"]}
    assert outcome["errors"] == {key: [] for key in outcome["errors"]}


@pytest.mark.parametrize("fault", ["kill", "failover", "stop"])
def test_writes_resume_without_min_replicas(deployment: SentinelDeployment, fault: str) -> None:
    """Acknowledged writes may be lost (asynchronous replication): counted, not failed."""
    outcome = _run_fault(deployment, fault, min_replicas=0)
    _report(fault, 0, outcome)
    assert outcome["errors"] == {key: [] for key in outcome["errors"]}


# ------------------------------------------------------------------- the basics


def test_url_names_service_and_primary(sentinel_url: str, sentinel_deployment: Any) -> None:
    ts = TelescopeState(sentinel_url)
    try:
        primary = sentinel_deployment.primary()
        assert ts.backend.server == f"{sentinel_url} (primary 127.0.0.1:{primary.port})"
        assert repr(ts.backend) == f"<RedisBackend {ts.backend.server}>"
        ts["x"] = 1
        assert primary.client().get("x") == b"\xff\x01"
    finally:
        ts.backend.close()


def test_from_sentinel_and_master_for(sentinel_url: str, sentinel_deployment: Any) -> None:
    import redis.sentinel

    addresses = sentinel_deployment.sentinel_addresses
    service = sentinel_deployment.service
    by_constructor = RedisBackend.from_sentinel(addresses, service, min_replicas=2)
    client = redis.sentinel.Sentinel(addresses).master_for(service)
    by_client = RedisBackend(client)
    try:
        TelescopeState(by_constructor)["a"] = 1
        assert TelescopeState(by_client)["a"] == 1
        assert by_client.server == by_constructor.server
        assert by_constructor.min_replicas == 2
    finally:
        by_constructor.close()
        by_client.close()

    async def aio() -> None:
        backend = await AioRedisBackend.from_sentinel(addresses, service)
        async with backend:
            assert await telstate.aio.TelescopeState(backend).get("a") == 1

    asyncio.run(aio())


def test_unknown_service_fails_at_once(sentinel_deployment: Any) -> None:
    """A service no sentinel knows is not a failover in progress: not retried (with a
    10-minute retry window, a retry would run into the test's timeout)."""
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel_deployment.sentinel_addresses)
    with pytest.raises(telstate.ConnectionError, match="no sentinel named a primary for 'nope'"):
        TelescopeState(f"redis+sentinel://{hosts}/nope?retry_window=600")


def test_dead_sentinels_are_skipped(sentinel_url: str, sentinel_deployment: Any) -> None:
    from .servers import free_port

    dead = f"127.0.0.1:{free_port()}"
    url = sentinel_url.replace("redis+sentinel://", f"redis+sentinel://{dead},")
    ts = TelescopeState(url)
    try:
        ts["x"] = 2
        assert ts["x"] == 2
    finally:
        ts.backend.close()


def test_katsdptelstate_works_on_the_current_primary(deployment: SentinelDeployment) -> None:
    """katsdptelstate speaks no Sentinel: pointed at the current primary, it shares the data."""
    ts = TelescopeState(deployment.url + "?min_replicas=2")
    try:
        ts.add("sensor", 1.0, ts=T0)
        new, _ = _inject(deployment, "failover")
        ts.add("sensor", 2.0, ts=T0 + 1)
        theirs = katsdptelstate.TelescopeState(f"127.0.0.1:{new.port}")
        assert theirs.get_range("sensor", st=0) == [(1.0, T0), (2.0, T0 + 1)]
        theirs["from_katsdptelstate"] = "hello"
        assert ts["from_katsdptelstate"] == "hello"
    finally:
        ts.backend.close()


def test_readonly_replica_is_a_clear_error(sentinel_deployment: Any, sentinel_url: str) -> None:
    """Talking to a replica directly: writes are refused with a telstate error."""
    primary = sentinel_deployment.primary()
    replica = sentinel_deployment.replicas_of(primary)[0]
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{replica.port}", retry_window=0.3)
    try:
        with pytest.raises(telstate.ConnectionError, match="READONLY"):
            TelescopeState(backend)["x"] = 1
    finally:
        backend.close()


def test_unconfirmed_writes_raise(sentinel_deployment: Any, sentinel_url: str) -> None:
    """More replicas required than exist: the write is applied but never confirmed."""
    ts = TelescopeState(sentinel_url + "?min_replicas=3&retry_window=0.5")
    try:
        with pytest.raises(telstate.UnconfirmedWriteError, match="only 2 of the 3 replicas"):
            ts["x"] = 1
        assert isinstance(telstate.UnconfirmedWriteError("x"), telstate.ConnectionError)
    finally:
        ts.backend.close()


# ------------------------------------------------------------------- the command


def test_cli_commands_take_a_sentinel_url(
    sentinel_url: str, sentinel_deployment: Any, tmp_path: Any, capsys: Any
) -> None:
    from telstate.cli import main

    from .test_cli import ok, watching

    assert main(["copy", "demo", sentinel_url]) == 0
    capsys.readouterr()
    primary = sentinel_deployment.primary()
    info = ok(capsys, "info", sentinel_url)
    with primary.client() as client:
        product, _ = server_product(client)
    assert f"(primary 127.0.0.1:{primary.port}) ({product} server)" in info
    assert "m000_activity" in ok(capsys, "keys", sentinel_url, "m000_*")
    assert ok(capsys, "get", sentinel_url, "sdp_l0_n_chans").strip() == "4096"
    assert "slew" in ok(capsys, "range", sentinel_url, "m000_activity")
    ok(capsys, "copy", sentinel_url, str(tmp_path / "copy.rdb"))
    assert TelescopeState.open(tmp_path / "copy.rdb")["sdp_l0_n_chans"] == 4096
    ts = TelescopeState(sentinel_url)
    try:
        with watching(sentinel_url, "watched", "--no-initial") as (lines, ended):
            admin = primary.client()
            deadline = time.monotonic() + 20
            while admin.pubsub_numsub("update/watched")[0][1] == 0:
                assert time.monotonic() < deadline, "watch never subscribed"
                time.sleep(0.02)
            admin.close()
            ts.add("watched", 1.5, ts=T0)
            assert lines.next().endswith("watched  1.5")
    finally:
        ts.backend.close()
    assert ended == [0, ""]  # Ctrl-C ends watch cleanly
