"""Private redis-server processes for tests (never the shared server on port 6379).

Each server gets its own temporary directory, a Unix socket and/or a free TCP
port on 127.0.0.1, and ``--save ''`` so it writes nothing unless asked.  Tests
that kill or restart a server make their own RedisServer; give it
:data:`DURABLE_ARGS` when acknowledged writes must survive the kill.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis

#: redis-server options under which every acknowledged write survives SIGKILL: the
#: append-only file, fsynced before the server sends any reply.  :meth:`RedisServer.start`
#: after :meth:`RedisServer.kill` loads it back (same directory, socket and port).
DURABLE_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


def _text(fields: dict[Any, Any], name: str) -> str:
    """A field of a reply redis-py parsed into a dict (keys and values str or bytes)."""
    value = fields[name] if name in fields else fields[name.encode()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _cluster_links(client: redis.Redis) -> set[tuple[str, str]]:
    """(direction, node id) of each cluster bus link of a node (CLUSTER LINKS)."""
    found = set()
    for link in client.execute_command("CLUSTER", "LINKS"):
        fields = link if isinstance(link, dict) else dict(zip(link[::2], link[1::2], strict=True))
        found.add((_text(fields, "direction"), _text(fields, "node")))
    return found


def server_product(client: redis.Redis) -> tuple[str, str]:
    """The product and version of the server behind `client`, as telstate names them:
    ("Valkey", "8.0.1") or ("Redis", "7.0.15") (Valkey also reports a redis_version)."""
    info = client.info("server")
    if "valkey_version" in info:
        return "Valkey", str(info["valkey_version"])
    return "Redis", str(info["redis_version"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too (so P <= 55535)."""
    for _ in range(1000):
        port = random.randint(20000, 30000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


#: Environment variable naming the server the fixtures start (a valkey-server, say);
#: redis-server on PATH by default.
SERVER_VARIABLE = "TELSTATE_REDIS_SERVER"


def server_executable() -> str:
    """The redis-server (or compatible server) the fixtures start."""
    named = os.environ.get(SERVER_VARIABLE)
    exe = shutil.which(named or "redis-server")
    if exe is None:
        if named:
            pytest.fail(f"{SERVER_VARIABLE}={named!r} is not an executable", pytrace=False)
        pytest.fail(
            "redis-server is not on PATH: install it (apt-get install redis-server); "
            "bash .ci/run does so",
            pytrace=False,
        )
    return exe


class _Process:
    """A redis-server child process in its own temporary directory: start, PING, stop."""

    proc: subprocess.Popen[bytes] | None
    dir: Path
    _tmp: tempfile.TemporaryDirectory[str]
    _log = "redis.log"

    @staticmethod
    def _executable() -> str:
        return server_executable()

    def client(self, **kwargs: Any) -> redis.Redis:
        raise NotImplementedError

    def _launch(self, command: list[str]) -> None:
        """Start `command`, and return once the server answers PING (fail the test if not)."""
        log = open(self.dir / self._log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        client = self.client(socket_timeout=1)
        deadline = time.monotonic() + 10.0
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"{command[0]} exited with status {self.proc.returncode}:\n"
                        + (self.dir / self._log).read_text(errors="replace"),
                        pytrace=False,
                    )
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop(kill=True)
                    pytest.fail("the server did not answer PING within 10 s", pytrace=False)
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()


class RedisServer(_Process):
    """A redis-server child process.

    Parameters
    ----------
    tcp
        Also listen on a free TCP port of 127.0.0.1 (default: Unix socket only).
    args
        Extra command-line arguments for redis-server.
    preload
        An RDB file for the server to load at start (copied into its directory
        under the ``--dbfilename`` given in `args`, default dump.rdb).
    """

    def __init__(
        self,
        tcp: bool = False,
        args: tuple[str, ...] = (),
        preload: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.exe = self._executable()
        self._tmp = tempfile.TemporaryDirectory(prefix="telstate-redis-")
        self.dir = Path(self._tmp.name)
        self.socket_path = str(self.dir / "redis.sock")
        self.port = port if port is not None else free_port() if tcp else 0
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        if preload is not None:
            name = args[args.index("--dbfilename") + 1] if "--dbfilename" in args else "dump.rdb"
            shutil.copy(preload, self.dir / name)
        self.start()

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}"
        return f"unix://{self.socket_path}"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, **kwargs)

    def start(self) -> None:
        # fmt: off
        command = [
            self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.socket_path, "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), *self.args,
        ]
        # fmt: on
        self._launch(command)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final save); :meth:`start` brings it back."""
        self.stop(kill=True)


class SentinelProcess(_Process):
    """A redis-server in sentinel mode, on a free TCP port of 127.0.0.1."""

    def __init__(
        self,
        service: str,
        primary_port: int,
        quorum: int,
        down_after_ms: int,
        port: int,
        myid: str,
        known: str = "",
    ) -> None:
        self.exe = self._executable()
        self._log = "sentinel.log"
        self._tmp = tempfile.TemporaryDirectory(prefix="telstate-sentinel-")
        self.dir = Path(self._tmp.name)
        self.port = port
        self.config = self.dir / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsentinel myid {myid}\n"
            f"sentinel resolve-hostnames no\n"
            f"sentinel monitor {service} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {max(4 * down_after_ms, 3000)}\n"
            f"sentinel parallel-syncs {service} 2\n{known}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> None:
        self._launch([self.exe, str(self.config), "--sentinel"])


def _replicated(info: dict[str, Any], replicas: int) -> bool:
    """Whether INFO replication shows a primary with `replicas` replicas online."""
    online = [
        value
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    ]
    return info.get("role") == "master" and len(online) >= replicas


class SentinelDeployment:
    """A primary, its replicas and sentinels watching them: Redis Sentinel on loopback.

    Parameters
    ----------
    replicas, sentinels
        How many of each (quorum: a majority of the sentinels).
    down_after_ms
        How long the sentinels wait before calling a silent primary down.
    args
        Extra redis-server arguments for the data servers (e.g. :data:`DURABLE_ARGS`).
    """

    service = "telstate"

    def __init__(
        self,
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        args: tuple[str, ...] = (),
    ) -> None:
        self.servers: list[RedisServer] = []
        self.sentinels: list[SentinelProcess] = []
        # Every data server may become the primary: start full syncs at once (the
        # default waits 5 s for more replicas to batch them).
        args = ("--repl-diskless-sync-delay", "0", *args)
        try:
            primary = RedisServer(tcp=True, args=args)
            self.servers.append(primary)
            for _ in range(replicas):
                replica_args = (*args, "--replicaof", "127.0.0.1", str(primary.port))
                self.servers.append(RedisServer(tcp=True, args=replica_args))
            self.wait_replicated(primary, replicas)
            # Each sentinel is told of the replicas and the other sentinels, so the
            # deployment is ready at once (they would otherwise learn it in a few seconds).
            quorum = sentinels // 2 + 1
            ports = [free_port() for _ in range(sentinels)]
            ids = [f"{i + 1:040x}" for i in range(sentinels)]
            replica_lines = "".join(
                f"sentinel known-replica {self.service} 127.0.0.1 {server.port}\n"
                for server in self.servers[1:]
            )
            for i in range(sentinels):
                known = replica_lines + "".join(
                    f"sentinel known-sentinel {self.service} 127.0.0.1 {ports[j]} {ids[j]}\n"
                    for j in range(sentinels)
                    if j != i
                )
                self.sentinels.append(
                    SentinelProcess(
                        self.service, primary.port, quorum, down_after_ms, ports[i], ids[i], known
                    )
                )
            self.wait_settled(primary, replicas)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    def server_at(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def primary(self) -> RedisServer:
        """The primary, as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            client = sentinel.client(socket_timeout=1)
            try:
                _, port = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                return self.server_at(int(port))
            except redis.ConnectionError:
                continue
            finally:
                client.close()
        raise RuntimeError("no sentinel answers")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        return [server for server in self.servers if server is not primary and server.running]

    @staticmethod
    def wait_replicated(primary: RedisServer, replicas: int, timeout: float = 20.0) -> None:
        """Until `replicas` replicas are connected to `primary` and in sync."""
        client = primary.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = client.info("replication")
                if _replicated(info, replicas):
                    return
                assert time.monotonic() < deadline, f"replication not settled: {info}"
                time.sleep(0.02)
        finally:
            client.close()

    def wait_primary_replicated(self, replicas: int, timeout: float = 60.0) -> RedisServer:
        """Until the primary the sentinels name has `replicas` replicas online; returns it.

        The primary is asked anew at every look: on a busy machine the sentinels may fail
        over a second time after a fault (a new primary too slow to answer them while it
        sends a full copy to a replica), and the deployment is settled on the last one.
        """
        deadline = time.monotonic() + timeout
        while True:
            primary = self.primary()
            client = primary.client(socket_timeout=5)
            try:
                info = client.info("replication")
            except redis.ConnectionError:
                info = {}
            finally:
                client.close()
            if _replicated(info, replicas):
                return primary
            assert time.monotonic() < deadline, f"replication not settled: {info}"
            time.sleep(0.02)

    def wait_settled(self, primary: RedisServer, replicas: int, timeout: float = 30.0) -> None:
        """Until every sentinel names `primary` and knows its replicas and the other sentinels."""
        deadline = time.monotonic() + timeout
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            client = sentinel.client(socket_timeout=1)
            try:
                while True:
                    state = client.sentinel_master(self.service)
                    if (
                        int(state["port"]) == primary.port
                        and int(state["num-slaves"]) >= replicas
                        and int(state["num-other-sentinels"]) >= len(self.sentinels) - 1
                        and not (state["is_sdown"] or state["is_odown"])
                    ):
                        break
                    assert time.monotonic() < deadline, f"sentinels not settled: {state}"
                    time.sleep(0.05)
            finally:
                client.close()

    def wait_for_new_primary(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Until the sentinels name a primary other than `old`, which is returned."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                primary = self.primary()
                if primary is not old:
                    return primary
            except RuntimeError:
                pass
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.02)

    def failover(self) -> None:
        """A graceful failover (SENTINEL FAILOVER): a replica is promoted, the primary demoted."""
        client = self.sentinels[0].client(socket_timeout=5)
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        finally:
            client.close()

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers:
            server.close()


class ClusterDeployment:
    """A Redis Cluster on loopback: `primaries` primaries, each with `replicas` replicas.

    Parameters
    ----------
    primaries, replicas
        The shape of the cluster (slots spread evenly over the primaries).
    node_timeout_ms
        ``cluster-node-timeout``: how long a silent primary has before its replica
        takes over.
    args
        Extra redis-server arguments for every node.
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        args: tuple[str, ...] = (),
    ) -> None:
        self.nodes: list[RedisServer] = []
        node_args = (
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-config-file", "nodes.conf",
            "--repl-diskless-sync-delay", "0",
            *args,
        )  # fmt: skip
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(RedisServer(args=node_args, port=free_cluster_port()))
            cli = shutil.which("redis-cli")
            if cli is None:
                pytest.fail("redis-cli is not on PATH: install redis-tools", pytrace=False)
            subprocess.run(
                [
                    cli, "--cluster", "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas", str(replicas), "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """A seed list naming every node."""
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def node_at(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def primaries(self) -> list[RedisServer]:
        """The primaries, as a running node's CLUSTER SLOTS says."""
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client()
            try:
                ports = {int(entry[2][1]) for entry in client.execute_command("CLUSTER", "SLOTS")}
                return [self.node_at(port) for port in sorted(ports)]
            except redis.ConnectionError:
                continue
            finally:
                client.close()
        raise RuntimeError("no node answers")

    def move_slots(self, slots: list[int], target: RedisServer) -> None:
        """Move `slots` to the primary `target`, one at a time and keys included, as
        ``redis-cli --cluster reshard`` does (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE):
        clients meet ASK while a slot moves and MOVED after."""
        primaries = self.primaries()
        clients = {node.port: node.client(socket_timeout=30) for node in primaries}
        try:
            ids = {
                port: client.execute_command("CLUSTER", "MYID").decode()
                for port, client in clients.items()
            }
            to = clients[target.port]
            for slot in slots:
                source = self.node_of_slot(slot)
                if source.port == target.port:
                    continue
                origin = clients[source.port]
                to.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
                origin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
                # Bounded: while a slot migrates, a key no longer on the source is written
                # on the target (ASK), so the source only loses keys
                for _ in range(100_000):
                    keys = origin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                    if not keys:
                        break
                    origin.execute_command(
                        "MIGRATE", "127.0.0.1", target.port, "", 0, 20_000, "KEYS", *keys
                    )
                else:
                    raise AssertionError(f"slot {slot} still has keys after 100 000 moves")
                # the target first, then the source, then the others (the documented order)
                others = [port for port in clients if port not in (target.port, source.port)]
                for port in [target.port, source.port, *others]:
                    owner = ids[target.port]
                    clients[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)
        finally:
            for client in clients.values():
                client.close()

    def node_of_slot(self, slot: int) -> RedisServer:
        """The primary holding `slot`."""
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client()
            try:
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return self.node_at(int(primary[1]))
            finally:
                client.close()
        raise RuntimeError(f"no running node serves slot {slot}")

    def node_of(self, key: bytes | str) -> RedisServer:
        """The primary holding `key`."""
        for node in self.nodes:
            if not node.running:
                continue
            client = node.client()
            try:
                slot = client.execute_command("CLUSTER", "KEYSLOT", key)
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return self.node_at(int(primary[1]))
            finally:
                client.close()
        raise RuntimeError("no node answers")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says the cluster is ok and agrees on the slots, and
        has its bus links to and from every other running node (a PUBLISH travels over
        them: one sent before they are all up may reach no subscriber on some node,
        seen on fresh Valkey 8 clusters)."""
        deadline = time.monotonic() + timeout
        while True:
            running = [node for node in self.nodes if node.running]
            states = []
            ids: dict[int, str] = {}
            links: dict[int, set[tuple[str, str]]] = {}
            for node in running:
                client = node.client()
                try:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    states.append("cluster_state:ok" in info and "cluster_slots_ok:16384" in info)
                    ids[node.port] = client.execute_command("CLUSTER", "MYID").decode()
                    links[node.port] = _cluster_links(client)
                except redis.RedisError:
                    states.append(False)
                finally:
                    client.close()
            if states and all(states) and len(ids) == len(running):
                linked = all(
                    {("to", ids[other.port]), ("from", ids[other.port])} <= links[node.port]
                    for node in running
                    for other in running
                    if other is not node
                )
                if linked:
                    return
            assert time.monotonic() < deadline, "the cluster did not settle"
            time.sleep(0.05)

    def flush(self) -> None:
        for primary in self.primaries():
            client = primary.client()
            try:
                client.flushall()
            finally:
                client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
