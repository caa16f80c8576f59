"""What the blocking and asyncio drivers share: the state of a transport, and the
meaning of what the pub/sub hub hands a new subscription.

The drivers differ only in how they wait (threads and sockets, or tasks and
protocols); everything they decide is decided here or in the pure modules.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from .. import _deadline
from .._errors import TimeoutError
from . import rules
from .config import ServerConfig
from .errors import RedisConnectionError
from .hub import Item, Lost, Ready, Refusal
from .session import Command, Plan, Scripts, Topology, call

__all__ = ["Reconnection", "TransportState", "subscribed"]


class TransportState:
    """The deployment, the scripts and the TLS contexts of a transport.

    Parameters
    ----------
    config
        The deployment.
    scripts
        Lua scripts by name (sent as EVALSHA).
    client
        A redis-py-compatible client whose own connections carry the bytes, when
        `config` cannot describe how to reach its server (fakeredis, say).

    Raises
    ------
    telstate.ConnectionError
        If the TLS settings cannot be used (a certificate file missing, say).
    """

    def __init__(self, config: ServerConfig, scripts: Scripts, client: Any = None) -> None:
        self.topology = Topology(config)
        self.config = config
        self.scripts = scripts
        #: The redis-py-compatible client carrying the bytes, if not telstate's own sockets.
        self.foreign = client
        self.tls: ssl.SSLContext | None = None
        self.sentinel_tls: ssl.SSLContext | None = None
        try:
            if config.tls is not None and client is None:
                self.tls = config.tls.context()
            if config.sentinel_tls is not None:
                self.sentinel_tls = config.sentinel_tls.context()
        except (OSError, ssl.SSLError) as exc:
            raise RedisConnectionError(
                f"TLS settings for redis server at {config.describe()} are unusable: {exc}"
            ) from exc

    def describe(self) -> str:
        return self.topology.describe()

    def call(self, commands: Sequence[Command], writes: bool) -> Plan[list[Any]]:
        """The plan of one batch; the deadline of the operation in progress (a wait's)
        bounds its retries."""
        return call(
            self.topology, self.scripts, commands, writes=writes, deadline=_deadline.current()
        )

    def closed_error(self) -> RedisConnectionError:
        return RedisConnectionError(f"the backend for {self.describe()} is closed")


def subscribed(item: Item | None, where: str, timed_out: bool) -> None:
    """Return if a new subscription's first item says it is ready, else raise why not.

    `item` is None if none came in time; `timed_out` tells whether that was the
    caller's own deadline (TimeoutError) rather than the server's silence.
    """
    if isinstance(item, Ready):
        return
    if item is None:
        if timed_out:
            raise TimeoutError(f"gave up at the deadline: no SUBSCRIBE confirmed by {where}")
        raise RedisConnectionError(f"redis server at {where} did not confirm SUBSCRIBE")
    if isinstance(item, Refusal):
        raise RedisConnectionError(f"redis server at {where} refused access: {item.error}")
    assert isinstance(item, Lost)
    raise item.error


class Reconnection:
    """How long the pub/sub hub keeps trying to reconnect: the retry window of calls.

    Parameters
    ----------
    topology
        The deployment (its window, and its name for messages).
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._clock: rules.RetryClock | None = None

    def failed(self, problem: BaseException, now: float) -> float | RedisConnectionError:
        """After a failed attempt: seconds to pause, or the error that ends every wait."""
        if self._clock is None:
            self._clock = rules.RetryClock(self.topology.window(), None)
        pause = self._clock.next_pause(now)
        if pause is not None:
            return pause
        self._clock = None
        if isinstance(problem, RedisConnectionError):
            return problem
        return RedisConnectionError(
            f"cannot reach redis server at {self.topology.describe()}: {problem}"
        )

    def succeeded(self) -> None:
        self._clock = None
