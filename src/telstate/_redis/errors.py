"""The errors the Redis transport raises: telstate's, and redis-py's too.

katsdptelstate let redis-py's own exceptions through, so code written for it may
catch :class:`redis.ConnectionError`; ours are both.
"""

from __future__ import annotations

import redis

from .._errors import ConnectionError, UnconfirmedWriteError

__all__ = ["RedisConnectionError", "RedisUnconfirmedWriteError"]


class RedisConnectionError(ConnectionError, redis.ConnectionError):
    """A Redis deployment could not be reached, or refused us.

    A :class:`telstate.ConnectionError` that is also redis-py's
    :class:`redis.ConnectionError`; ``except telstate.ConnectionError`` catches it.
    """

    def __init__(self, message: str) -> None:
        redis.ConnectionError.__init__(self, message)  # sets redis-py's own attributes

    def __repr__(self) -> str:
        return BaseException.__repr__(self)  # the message, not just redis-py's error kind


class RedisUnconfirmedWriteError(UnconfirmedWriteError, RedisConnectionError):
    """Writes that not enough replicas acknowledged in time (see ``min_replicas``)."""
