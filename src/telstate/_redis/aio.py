"""The asyncio driver of the Redis transport: protocols, hiredis and a few tasks.

It runs the plans of :mod:`.session` in the event loop, the same plans the
blocking driver (:mod:`.sync`) runs:

* **connections** are asyncio protocols whose replies hiredis parses as they
  arrive (sensor reads sent on an idle connection are received raw by :mod:`.raw`,
  as in the blocking driver); requests are *pipelined*: many tasks share a
  connection, each request's replies are matched to it in order, and a cancelled
  request's replies are read and dropped so the stream stays aligned.  A few
  connections per server (opened when all are busy) keep one big reply from holding
  up every call.  Clients that telstate cannot reproduce (fakeredis) are driven
  through their own connections;
* **pauses** end early when the primary changes;
* **the pub/sub hub**: one task and one connection for every waiter;
* **the sentinel watch**: a task listening to ``+switch-master``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

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
from .raw import Received, Receiver, receive_reads
from .resp import ProtocolError, Reader, pack
from .session import (
    MISS,
    Command,
    Exchange,
    Node,
    Parallel,
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

__all__ = ["AsyncSubscription", "AsyncTransport"]

logger = logging.getLogger("telstate.redis")
_T = TypeVar("_T")

#: Connections per server; more are opened only while all of them are busy.
MAX_CONNECTIONS = 8
#: Bytes a connection receives at a time (outside bulk reads), as asyncio's own protocols.
_READ_SIZE = 1 << 18
_POLL = 1.0
SUBSCRIBE_TIMEOUT = 10.0


# ------------------------------------------------------------------------ connections


@dataclass(slots=True)
class _Request:
    count: int
    future: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)


class StreamConnection(asyncio.BufferedProtocol):
    """A connection whose requests are pipelined and matched to replies in order.

    With `on_push`, every reply goes to that callback instead (pub/sub), and a lost
    connection calls it with the failure.  Bytes arrive in a buffer of the protocol's
    own; while a bulk request that was sent on an idle connection is receiving, they
    arrive where its receiver (:func:`.raw.receive_reads`) says instead.

    The server is given up on when requests wait and nothing has arrived for `timeout`
    seconds since the later of the last bytes and the last request sent.  One timer per
    connection watches that while requests wait (:meth:`_watch`), rather than one per
    request: a request then costs no timer of its own.
    """

    multiplexed = True

    def __init__(
        self,
        node: Node,
        epoch: int,
        timeout: float,
        on_push: Callable[[Any], None] | None = None,
    ) -> None:
        self.node = node
        self.epoch = epoch
        self.timeout = timeout
        self.on_push = on_push
        self.reader = Reader()
        self.buffer = bytearray(_READ_SIZE)
        self.pending: deque[_Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: rules.Failure | None = None
        self.garbled: Exception | None = None  # what the reader said of bytes that are not RESP
        self.last_data = 0.0
        # A memoryview, not the bytearray: asyncio's TLS reader (Python 3.11) slices
        # what get_buffer returns to fill the rest, and a bytearray's slice is a copy.
        self.view = memoryview(self.buffer)
        self.receiver: Receiver | None = None  # a bulk request's, while it receives
        self.receiving = self.view  # where its next bytes go
        self.watchdog: asyncio.TimerHandle | None = None  # armed while requests wait

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view if self.receiver is None else self.receiving

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = asyncio.get_running_loop().time()
        if self.receiver is None:
            self.reader.feed(self.buffer, 0, nbytes)
        else:
            try:
                self.receiving = self.receiver.send(nbytes)
                return
            except StopIteration as done:
                received: Received = done.value
            self.receiver = None
            self._add(received.replies)
            self.reader.feed(received.rest)
        while (reply := self._gets()) is not False:
            if self.on_push is not None:
                self.on_push(reply)
            elif not self._add([reply]):
                return

    def _add(self, replies: list[Any]) -> bool:
        """Give `replies` to the oldest request (False: none was waiting for them)."""
        if not self.pending:  # never asked for: the stream cannot be trusted
            self.abort()
            return False
        request = self.pending[0]
        request.replies += replies
        if len(request.replies) == request.count:
            self.pending.popleft()
            if not request.future.done():
                request.future.set_result(request.replies)
        return True

    def _gets(self) -> Any:
        """The next parsed reply, or False; bytes that are not RESP end the connection."""
        try:
            return self.reader.gets()
        except ProtocolError as exc:
            self.garbled = exc
            self.abort()
            return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self.garbled is not None:
            exc = Exception(f"it does not speak the Redis protocol: {self.garbled}")
        if self.lost is None:  # else the watchdog gave up on the server, and said why
            detail = f": {exc}" if exc else ""
            self.lost = rules.Dropped(f"connection to {self.node} lost{detail}")
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.receiver = None
        while self.pending:
            request = self.pending.popleft()
            if not request.future.done():
                request.future.set_exception(self.lost)
                # Its caller may be gone (a coroutine closed before it awaited the reply):
                # the failure is theirs to see, not the loop's to log as never retrieved.
                request.future.exception()
        if self.on_push is not None:
            self.on_push(self.lost)

    # use
    @property
    def load(self) -> int:
        return len(self.pending)

    @property
    def usable(self) -> bool:
        return self.lost is None

    def send(self, payload: bytes) -> None:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.transport.write(payload)

    async def exchange(self, payload: bytes, count: int, bulk: bool = False) -> list[Any]:
        """Send `payload` and wait for its `count` replies.

        With `bulk` (sensor reads: see ``resp.bulk_read_prefix``) on an idle
        connection, the members arrays of successful reads come back raw, as
        ``RawArray``; behind other requests, hiredis parses them.
        """
        if self.lost is not None:
            raise self.lost
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if bulk and not self.pending and self.on_push is None:
            self.receiver = receive_reads(count)
            self.receiving = next(self.receiver)
        self.pending.append(_Request(count, future))
        self.send(payload)
        now = loop.time()
        if now > self.last_data:
            self.last_data = now
        if self.watchdog is None:
            self.watchdog = loop.call_at(now + self.timeout, self._watch)
        # A cancelled caller cancels only its future: its replies are still read, and
        # dropped (_add), so the stream stays aligned.
        return await future

    def _watch(self) -> None:
        """The watchdog: give up on a server silent for `timeout` while requests wait,
        failing them all; else look again when that would next be true."""
        self.watchdog = None
        if not self.pending or self.lost is not None:
            return  # the next request arms it again
        loop = asyncio.get_running_loop()
        due = self.last_data + self.timeout
        if loop.time() < due:  # bytes arrived, or a request was sent, since it was armed
            self.watchdog = loop.call_at(due, self._watch)
            return
        self.lost = rules.Dropped(f"{self.node} did not answer in {self.timeout} s")
        self.abort()  # connection_lost fails the waiting requests with self.lost

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ClientConnection:
    """A connection of a redis-py asyncio client (fakeredis, say): one request at a time."""

    multiplexed = False

    def __init__(self, connection: Any, node: Node, epoch: int) -> None:
        self.connection = connection
        self.node = node
        self.epoch = epoch
        self.lost: rules.Failure | None = None
        self.busy = 0
        self.lock = asyncio.Lock()
        self.pump: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, client: Any, node: Node, epoch: int) -> ClientConnection:
        connection = client.connection_pool.make_connection()
        try:
            await connection.connect()
        except redis.AuthenticationError as exc:
            raise rules.Refused(f"refused the credentials: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise rules.Unreachable(str(exc)) from exc
        except redis.RedisError as exc:  # an error reply to its handshake, say
            raise rules.Rejected(f"refused the connection: {exc}") from exc
        return cls(connection, node, epoch)

    @property
    def load(self) -> int:
        return self.busy

    @property
    def usable(self) -> bool:
        return self.lost is None

    async def exchange(self, payload: bytes, count: int, bulk: bool = False) -> list[Any]:
        self.busy += 1
        try:
            async with self.lock:
                await self._send(payload)
                return [await self._read_one() for _ in range(count)]
        except BaseException:
            if self.lost is None:  # cancelled mid-reply: the stream is unusable
                self.lost = rules.Dropped("interrupted")
                await self._disconnect()
            raise
        finally:
            self.busy -= 1

    async def _send(self, payload: bytes) -> None:
        try:
            await self.connection.send_packed_command([payload], check_health=False)
        except (redis.RedisError, OSError) as exc:
            self.lost = rules.Dropped(str(exc))
            raise self.lost from exc

    def send(self, payload: bytes) -> None:
        _background(self._send(payload))

    async def _read_one(self) -> Any:
        try:
            return await self.connection.read_response(disable_decoding=True)
        except redis.ResponseError as exc:
            return exc
        except (redis.RedisError, OSError) as exc:  # InvalidResponse too: a stream to drop
            self.lost = rules.Dropped(str(exc))
            raise self.lost from exc

    def push_to(self, on_push: Callable[[Any], None]) -> None:
        """Pub/sub: hand every reply to `on_push` (then the failure that ends the connection)."""

        async def pump() -> None:
            try:
                while True:
                    on_push(await self._read_one())
            except rules.Failure as failure:
                on_push(failure)

        self.pump = asyncio.ensure_future(pump())

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.disconnect()

    def abort(self) -> None:
        self.lost = self.lost or rules.Dropped("closed")
        if self.pump is not None:
            self.pump.cancel()
        _background(self._disconnect())

    def close(self) -> None:
        self.abort()


Connection = StreamConnection | ClientConnection

# Tasks started and not awaited, kept here until they end (the loop holds them weakly).
_TASKS: set[asyncio.Task[Any]] = set()


def _background(coroutine: Any) -> None:
    task = asyncio.ensure_future(coroutine)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def open_stream(
    config: ServerConfig,
    node: Node,
    tls: ssl.SSLContext | None,
    epoch: int,
    on_push: Callable[[Any], None] | None = None,
) -> StreamConnection:
    """A connected protocol to `node` (TLS handshake done), or a Failure."""
    loop = asyncio.get_running_loop()

    def factory() -> StreamConnection:
        return StreamConnection(node, epoch, config.socket_timeout, on_push)

    address = node.address
    try:
        async with asyncio.timeout(config.connect_timeout):
            if isinstance(address, str):
                _, protocol = await loop.create_unix_connection(factory, address)
            else:
                _, protocol = await loop.create_connection(
                    factory,
                    address[0],
                    address[1],
                    ssl=tls,
                    server_hostname=address[0] if tls is not None else None,
                )
    except ssl.SSLError as exc:
        raise rules.TlsRefused(str(exc)) from exc
    except TimeoutError:
        raise rules.Unreachable(f"no connection within {config.connect_timeout} s") from None
    except OSError as exc:
        raise rules.Unreachable(str(exc) or type(exc).__name__) from exc
    return protocol


# -------------------------------------------------------------------------- transport


class AsyncTransport(TransportState):
    """Runs the transport's plans in the event loop, for any number of tasks.

    Parameters are those of :class:`.base.TransportState`.
    """

    def __init__(self, config: ServerConfig, scripts: Scripts, client: Any = None) -> None:
        super().__init__(config, scripts, client)
        self._connections: dict[Node, list[Connection]] = {}
        self._opening: dict[Node, int] = {}
        self._changed: asyncio.Event | None = None
        self._closed = False
        self._hub: _AsyncHub | None = None
        self._watch: asyncio.Task[None] | None = None
        self.topology.listen(self._on_switch)

    @property
    def closed(self) -> bool:
        return self._closed

    def _start(self) -> None:
        if self.config.kind == "sentinel" and self._watch is None and not self._closed:
            self._watch = asyncio.create_task(
                self._watch_sentinels(), name="telstate sentinel watch"
            )

    # -- running plans

    async def run(self, commands: Sequence[Command], *, writes: bool = False) -> list[Any]:
        """Replies to `commands` (the plan of :meth:`.base.TransportState.call`)."""
        self._start()
        quick = first_try(self.topology, self.scripts, commands, writes)
        if quick is not None and not self._closed:
            node, payload = quick
            try:
                connection = await self._connection(node)
                replies = await connection.exchange(payload, len(commands))
            except rules.Failure as failure:
                first_try_failed(self.topology, failure)  # else the plan below retries
            else:
                if first_try_answered(replies):
                    return replies
        return await self.drive(self.call(commands, writes))

    async def quick(self, payload: bytes, writes: bool = False) -> Any:
        """The reply to `payload`, one command for the primary, if its first try answers
        it cleanly; else :data:`.session.MISS`, and the caller runs the operation's plan
        (the twin of the blocking driver's ``quick``)."""
        node = first_try_node(self.topology, writes)
        if node is None or self._closed:
            return MISS
        self._start()
        try:
            connection = await self._connection(node)
            (reply,) = await connection.exchange(payload, 1)
        except rules.Failure as failure:
            first_try_failed(self.topology, failure)
            return MISS
        return reply if quick_answered(reply) else MISS

    async def drive(self, plan: Plan[_T]) -> _T:
        """Run a plan to its end."""
        self._start()
        reply: Any = None
        failure: rules.Failure | None = None
        while True:
            try:
                effect = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = failure = None
            if isinstance(effect, Exchange):
                try:
                    reply = await self._exchange(effect)
                except rules.Failure as exc:
                    failure = exc
            elif isinstance(effect, Parallel):
                reply = await asyncio.gather(
                    *(self._exchange_or_failure(exchange) for exchange in effect.exchanges)
                )
            else:
                await self._pause(effect.seconds)

    async def _exchange(self, effect: Exchange) -> list[Any]:
        if self._closed:
            raise self.closed_error()
        connection = await self._connection(effect.node)
        return await connection.exchange(effect.payload, effect.count, effect.bulk)

    async def _exchange_or_failure(self, effect: Exchange) -> list[Any] | rules.Failure:
        try:
            return await self._exchange(effect)
        except rules.Failure as exc:
            return exc

    async def _pause(self, seconds: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await changed.wait()

    # -- connections

    async def connect(self, node: Node, on_push: Callable[[Any], None] | None = None) -> Connection:
        """A new connection to `node`, introduced (credentials, database, role)."""
        epoch = self.topology.epoch
        if self.foreign is not None:
            client_connection = await ClientConnection.open(self.foreign, node, epoch)
            if on_push is not None:
                client_connection.push_to(on_push)
            return client_connection
        connection = await open_stream(
            self.config, node, self.sentinel_tls if node.sentinel else self.tls, epoch
        )
        commands = handshake_commands(self.config, node)
        try:
            if commands:
                replies = await connection.exchange(pack(commands), len(commands))
                check_handshake(self.config, node, commands, replies)
        except BaseException:
            connection.abort()  # not a graceful close: a TLS one may outlive the loop
            raise
        connection.on_push = on_push
        return connection

    async def _connection(self, node: Node) -> Connection:
        """A connection to `node` for one exchange: the least busy, or a new one."""
        pool = self._connections.get(node)
        if pool:  # the usual case, first: the first connection is idle and current
            first = pool[0]
            if (
                first.load == 0
                and first.usable
                and (node.sentinel or first.epoch == self.topology.epoch)
            ):
                return first
        while True:
            current = self.topology.epoch
            pool = self._connections.setdefault(node, [])
            pool[:] = [c for c in pool if c.usable and (node.sentinel or c.epoch == current)]
            best = min(pool, key=lambda c: c.load, default=None)
            opening = self._opening.get(node, 0)
            if best is not None and (
                best.load == 0 or (best.multiplexed and len(pool) + opening >= MAX_CONNECTIONS)
            ):
                return best
            if best is None and opening:
                await asyncio.sleep(0.001)  # another task is opening one: share it
                continue
            if len(pool) + opening >= MAX_CONNECTIONS:
                await asyncio.sleep(0.001)  # every (non-multiplexed) connection is busy
                continue
            self._opening[node] = opening + 1
            try:
                connection = await self.connect(node)
            finally:
                self._opening[node] -= 1
            if self._closed:
                connection.close()
                raise self.closed_error()
            self._connections.setdefault(node, []).append(connection)
            return connection

    def _on_switch(self) -> None:
        primary = self.topology.primary
        for node, pool in list(self._connections.items()):
            if node.sentinel or node == primary:
                continue
            for connection in pool:
                if primary is None and connection.load and not self.topology.holding:
                    continue  # only forgotten: let calls in flight finish
                connection.abort()  # in-flight calls fail now and go to the new primary
            del self._connections[node]
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()
        if self._hub is not None:
            self._hub.wake()

    # -- pub/sub

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        """Listen to the notifications of `keys` (returns once the server confirmed)."""
        self._start()
        if self._hub is None:
            self._hub = _AsyncHub(self)
        return await self._hub.subscribe(keys)

    # -- the sentinel watch

    async def _watch_sentinels(self) -> None:
        """Follow every sentinel's announcements (only the leader of a failover speaks)."""
        async with asyncio.TaskGroup() as group:
            for address in self.topology.sentinels:
                group.create_task(self._watch_sentinel(address))

    async def _watch_sentinel(self, address: Address) -> None:
        topology = self.topology
        service = self.config.service
        first = True
        while not self._closed:
            events: asyncio.Queue[Any] = asyncio.Queue()
            try:
                connection = await self.connect(Node(address, sentinel=True))
            except (rules.Failure, ConnectionError):
                await asyncio.sleep(_POLL)
                continue
            try:
                await connection.exchange(pack([WATCH_COMMAND]), 1)
                assert isinstance(connection, StreamConnection)
                connection.on_push = events.put_nowait
                if not first:  # announcements may have been missed meanwhile
                    with contextlib.suppress(rules.Failure, ConnectionError):
                        await self.drive(discover(topology))
                first = False
                while not self._closed:
                    reply = await events.get()
                    if isinstance(reply, rules.Failure):
                        raise reply
                    event = sentinel_event(reply, service)
                    if event is not None:
                        logger.info("sentinel: %s for %s", type(event).__name__, service)
                        topology.on_event(event)
            except rules.Failure:
                await asyncio.sleep(_POLL)  # this sentinel went away: try it again later
            finally:
                connection.close()

    # -- closing

    async def aclose(self) -> None:
        """Close every connection and stop the background tasks."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._hub is not None:
            await self._hub.close()
        for pool in self._connections.values():
            for connection in pool:
                connection.abort()  # nothing is in flight, and TLS needs no goodbye
        self._connections.clear()
        if self._changed is not None:
            self._changed.set()
        await asyncio.sleep(0)  # let the transports close their sockets before the loop ends


# -------------------------------------------------------------------------------- hub


class AsyncSubscription:
    """The notifications of some keys, as delivered by the hub."""

    def __init__(self, hub: _AsyncHub, channels: tuple[bytes, ...]) -> None:
        self.hub = hub
        self.channels = channels
        self.items: asyncio.Queue[Item] = asyncio.Queue()
        self.closed = False

    async def get(self) -> Message | Any:
        """The next item (a Message or Recheck).

        Raises
        ------
        ConnectionError
            If the hub gave up reconnecting.
        """
        item = await self.items.get()
        if isinstance(item, Lost):
            raise item.error
        return item

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.remove(self)


class _AsyncHub:
    """One pub/sub connection and one task, for every waiter of a transport."""

    def __init__(self, transport: AsyncTransport) -> None:
        self.transport = transport
        self.state: HubState[AsyncSubscription] = HubState()
        self.connection: Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()
        self.closed = False

    def wake(self) -> None:
        self.wakeup.set()

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        if self.closed:
            raise self.transport.closed_error()
        channels = channels_of(keys)
        subscription = AsyncSubscription(self, channels)
        new = self.state.add(subscription, channels)
        ready = subscription not in self.state.waiting
        if new and self.connection is not None and self.connection.usable:
            with contextlib.suppress(rules.Failure):
                self.connection.send(pack([("SUBSCRIBE", *new)]))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="telstate pub/sub hub")
        if ready:
            return subscription
        item: Item | None = None
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                item = await subscription.items.get()
        except TimeoutError:
            pass
        except BaseException:
            await subscription.close()  # cancelled while waiting: leave nothing subscribed
            raise
        try:
            subscribed(item, self.transport.describe(), timed_out=False)
        except BaseException:
            await subscription.close()
            raise
        return subscription

    def remove(self, subscription: AsyncSubscription) -> None:
        gone = self.state.remove(subscription, subscription.channels)
        if gone and self.connection is not None and self.connection.usable:
            with contextlib.suppress(rules.Failure, RuntimeError):
                self.connection.send(pack([("UNSUBSCRIBE", *gone)]))

    def _on_push(self, reply: Any) -> None:
        if isinstance(reply, rules.Failure):
            self.wakeup.set()
            return
        for subscription, item in self.state.on_reply(reply):
            subscription.items.put_nowait(item)

    async def _run(self) -> None:
        transport = self.transport
        topology = transport.topology
        reconnection = Reconnection(topology)
        try:
            while self.state and not self.closed:
                connection = self.connection
                stale = connection is not None and (
                    not connection.usable
                    or (connection.epoch != topology.epoch and topology.primary != connection.node)
                )
                if connection is None or stale:
                    if connection is not None:
                        if connection.lost is None:
                            logger.info("pub/sub hub moves to the new primary")
                        else:
                            logger.warning(
                                "pub/sub connection to %s lost: %s",
                                transport.describe(),
                                connection.lost,
                            )
                        connection.close()
                        self.connection = None
                    self.state.lost()
                    try:
                        self.connection = await self._connect()
                    except (rules.Failure, ConnectionError) as exc:
                        outcome = reconnection.failed(exc, asyncio.get_running_loop().time())
                        if isinstance(outcome, float):
                            await self._sleep(outcome)
                        else:
                            logger.warning("pub/sub hub gave up: %s", outcome)
                            for subscription, item in self.state.fail_all(outcome):
                                subscription.items.put_nowait(item)
                        continue
                    reconnection.succeeded()
                    channels = list(self.state.listeners)
                    if channels:
                        with contextlib.suppress(rules.Failure):
                            self.connection.send(pack([("SUBSCRIBE", *channels)]))
                await self._sleep(_POLL)
        finally:
            if self.connection is not None and not self.state:
                self.connection.close()
                self.connection = None

    async def _connect(self) -> Connection:
        transport = self.transport
        topology = transport.topology
        if topology.cluster is not None:  # any node hears every PUBLISH: try each
            failure: rules.Failure | None = None
            for address in topology.cluster.nodes():
                try:
                    return await transport.connect(Node(address), on_push=self._on_push)
                except rules.Failure as exc:
                    failure = exc
            assert failure is not None
            raise failure
        node = topology.primary
        if node is None:
            node = await transport.drive(discover(topology))
        return await transport.connect(node, on_push=self._on_push)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wakeup.wait()
        self.wakeup.clear()

    async def close(self) -> None:
        self.closed = True
        for subscription, item in self.state.fail_all(ConnectionError("the backend was closed")):
            subscription.items.put_nowait(item)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.connection is not None:
            self.connection.abort()
            self.connection = None
