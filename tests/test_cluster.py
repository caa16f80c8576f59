"""Redis Cluster: the same keys and bytes, spread over several primaries.

Real clusters on loopback (:class:`.servers.ClusterDeployment`: 3 primaries, a replica
each, ``cluster-node-timeout`` 2 s).  The behaviour suite and the memory-vs-Redis state
machine also run on a cluster (``cluster`` backends in conftest.py); this module checks
what is particular to one:

* a single node's URL is enough (the cluster is detected), and so is a seed list;
* every operation keeps its meaning although a view's keys, and the keys of a state,
  live on different nodes: ``keys()`` scans every primary, ``clear()`` flushes them,
  ``delete`` removes a key under every prefix, a pipeline's "done" flag is never
  visible before its data;
* an RDB file of the whole cluster is one file that katsdptelstate and redis-server
  load, and a file loads into a cluster;
* katsdptelstate, which knows nothing of clusters, still reads a key from the node
  that holds it, and its waiters on any node hear telstate's writes;
* resharding (slots moved as ``redis-cli --cluster reshard`` moves them) under
  writers and waiters loses nothing and wakes the waiters; a primary SIGKILLed under
  writers loses no acknowledged write with ``min_replicas=1``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import katsdptelstate
import pytest

import telstate
import telstate.aio
from telstate import KeyType, TelescopeState
from telstate.aio.redis import RedisBackend as AioRedisBackend

from .servers import ClusterDeployment, RedisServer, server_product
from .test_sentinel import MODES, T0, Writers

KEYS = [f"m{i:03d}_pos_actual_scan_azim" for i in range(24)]
#: Seconds a waiter started before a fault waits (the fault, then the write it waits for).
WAIT_LIMIT = 120


@pytest.fixture
def cluster() -> Iterator[ClusterDeployment]:
    """A fresh cluster for a test that will change it (kill a node, move slots)."""
    made = ClusterDeployment()
    try:
        yield made
    finally:
        made.close()


def _nodes_of(deployment: ClusterDeployment, keys: list[str]) -> set[int]:
    return {deployment.node_of(key).port for key in keys}


def test_one_node_or_seeds_find_the_cluster(cluster_url: str, cluster_deployment: Any) -> None:
    node = cluster_deployment.nodes[0]
    for url in (f"redis://127.0.0.1:{node.port}", cluster_url):
        ts = TelescopeState(url)
        try:
            assert ts.backend.cluster
            assert ts.backend.server.endswith("(cluster of 3 primaries)")
            for key in KEYS:
                ts[key] = key
            assert _nodes_of(cluster_deployment, KEYS) == {
                p.port for p in cluster_deployment.primaries()
            }
            assert [ts[key] for key in KEYS] == KEYS
        finally:
            ts.backend.close()


def test_keys_delete_clear_across_nodes(cluster_url: str, cluster_deployment: Any) -> None:
    ts = TelescopeState(cluster_url)
    try:
        for i, key in enumerate(KEYS):
            ts.add(key, float(i), ts=T0 + i)
            ts.view("cb")[key] = i
        assert sorted(ts.keys()) == sorted(KEYS + [f"cb_{key}" for key in KEYS])
        assert ts.keys("m00*") == sorted(KEYS[:10])
        view = ts.view("cb")
        assert view.key_type(KEYS[0]) is KeyType.IMMUTABLE  # the view's first prefix wins
        view.delete(KEYS[0])  # under every prefix of the view, wherever they are
        assert not ts.exists(KEYS[0]) and not ts.exists(f"cb_{KEYS[0]}")
        info = ts.backend.server_info()  # type: ignore[attr-defined]
        assert info["keys"] == str(2 * len(KEYS) - 2)
        ts.clear()
        assert ts.keys() == []
    finally:
        ts.backend.close()


def test_pipeline_flag_is_never_visible_before_its_data(cluster_url: str) -> None:
    """Data for sensors on every node, then a flag: whoever sees the flag sees all data."""
    writer = TelescopeState(cluster_url)
    reader = TelescopeState(cluster_url)
    seen: list[str] = []
    checked: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        # until the writes end, and at least one flag was seen (bounded in time)
        deadline = time.monotonic() + 20
        while (not stop.is_set() or not checked) and time.monotonic() < deadline:
            for block in range(20):
                if reader.exists(f"done_{block}"):
                    checked.append(block)
                    missing = [
                        key
                        for key in KEYS
                        if not reader.get_range(key, st=T0 + block, et=T0 + block, include_end=True)
                    ]
                    if missing:
                        seen.append(f"block {block}: {missing} missing")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        for block in range(20):
            with writer.pipeline() as batch:
                for key in KEYS:
                    batch.add(key, float(block), ts=T0 + block)
                batch[f"done_{block}"] = True
    finally:
        stop.set()
        thread.join(30)
        writer.backend.close()
        reader.backend.close()
    assert checked, "the reader never saw a flag"
    assert seen == []


def test_rdb_of_a_whole_cluster(cluster_url: str, tmp_path: Path) -> None:
    ts = TelescopeState(cluster_url)
    try:
        for i, key in enumerate(KEYS):
            for t in range(50):
                ts.add(key, float(t), ts=T0 + t)
            ts[f"attr_{i}"] = {"i": i}
            ts.set_indexed("gains", key, complex(i, 1))
        expected = {key: ts.get_range(key, st=0) for key in KEYS}
        path = tmp_path / "cluster.rdb"
        assert ts.save_to_file(path) == 2 * len(KEYS) + 1
        # katsdptelstate and redis-server read the one file
        theirs = katsdptelstate.TelescopeState()
        theirs.load_from_file(str(path))
        assert {key: theirs.get_range(key, st=0) for key in KEYS} == expected
        assert theirs["gains"] == ts["gains"]
        loaded = RedisServer(preload=path)
        try:
            assert loaded.client().dbsize() == 2 * len(KEYS) + 1
        finally:
            loaded.close()
        # and it loads back into the (emptied) cluster, each key on its node
        ts.clear()
        assert ts.load_from_file(path) == 2 * len(KEYS) + 1
        assert {key: ts.get_range(key, st=0) for key in KEYS} == expected
        assert ts["attr_3"] == {"i": 3}
    finally:
        ts.backend.close()


def test_katsdptelstate_on_the_node_of_a_key(cluster_url: str, cluster_deployment: Any) -> None:
    """katsdptelstate knows no cluster: pointed at the node holding a key, it reads and
    writes it, and its waits are woken by telstate's writes; the notifications reach
    subscribers on every node."""
    ts = TelescopeState(cluster_url)
    try:
        ts.add("wind", 4.5, ts=T0)
        node = cluster_deployment.node_of("wind")
        theirs = katsdptelstate.TelescopeState(f"127.0.0.1:{node.port}")
        assert theirs.get_range("wind", st=0) == [(4.5, T0)]
        theirs.add("wind", 5.5, ts=T0 + 1)
        assert ts.get_range("wind", st=0) == [(4.5, T0), (5.5, T0 + 1)]
        other = next(p for p in cluster_deployment.primaries() if p.port != node.port)
        listener = other.client().pubsub()
        listener.subscribe("update/wind")
        assert listener.get_message(timeout=5)["type"] == "subscribe"
        woken: list[Any] = []

        def wait() -> None:
            try:
                theirs.wait_key("wind", lambda value, stamp: value == 6.5, timeout=10)
                woken.append(True)
            except BaseException as exc:
                woken.append(exc)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        time.sleep(0.3)  # katsdptelstate has subscribed
        ts.add("wind", 6.5, ts=T0 + 2)
        waiter.join(15)
        assert woken == [True]
        # the cluster bus passes publications on asynchronously: earlier ones may still
        # arrive after the listener subscribed; the write made after it must arrive too
        heard: list[bytes] = []
        expected = telstate.encode_value(6.5)
        deadline = time.monotonic() + 10
        while not any(data.endswith(expected) for data in heard) and time.monotonic() < deadline:
            message = listener.get_message(timeout=1)
            if message is not None and message["type"] == "message":
                heard.append(message["data"])
        listener.close()
        assert any(data.endswith(expected) for data in heard), heard
    finally:
        ts.backend.close()


# ---------------------------------------------------------------------------- faults


def _run_writers_through(
    deployment: ClusterDeployment, action: Any, min_replicas: int
) -> dict[str, Any]:
    url = deployment.url + (f"?min_replicas={min_replicas}&retry_window=25" if min_replicas else "")
    writers = Writers(url)
    ts = TelescopeState(url)
    woken: list[Any] = []

    def waiter() -> None:
        async def main() -> None:
            backend = await AioRedisBackend.from_url(url)
            async with backend:
                await telstate.aio.TelescopeState(backend).wait_key("after", timeout=WAIT_LIMIT)

        try:
            ts.wait_key("after", timeout=WAIT_LIMIT)
            asyncio.run(main())
            woken.append(True)
        except BaseException as exc:
            woken.append(exc)

    thread = threading.Thread(target=waiter, daemon=True)
    try:
        thread.start()
        writers.go.wait(60)
        time.sleep(0.5)
        action()
        time.sleep(0.5)
        ts["after"] = 1
        thread.join(60)
        results = writers.results()
        stored = {key: {round(t - T0) for _, t in ts.get_range(key, st=0)} for key in results}
    finally:
        writers.close()
        ts.backend.close()
    assert woken == [True], woken
    lost = {key: sorted(set(result["acked"]) - stored[key]) for key, result in results.items()}
    errors = {key: result["errors"] for key, result in results.items()}
    gap = max(result["gap"] for result in results.values())
    acked = sum(len(result["acked"]) for result in results.values())
    print(
        f"\n[cluster] {acked} writes acknowledged, {sum(map(len, lost.values()))} lost, "
        f"{sum(map(len, errors.values()))} raised; longest write gap {gap:.2f} s"
    )
    return {"lost": lost, "errors": errors}


def test_resharding_under_writers_and_waiters(cluster: ClusterDeployment) -> None:
    """Slots move (MOVED, ASK) while sensors are written: nothing lost, waiters woken.

    The slots of the writers' keys move, each in a band of its neighbours (the band
    keeps the reshard going for a while): a bounded move, where a whole primary's
    5461 slots took over two minutes on Valkey 8 (each SETSLOT waits for the replicas).
    """
    source = cluster.node_of("sync_sensor")
    target = next(p for p in cluster.primaries() if p.port != source.port)
    client = source.client()
    try:
        hot = [client.execute_command("CLUSTER", "KEYSLOT", f"{mode}_sensor") for mode in MODES]
    finally:
        client.close()
    slots = sorted({slot for hot_slot in hot for slot in range(hot_slot - 100, hot_slot + 100)})

    def reshard() -> None:
        cluster.move_slots([slot for slot in slots if 0 <= slot < 16384], target)
        for mode in MODES:  # every writer's slot moved
            assert cluster.node_of(f"{mode}_sensor").port == target.port


def test_killed_primary_loses_nothing_with_min_replicas(cluster: ClusterDeployment) -> None:
    victim = cluster.node_of("sync_sensor")

    def kill() -> None:
        victim.kill()
        deadline = time.monotonic() + 30
        while cluster.node_of("sync_sensor").port == victim.port:  # until a replica took over
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.05)
        victim.start()  # back, as a replica of the new primary

    outcome = _run_writers_through(cluster, kill, min_replicas=1)
    assert outcome["lost"] == {key: [] for key in outcome["lost"]}
    assert outcome["errors"] == {key: [] for key in outcome["errors"]}


def test_cli_on_a_cluster(
    cluster_url: str, cluster_deployment: ClusterDeployment, tmp_path: Path, capsys: Any
) -> None:
    from telstate.cli import main

    from .test_cli import ok

    assert main(["copy", "demo", cluster_url]) == 0
    capsys.readouterr()
    with cluster_deployment.primaries()[0].client() as client:
        product, _ = server_product(client)
    assert f"(cluster of 3 primaries) ({product} server)" in ok(capsys, "info", cluster_url)
    assert "m000_activity" in ok(capsys, "keys", cluster_url, "m000_*")
    assert ok(capsys, "get", cluster_url, "sdp_l0_n_chans").strip() == "4096"
    ok(capsys, "copy", cluster_url, str(tmp_path / "copy.rdb"))
    assert TelescopeState.open(tmp_path / "copy.rdb")["sdp_l0_n_chans"] == 4096
