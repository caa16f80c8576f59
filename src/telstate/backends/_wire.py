"""Sending commands to Redis, fast: RESP written by hand, replies parsed by hiredis.

redis-py spends 30-40 µs of Python on every command (connection checkout,
retry wrappers, response callbacks), three times a round trip on loopback.
telstate only needs "send these commands, give me the raw replies", so for
ordinary redis-py clients it uses redis-py's own :class:`redis.Connection`
objects to connect (TCP, unix socket, TLS, AUTH, SELECT: all redis-py's), then
talks over the connected socket itself::

    *<n>\\r\\n  $<len>\\r\\n<arg>\\r\\n ...      one array of bulk strings per command
    replies are read back in order by a hiredis.Reader

Any other client (fakeredis, a subclass with an exotic connection) goes
through a redis-py pipeline instead: slower, same results.

Scripts are sent as EVALSHA; a NOSCRIPT reply (a restarted or flushed server)
makes the runner load every script and send the whole batch again, which is
safe because every telstate write is idempotent.

Retry policy: a batch that meets a dropped connection, a refused connection or
a timeout is sent again on a fresh connection, with backoff (50 ms doubling
to 1 s), until ``retry_window`` seconds have passed since the first failure;
then the error reaches the caller (as :class:`telstate.ConnectionError`, via
the backend).  Again this is safe because writes are idempotent: a write whose
reply was lost and that is sent again changes nothing the second time.  Wrong
credentials are never retried.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RETRY_WINDOW", "Call", "CommandRunner", "make_runner"]

logger = logging.getLogger(__name__)

#: A command: its words, or ("script", name, keys, args) for a Lua script.
Call = tuple[Any, ...]

_READ_SIZE = 1 << 20


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float):
        return repr(value).encode()
    return bytes(value)


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP encoding of `commands` (words already expanded)."""
    parts: list[bytes] = []
    for words in commands:
        parts.append(b"*%d\r\n" % len(words))
        for word in words:
            data = _arg(word)
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


#: Default seconds to keep retrying a batch after a connection failure.
RETRY_WINDOW = 5.0
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


class CommandRunner:
    """Runs batches of commands and scripts, returning replies (errors in place)."""

    def __init__(self, scripts: Mapping[str, str], retry_window: float = RETRY_WINDOW) -> None:
        self.retry_window = retry_window
        self.scripts = dict(scripts)
        self.shas = {
            name: hashlib.sha1(text.encode()).hexdigest() for name, text in scripts.items()
        }

    def _expand(self, call: Call) -> tuple[Any, ...]:
        if call[0] == "script":
            _, name, keys, args = call
            return ("EVALSHA", self.shas[name], len(keys), *keys, *args)
        return call

    def run(self, calls: Sequence[Call], retry: bool = True) -> list[Any]:
        """Replies to `calls`, in order; error replies are ResponseError objects.

        With `retry`, connection failures are retried (see the module notes).
        """
        commands = [self._expand(call) for call in calls]
        replies = self._retrying(commands, retry)
        if any(_is_noscript(reply) for reply in replies):
            self._retrying([("SCRIPT", "LOAD", text) for text in self.scripts.values()], retry)
            replies = self._retrying(commands, retry)
        return replies

    def _retrying(self, commands: list[tuple[Any, ...]], retry: bool) -> list[Any]:
        deadline: float | None = None
        delay = _FIRST_DELAY
        while True:
            try:
                return self._send(commands)
            except redis.AuthenticationError:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_window
                if not retry or now + delay > deadline:
                    raise
                logger.warning("lost the connection to Redis; trying again in %.2f s", delay)
                time.sleep(delay)
                delay = min(2 * delay, _MAX_DELAY)

    def one(self, *words: Any, retry: bool = True) -> Any:
        """Reply to a single command or script; an error reply is raised."""
        (reply,) = self.run([words], retry)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Close the runner's own connections."""


def _is_noscript(reply: Any) -> bool:
    # redis-py turns "NOSCRIPT ..." into NoScriptError and drops the prefix; hiredis keeps it
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT")
    )


class _Slot:
    """A connection made by redis-py, used through its socket with a hiredis reader."""

    __slots__ = ("buffer", "connection", "reader", "sock")

    def __init__(self, connection: Any) -> None:
        connection.connect()
        sock = getattr(connection, "_sock", None)
        if sock is None:  # pragma: no cover - redis-py changed its internals
            raise redis.ConnectionError("cannot reach the socket of a redis-py connection")
        self.connection = connection
        self.sock: socket.socket = sock
        self.reader = hiredis.Reader(replyError=redis.ResponseError)
        self.buffer = bytearray(_READ_SIZE)


def _close_all(slots: list[_Slot]) -> None:
    while slots:
        slots.pop().connection.disconnect()


class _SocketRunner(CommandRunner):
    """Raw RESP over sockets that redis-py connected (TCP, unix, TLS, AUTH, SELECT).

    A small stack of idle connections serves any number of threads (one batch
    holds one connection).  They are closed by :meth:`close`, or when the runner
    is garbage-collected.
    """

    def __init__(
        self, client: redis.Redis, scripts: Mapping[str, str], retry_window: float
    ) -> None:
        super().__init__(scripts, retry_window)
        self._pool = client.connection_pool
        self._idle: list[_Slot] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._idle)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        payload = pack(commands)
        with self._lock:
            slot = self._idle.pop() if self._idle else None
        try:
            if slot is None:
                # Our own connection, made like the pool's but not counted by it, and
                # never retried by redis-py (whose default retries even wrong credentials,
                # for seconds): the runner retries batches itself, never credentials.
                pool = self._pool
                kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
                slot = _Slot(pool.connection_class(**kwargs))
            slot.sock.sendall(payload)
            replies = _read(slot.sock, slot.reader, slot.buffer, len(commands))
        except redis.AuthenticationError:
            raise
        except (OSError, redis.ConnectionError) as exc:
            if slot is not None:
                slot.connection.disconnect()
            raise redis.ConnectionError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            if slot is not None:
                slot.connection.disconnect()  # interrupted mid-reply: the stream is unusable
            raise
        with self._lock:
            self._idle.append(slot)
        return replies

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)


def _read(sock: socket.socket, reader: Any, buffer: bytearray, count: int) -> list[Any]:
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is False:
            size = sock.recv_into(buffer)
            if not size:
                raise redis.ConnectionError("the server closed the connection")
            reader.feed(buffer, 0, size)
            continue
        replies.append(reply)
    return replies


class _PipelineRunner(CommandRunner):
    """Any redis-py-compatible client, through its pipelines."""

    def __init__(self, client: Any, scripts: Mapping[str, str], retry_window: float) -> None:
        super().__init__(scripts, retry_window)
        self._client = client

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        with self._client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            try:
                return list(pipe.execute(raise_on_error=False))
            except redis.exceptions.NoScriptError as exc:  # some clients raise it anyway
                return [exc] * len(commands)


_PLAIN_CONNECTIONS = (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)


def make_runner(
    client: Any, scripts: Mapping[str, str], retry_window: float = RETRY_WINDOW
) -> CommandRunner:
    """The fastest runner that works with `client`."""
    pool = getattr(client, "connection_pool", None)
    if (
        type(client) is redis.Redis
        and type(pool) is redis.ConnectionPool
        and pool.connection_class in _PLAIN_CONNECTIONS
        and pool.connection_kwargs.get("protocol") not in (3, "3")
    ):
        return _SocketRunner(client, scripts, retry_window)
    return _PipelineRunner(client, scripts, retry_window)
