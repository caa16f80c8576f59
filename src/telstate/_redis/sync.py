"""The blocking driver of the Redis transport: sockets, hiredis and a few threads.

It runs the plans of :mod:`.session` with blocking I/O and owns what only a driver
can own:

* **connections**: sockets (TCP, Unix, TLS) read by a hiredis reader (sensor reads
  received raw by :mod:`.raw`); a stack of idle connections per server serves any
  number of threads, one exchange per connection at a time.  Clients that telstate
  cannot reproduce (fakeredis, custom connection classes) are driven through their
  own redis-py connections instead;
* **pauses** that end early when the primary changes;
* **the pub/sub hub**: one thread and one connection serve every waiter of the
  transport (see :mod:`.hub`); it runs while anyone waits;
* **the sentinel watch**: with Sentinel, a thread listens to the sentinels'
  ``+switch-master`` so the transport moves to a new primary as soon as it is
  announced, closing connections to the old one (its in-flight calls are sent
  again to the new primary: telstate's writes are idempotent).

Threads hold the transport weakly and end when it is closed or forgotten.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import redis

from .. import _deadline
from . import rules
from .base import Reconnection, TransportState, subscribed
from .config import Address, ServerConfig
from .errors import RedisConnectionError as ConnectionError
from .hub import (
    WATCH_COMMAND,
    HubState,
    Item,
    Lost,
    Message,
    channels_of,
    sentinel_event,
)
from .raw import Received, receive_reads
from .resp import ProtocolError, Reader, pack
from .session import (
    MISS,
    Command,
    Exchange,
    Node,
    Parallel,
    Pause,
    Plan,
    Scripts,
    check_handshake,
    discover,
    first_try,
    first_try_answered,
    first_try_failed,
    first_try_node,
    handshake_commands,
    quick_answered,
)

__all__ = ["SyncSubscription", "SyncTransport"]

logger = logging.getLogger("telstate.redis")
_T = TypeVar("_T")

_READ_SIZE = 1 << 20
#: Seconds a blocked reader (hub, sentinel watch) waits before looking around.
_POLL = 1.0
#: Seconds between attempts to reach a sentinel that is not listened to.
_RECONNECT = 1.0
#: Seconds to wait for the server to confirm a SUBSCRIBE.
SUBSCRIBE_TIMEOUT = 10.0


# ------------------------------------------------------------------------ connections


class SocketConnection:
    """A socket to a Redis server, its replies parsed by hiredis."""

    def __init__(self, sock: socket.socket, node: Node, epoch: int) -> None:
        self.sock = sock
        self.node = node
        self.epoch = epoch
        self.reader = Reader()
        self.buffer = bytearray(_READ_SIZE)
        self.timeout = sock.gettimeout()

    def fileno(self) -> int:
        return self.sock.fileno()

    def exchange(self, payload: bytes, count: int, bulk: bool = False) -> list[Any]:
        """Send `payload`, return `count` replies.

        With `bulk` (a sensor read: see ``resp.bulk_read_prefix``), the members array
        of a successful read comes back raw, as a ``RawArray``.
        """
        self.send(payload)
        return self._receive_bulk(count) if bulk else self.receive(count)

    def exchange_one(self, payload: bytes) -> Any:
        """Send `payload` (one command), return its reply: :meth:`exchange` in fewer steps."""
        sock = self.sock
        reader = self.reader
        try:
            sock.sendall(payload)
            reply = reader.gets()
            while reply is False:
                size = sock.recv_into(self.buffer)
                if not size:
                    raise rules.Dropped(f"{self.node} closed the connection")
                reader.feed(self.buffer, 0, size)
                reply = reader.gets()
        except OSError as exc:
            raise self._lost(exc) from exc
        except ProtocolError as exc:
            raise rules.Dropped(f"{self.node} does not speak the Redis protocol: {exc}") from exc
        return reply

    def _lost(self, exc: OSError) -> rules.Dropped:
        """The failure an error of the socket stands for."""
        if isinstance(exc, builtins.TimeoutError | BlockingIOError):  # see open_socket
            timeout = self.timeout if self.timeout is not None else _kernel_timeout(self.sock)
            return rules.Dropped(f"{self.node} did not answer in {timeout} s")
        return rules.Dropped(f"connection to {self.node} lost: {exc}")

    def _receive_bulk(self, count: int) -> list[Any]:
        """The replies of ``count // 4`` sensor-read transactions, members arrays raw
        where they can be (:func:`.raw.receive_reads`)."""
        receiver = receive_reads(count)
        try:
            view = next(receiver)
            while True:
                view = receiver.send(self._recv_into(view))
        except StopIteration as done:
            received: Received = done.value
        if received.left:
            self.reader.feed(received.rest)
            return received.replies + self.receive(received.left)
        if received.rest:  # bytes after the replies: not plain reads after all
            raise rules.Dropped(f"{self.node} sent more than the replies of a read")
        return received.replies

    def _recv_into(self, view: memoryview) -> int:
        try:
            size = self.sock.recv_into(view)
        except OSError as exc:
            raise self._lost(exc) from exc
        if not size:
            raise rules.Dropped(f"{self.node} closed the connection")
        return size

    def receive(self, count: int) -> list[Any]:
        """The next `count` replies."""
        replies: list[Any] = []
        while len(replies) < count:
            reply = self._gets()
            if reply is False:
                self._receive()
                continue
            replies.append(reply)
        return replies

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            raise rules.Dropped(f"sending to {self.node} failed: {exc}") from exc

    def _receive(self) -> None:
        size = self._recv_into(memoryview(self.buffer))
        self.reader.feed(self.buffer, 0, size)

    def read(self, timeout: float, wake: socket.socket | None = None) -> list[Any]:
        """Replies that arrive within `timeout` (none if `wake` becomes readable first)."""
        replies = self._available()
        if replies:
            return replies
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            watched: list[Any] = [self.sock] if wake is None else [self.sock, wake]
            readable, _, _ = select.select(watched, [], [], timeout)
            if self.sock not in readable:
                return []
        self._receive()
        return self._available()

    def _available(self) -> list[Any]:
        replies = []
        while (reply := self._gets()) is not False:
            replies.append(reply)
        return replies

    def _gets(self) -> Any:
        """The next parsed reply, or False; bytes that are not RESP drop the connection."""
        try:
            return self.reader.gets()
        except ProtocolError as exc:
            raise rules.Dropped(f"{self.node} does not speak the Redis protocol: {exc}") from exc

    def abort(self) -> None:
        """Make a blocked exchange in another thread fail at once."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ClientConnection:
    """A connection of a redis-py-compatible client (fakeredis, say), moving the same bytes."""

    def __init__(self, client: Any, node: Node, epoch: int) -> None:
        self.node = node
        self.epoch = epoch
        try:
            self.connection = client.connection_pool.make_connection()
            self.connection.connect()
        except redis.AuthenticationError as exc:
            raise rules.Refused(f"refused the credentials: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise rules.Unreachable(str(exc)) from exc
        except redis.RedisError as exc:  # an error reply to its handshake, say
            raise rules.Rejected(f"refused the connection: {exc}") from exc

    def fileno(self) -> None:
        return None

    def exchange(self, payload: bytes, count: int, bulk: bool = False) -> list[Any]:
        self.send(payload)
        return self.receive(count)

    def exchange_one(self, payload: bytes) -> Any:
        self.send(payload)
        return self._read_one()

    def receive(self, count: int) -> list[Any]:
        return [self._read_one() for _ in range(count)]

    def send(self, payload: bytes) -> None:
        try:
            self.connection.send_packed_command([payload], check_health=False)
        except (redis.RedisError, OSError) as exc:
            raise rules.Dropped(str(exc)) from exc

    def _read_one(self) -> Any:
        try:
            return self.connection.read_response(disable_decoding=True)
        except redis.ResponseError as exc:
            return exc
        except (redis.RedisError, OSError) as exc:  # InvalidResponse too: a stream to drop
            raise rules.Dropped(str(exc)) from exc

    def read(self, timeout: float, wake: socket.socket | None = None) -> list[Any]:
        step = min(timeout, 0.05)  # no socket to select on: poll, looking at `wake` too
        end = time.monotonic() + timeout
        while True:
            try:
                if self.connection.can_read(timeout=step):
                    replies = [self._read_one()]
                    while self.connection.can_read(timeout=0):
                        replies.append(self._read_one())
                    return replies
            except (redis.RedisError, OSError) as exc:
                raise rules.Dropped(str(exc)) from exc
            if wake is not None and select.select([wake], [], [], 0)[0]:
                return []
            if time.monotonic() >= end:
                return []

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.disconnect()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.disconnect()


Connection = SocketConnection | ClientConnection


#: Whether sockets time out by the kernel's SO_RCVTIMEO / SO_SNDTIMEO (a struct timeval).
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")


def open_socket(config: ServerConfig, node: Node, tls: ssl.SSLContext | None) -> socket.socket:
    """A socket connected to `node` (TLS handshake done), or a Failure."""
    address = node.address
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(config.connect_timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(address, timeout=config.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                try:
                    sock = tls.wrap_socket(sock, server_hostname=address[0])
                except BaseException:
                    sock.close()
                    raise
    except ssl.SSLCertVerificationError as exc:
        raise rules.TlsRefused(str(exc)) from exc
    except ssl.SSLError as exc:
        raise rules.TlsRefused(str(exc)) from exc
    except OSError as exc:
        raise rules.Unreachable(str(exc) or type(exc).__name__) from exc
    if _KERNEL_TIMEOUTS and not isinstance(sock, ssl.SSLSocket):
        # Blocking, with the kernel's timeouts (a recv or send that times out fails with
        # EAGAIN: see SocketConnection._lost).  Python's own timeout would poll() the
        # socket before every send and every receive: two system calls per round trip.
        sock.settimeout(None)
        seconds = config.socket_timeout
        timeval = struct.pack("ll", int(seconds), round(seconds % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    else:
        sock.settimeout(config.socket_timeout)
    return sock


def _kernel_timeout(sock: socket.socket) -> float:
    """Seconds a receive on `sock` may wait, as set by :func:`open_socket`."""
    timeval = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
    seconds, micro = struct.unpack("ll", timeval)
    return float(seconds + micro / 1e6)


# -------------------------------------------------------------------------- transport


class SyncTransport(TransportState):
    """Runs the transport's plans with blocking I/O, for any number of threads.

    Parameters are those of :class:`.base.TransportState`.
    """

    def __init__(self, config: ServerConfig, scripts: Scripts, client: Any = None) -> None:
        super().__init__(config, scripts, client)
        self._lock = threading.Lock()
        # Idle connections by node; each node's list lives as long as the transport, so
        # the list of the node used last (the primary, mostly) is kept at hand with it:
        # no hashing of the node on the hot path.
        self._idle: dict[Node, list[Connection]] = {}
        self._lane: tuple[Node | None, list[Connection]] = (None, [])  # the node used last
        self._busy: set[Connection] = set()
        self._changed = threading.Condition()
        self._closed = False
        self._hub: _SyncHub | None = None
        weakref.finalize(self, _close_idle, self._idle)  # a transport never closed
        self.topology.listen(self._on_switch)
        if config.kind == "sentinel":
            self._watch = threading.Thread(
                target=_watch_sentinels,
                args=(weakref.ref(self),),
                name=f"telstate sentinel watch {config.service}",
                daemon=True,
            )
            self._watch.start()

    # -- running plans

    def run(self, commands: Sequence[Command], *, writes: bool = False) -> list[Any]:
        """Replies to `commands` (the plan of :meth:`.base.TransportState.call`)."""
        quick = first_try(self.topology, self.scripts, commands, writes)
        if quick is not None and not self._closed:
            replies = self._try(*quick, len(commands))
            if replies is not MISS and first_try_answered(replies):
                return replies  # type: ignore[no-any-return]
        return self.drive(self.call(commands, writes))

    def quick(self, payload: bytes, writes: bool = False) -> Any:
        """The reply to `payload`, one command for the primary, if its first try answers
        it cleanly; else :data:`.session.MISS`, and the caller runs the operation's plan
        (which sends it again under every rule).  No rule is applied here: see
        :func:`.session.first_try`."""
        node = first_try_node(self.topology, writes)
        if node is None or self._closed:
            return MISS
        reply = self._try(node, payload, 0)
        return reply if reply is not MISS and quick_answered(reply) else MISS

    def _try(self, node: Node, payload: bytes, count: int) -> Any:
        """One exchange of `count` replies (0: one command, its reply alone), or
        :data:`.session.MISS` if it failed (the caller then runs the whole plan)."""
        try:
            connection = self._checkout(node)
        except rules.Failure as failure:
            first_try_failed(self.topology, failure)
            return MISS
        try:
            if count:
                replies = connection.exchange(payload, count)
            else:
                replies = connection.exchange_one(payload)
        except rules.Failure as failure:
            self._discard(connection)
            first_try_failed(self.topology, failure)
            return MISS
        except BaseException:
            self._discard(connection)  # interrupted mid-reply: the stream is unusable
            raise
        self._checkin(connection)
        return replies

    def drive(self, plan: Plan[_T]) -> _T:
        """Run a plan to its end."""
        reply: Any = None
        failure: rules.Failure | None = None
        while True:
            try:
                effect = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = failure = None
            if type(effect) is Exchange:
                try:
                    reply = self._exchange(effect)
                except rules.Failure as exc:
                    failure = exc
            elif isinstance(effect, Parallel):
                reply = self._parallel(effect)
            elif isinstance(effect, Pause):
                self._pause(effect.seconds)

    def _exchange(self, effect: Exchange) -> list[Any]:
        if self._closed:
            raise self.closed_error()
        connection = self._checkout(effect.node)
        try:
            replies = connection.exchange(effect.payload, effect.count, effect.bulk)
        except BaseException:
            self._discard(connection)  # interrupted mid-reply: the stream is unusable
            raise
        self._checkin(connection)
        return replies

    def _parallel(self, effect: Parallel) -> list[list[Any] | rules.Failure]:
        """Several exchanges at once: every payload is sent, then the replies are read."""
        if self._closed:
            raise self.closed_error()
        results: list[list[Any] | rules.Failure] = []
        sent: list[tuple[int, Connection]] = []
        try:
            for exchange in effect.exchanges:
                results.append([])
                try:
                    connection = self._checkout(exchange.node)
                except rules.Failure as exc:
                    results[-1] = exc
                    continue
                try:
                    connection.send(exchange.payload)
                except rules.Failure as exc:
                    self._discard(connection)
                    results[-1] = exc
                    continue
                sent.append((len(results) - 1, connection))
            while sent:
                index, connection = sent.pop(0)
                try:
                    results[index] = connection.receive(effect.exchanges[index].count)
                except rules.Failure as exc:
                    self._discard(connection)
                    results[index] = exc
                    continue
                self._checkin(connection)
        except BaseException:
            for _, connection in sent:
                self._discard(connection)
            raise
        return results

    def _pause(self, seconds: float) -> None:
        epoch = self.topology.epoch
        with self._changed:
            self._changed.wait_for(lambda: self.topology.epoch != epoch, seconds)

    # -- connections

    def connect(self, node: Node) -> Connection:
        """A new connection to `node`, introduced (credentials, database, role)."""
        epoch = self.topology.epoch
        if self.foreign is not None:
            return ClientConnection(self.foreign, node, epoch)
        connection = SocketConnection(
            open_socket(self.config, node, self.sentinel_tls if node.sentinel else self.tls),
            node,
            epoch,
        )
        commands = handshake_commands(self.config, node)
        try:
            if commands:
                replies = connection.exchange(pack(commands), len(commands))
                check_handshake(self.config, node, commands, replies)
        except BaseException:
            connection.close()
            raise
        return connection

    def _idle_of(self, node: Node) -> list[Connection]:
        """The idle connections to `node`, when not at hand (called with the lock held)."""
        idle = self._idle.setdefault(node, [])
        self._lane = (node, idle)
        return idle

    def _checkout(self, node: Node) -> Connection:
        with self._lock:
            lane = self._lane
            idle = lane[1] if lane[0] is node else self._idle_of(node)
            while idle:
                connection = idle.pop()
                if node.sentinel or connection.epoch == self.topology.epoch:
                    self._busy.add(connection)
                    return connection
                connection.close()
        connection = self.connect(node)
        with self._lock:
            self._busy.add(connection)
        return connection

    def _checkin(self, connection: Connection) -> None:
        node = connection.node
        with self._lock:
            self._busy.discard(connection)
            if (node.sentinel or connection.epoch == self.topology.epoch) and not self._closed:
                lane = self._lane
                (lane[1] if lane[0] is node else self._idle_of(node)).append(connection)
                return
        connection.close()

    def _discard(self, connection: Connection) -> None:
        with self._lock:
            self._busy.discard(connection)
        connection.close()

    def _on_switch(self) -> None:
        """The primary changed (or is gone): drop connections to the old one, wake pauses."""
        primary = self.topology.primary
        with self._lock:
            stale: list[Connection] = []
            for node, idle in self._idle.items():
                if not node.sentinel:
                    stale += idle
                    idle.clear()  # in place: the lists live on (see __init__)
            # Calls in flight to a former primary fail now and go to the new one; while
            # a failover is under way, also those to the primary being replaced.
            moved = (
                []
                if primary is None and not self.topology.holding
                else [c for c in self._busy if not c.node.sentinel and c.node != primary]
            )
        for connection in stale:
            connection.close()
        for connection in moved:
            connection.abort()  # its call fails now and is sent again to the new primary
        with self._changed:
            self._changed.notify_all()
        hub = self._hub
        if hub is not None:
            hub.wake()

    # -- pub/sub

    def subscribe(self, keys: Sequence[bytes]) -> SyncSubscription:
        """Listen to the notifications of `keys` (returns once the server confirmed)."""
        with self._lock:
            if self._hub is None:
                self._hub = _SyncHub(self)
            hub = self._hub
        return hub.subscribe(keys)

    def close(self) -> None:
        """Close every connection; the transport is unusable afterwards."""
        with self._lock:
            self._closed = True
            connections = [c for idle in self._idle.values() for c in idle]
            for idle in self._idle.values():
                idle.clear()
            busy = list(self._busy)
        for connection in connections:
            connection.close()
        for connection in busy:
            connection.abort()
        hub = self._hub
        if hub is not None:
            hub.close()
        with self._changed:
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


def _close_idle(idle: dict[Node, list[Connection]]) -> None:
    for connections in list(idle.values()):
        for connection in connections:
            connection.close()
    idle.clear()


# ----------------------------------------------------------------- the sentinel watch


def _watch_sentinels(ref: weakref.ReferenceType[SyncTransport]) -> None:
    """Thread: follow every sentinel's announcements of failovers of the service.

    Only the sentinel leading a failover announces its steps, so all are listened to
    (one thread, one connection each, reconnected when lost).
    """
    connections: dict[Address, SocketConnection] = {}
    last_attempt = 0.0
    first = True
    try:
        while True:
            transport = ref()
            if transport is None or transport.closed:
                return
            topology = transport.topology
            service = topology.config.service
            now = time.monotonic()
            if len(connections) < len(topology.sentinels) and now - last_attempt > _RECONNECT:
                last_attempt = now
                connected = False
                for address in topology.sentinels:
                    if address in connections:
                        continue
                    try:
                        connection = transport.connect(Node(address, sentinel=True))
                    except (rules.Failure, ConnectionError):
                        continue
                    assert isinstance(connection, SocketConnection)
                    try:
                        connection.exchange(pack([WATCH_COMMAND]), 1)
                    except rules.Failure:
                        connection.close()
                        continue
                    connections[address] = connection
                    connected = True
                if connected and not first:
                    # announcements may have been missed while a sentinel was not heard
                    with contextlib.suppress(rules.Failure, ConnectionError):
                        transport.drive(discover(topology))
                first = first and not connected
            del transport, topology
            if not connections:
                time.sleep(_RECONNECT / 4)
                continue
            # TLS may hold decrypted bytes that select() cannot see
            ready = [
                c
                for c in connections.values()
                if isinstance(c.sock, ssl.SSLSocket) and c.sock.pending()
            ]
            if not ready:
                readable, _, _ = select.select(list(connections.values()), [], [], _RECONNECT)
                ready = list(readable)
            events = []
            for connection in ready:
                try:
                    replies = connection.read(0)
                except rules.Failure:
                    connection.close()
                    connections = {a: c for a, c in connections.items() if c is not connection}
                    continue
                events += [sentinel_event(reply, service) for reply in replies]
            transport = ref()
            if transport is None:
                return
            for event in events:
                if event is not None:
                    logger.info("sentinel: %s for %s", type(event).__name__, service)
                    transport.topology.on_event(event)
            del transport
    finally:
        for connection in connections.values():
            connection.close()


# -------------------------------------------------------------------------------- hub


class SyncSubscription:
    """The notifications of some keys, as delivered by the hub."""

    def __init__(self, hub: _SyncHub, channels: tuple[bytes, ...]) -> None:
        self.hub = hub
        self.channels = channels
        self.items: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.closed = False

    def get(self, timeout: float | None) -> Message | Any | None:
        """The next item (a Message or Recheck), None after `timeout` seconds.

        Raises
        ------
        ConnectionError
            If the hub gave up reconnecting.
        """
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Lost):
            raise item.error
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.remove(self)


class _SyncHub:
    """One pub/sub connection, read by one thread, for every waiter of a transport."""

    def __init__(self, transport: SyncTransport) -> None:
        self.transport = transport
        self.state: HubState[SyncSubscription] = HubState()
        self.lock = threading.Lock()
        self.outgoing: list[bytes] = []
        self.thread: threading.Thread | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.woken = False
        self.closed = False
        # Not at exit: the thread may still be selecting on them (the process closes them)
        weakref.finalize(self, self.wake_r.close).atexit = False
        weakref.finalize(self, self.wake_w.close).atexit = False

    def wake(self) -> None:
        self.woken = True  # before the byte: the thread drains it (see _run)
        try:  # not contextlib.suppress: three calls more on a woken wait's way back
            self.wake_w.send(b"x")
        except OSError:  # closed: nobody to wake
            return

    def subscribe(self, keys: Sequence[bytes]) -> SyncSubscription:
        channels = channels_of(keys)
        subscription = SyncSubscription(self, channels)
        with self.lock:
            if self.closed:
                raise self.transport.closed_error()
            new = self.state.add(subscription, channels)
            ready = subscription not in self.state.waiting
            if new:
                self.outgoing.append(pack([(b"SUBSCRIBE", *new)]))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="telstate pub/sub hub", daemon=True
                )
                self.thread.start()
        self.wake()
        if ready:
            return subscription
        deadline = _deadline.current()
        timeout = SUBSCRIBE_TIMEOUT
        if deadline is not None and deadline - time.monotonic() < timeout:
            timeout = max(deadline - time.monotonic(), 0.0)
        try:
            item: Item | None = subscription.items.get(timeout=timeout)
        except queue.Empty:
            item = None
        try:
            subscribed(item, self.transport.describe(), timed_out=timeout < SUBSCRIBE_TIMEOUT)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def remove(self, subscription: SyncSubscription) -> None:
        # The UNSUBSCRIBE waits for the thread's next turn (a wake-up or, at the latest,
        # _POLL seconds): a woken wait leaves without a system call, and the messages
        # meanwhile are dropped (nobody listens).  A subscription made meanwhile goes out
        # after it, with a wake-up.
        with self.lock:
            gone = self.state.remove(subscription, subscription.channels)
            if gone:
                self.outgoing.append(pack([(b"UNSUBSCRIBE", *gone)]))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            items = self.state.fail_all(ConnectionError("the backend was closed"))
            thread = self.thread
        _deliver(items)
        self.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self.wake_r.close()
        self.wake_w.close()

    def _run(self) -> None:
        transport = self.transport
        connection: Connection | None = None
        reconnection = Reconnection(transport.topology)
        try:
            while True:
                with self.lock:
                    if self.closed or not self.state:
                        self.thread = None
                        self.outgoing.clear()
                        return
                if connection is None or (
                    connection.epoch != transport.topology.epoch
                    and transport.topology.primary != connection.node
                ):
                    if connection is not None:
                        connection.close()
                        connection = None
                    with self.lock:
                        self.state.lost()
                        self.outgoing.clear()
                    try:
                        connection = self._connect()
                    except (rules.Failure, ConnectionError) as exc:
                        outcome = reconnection.failed(exc, time.monotonic())
                        if isinstance(outcome, float):
                            self._sleep(outcome)
                        else:
                            logger.warning("pub/sub hub gave up: %s", outcome)
                            with self.lock:
                                items = self.state.fail_all(outcome)
                            _deliver(items)
                        continue
                    reconnection.succeeded()
                    with self.lock:
                        channels = list(self.state.listeners)
                        if channels:
                            self.outgoing = [pack([("SUBSCRIBE", *channels)])]
                if self.outgoing:  # whoever adds to it wakes the thread afterwards
                    with self.lock:
                        payload = b"".join(self.outgoing)
                        self.outgoing.clear()
                    try:
                        connection.send(payload)
                    except rules.Failure as exc:
                        self._lost(connection, exc)
                        connection = None
                        continue
                try:
                    replies = connection.read(_POLL, self.wake_r)
                except rules.Failure as exc:
                    self._lost(connection, exc)
                    connection = None
                    continue
                if self.woken or not replies:  # woken (or timed out): drain the wake-ups
                    self.woken = False
                    self._drain_wake()
                if replies:
                    with self.lock:
                        items = [item for reply in replies for item in self.state.on_reply(reply)]
                    for subscription, item in items:
                        subscription.items.put(item)
        finally:
            if connection is not None:
                connection.close()

    def _lost(self, connection: Connection, exc: rules.Failure) -> None:
        logger.warning("pub/sub connection to %s lost: %s", self.transport.describe(), exc)
        connection.close()

    def _connect(self) -> Connection:
        transport = self.transport
        topology = transport.topology
        if topology.cluster is not None:  # any node hears every PUBLISH: try each
            failure: rules.Failure | None = None
            for address in topology.cluster.nodes():
                try:
                    return transport.connect(Node(address))
                except rules.Failure as exc:
                    failure = exc
            assert failure is not None
            raise failure
        node = topology.primary
        if node is None:
            node = transport.drive(discover(topology))
        return transport.connect(node)

    def _sleep(self, seconds: float) -> None:
        select.select([self.wake_r], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:  # nothing (more) to read
            pass


def _deliver(items: list[tuple[SyncSubscription, Item]]) -> None:
    for subscription, item in items:
        subscription.items.put(item)
