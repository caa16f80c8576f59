"""What a failure means, and how long to keep trying (no I/O).

Every problem met while talking to Redis falls in one of three classes:

=============  ================================================================
retry          send the same commands again after a pause: a dropped or refused
               connection, a timeout, ``LOADING`` (a restarted server reading its
               data), ``BUSY``, ``TRYAGAIN``, ``CLUSTERDOWN`` (a cluster
               without a primary for some slots, for now)
rediscover     the server we talk to is no longer the primary, or cannot take
               writes safely: ask the sentinels again, then retry: ``READONLY``
               (a demoted primary), ``NOREPLICAS`` (``min-replicas-to-write`` not
               met), ``MASTERDOWN`` (a replica cut off from its primary), a new
               connection whose ``ROLE`` is not ``master``, writes that ``WAIT``
               could not confirm on enough replicas; with Sentinel, also any
               connection failure (the primary may have died)
fail           trying again cannot help: refused credentials or permissions,
               untrusted TLS certificates, other error replies
=============  ================================================================

Retrying is safe because every telstate write is idempotent (SETNX, HSETNX, ZADD
of a member): a write applied on the server whose reply was lost changes nothing
when it is sent again.  Pauses grow from 50 ms, doubling, to a cap; the whole
effort is bounded by a window that starts at the first failure (``retry_window``
seconds, plus the sentinels' down-after time with Sentinel, so that a failover
fits in) and, for a wait, by the wait's own deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from .resp import error_code

__all__ = [
    "Action",
    "Dropped",
    "Failure",
    "NoPrimary",
    "NotConfirmed",
    "Refused",
    "Rejected",
    "RetryClock",
    "TlsRefused",
    "Unreachable",
    "WrongRole",
    "classify_reply",
    "is_access_refusal",
]


class Action(Enum):
    """What to do about a failure."""

    RETRY = "retry"
    REDISCOVER = "rediscover"
    FAIL = "fail"


class Failure(Exception):
    """A problem of the transport (raised by drivers, thrown into plans)."""

    action = Action.RETRY


class Unreachable(Failure):
    """A connection could not be made (refused, no route, timed out)."""


class Dropped(Failure):
    """A connection was lost, or a reply did not come in time."""


class Refused(Failure):
    """The server refused us: credentials, permissions or TLS; never retried."""

    action = Action.FAIL


class TlsRefused(Refused):
    """The TLS handshake failed (an untrusted certificate, say); never retried."""


class WrongRole(Failure):
    """A server that should be the primary says it is not."""

    action = Action.REDISCOVER


class NoPrimary(Failure):
    """No sentinel could name a primary for the service."""

    action = Action.REDISCOVER


class Rejected(Failure):
    """The server answered with an error that trying again will not mend."""

    action = Action.FAIL


class NotConfirmed(Failure):
    """``WAIT`` returned fewer replicas than required: the writes are not confirmed."""

    action = Action.REDISCOVER


_RETRY_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN"})
_REDISCOVER_CODES = frozenset({"READONLY", "NOREPLICAS", "MASTERDOWN"})
# How access control refuses: as an error code, or inside a script (Redis 6 and 7.0
# say "The user executing the script can't ...", Redis 7.2 "ACL failure in script").
_ACCESS_CODES = frozenset({"NOAUTH", "NOPERM", "WRONGPASS"})
_ACCESS_PHRASES = ("ACL failure in script", "The user executing the script can't")


def is_access_refusal(error: BaseException) -> bool:
    """Whether an error reply says that the user may not do what was asked."""
    if error_code(error) in _ACCESS_CODES:
        return True
    # at the start, or after the prefix of a script's error (Redis 6 wraps them)
    text = str(error).removeprefix("ERR ")
    return any(text.startswith(phrase) or f": {phrase}" in text for phrase in _ACCESS_PHRASES) or (
        "called without any password configured" in text
    )


def classify_reply(error: BaseException) -> Action | None:
    """What an error reply means for the transport (None: it is the command's own answer)."""
    code = error_code(error)
    if code in _RETRY_CODES:
        return Action.RETRY
    if code in _REDISCOVER_CODES:
        return Action.REDISCOVER
    if is_access_refusal(error):
        return Action.FAIL
    return None


#: First pause after a failure, and the longest (Sentinel: shorter, to follow a failover
#: closely even when its announcement is missed).
FIRST_PAUSE = 0.05
MAX_PAUSE = 1.0
MAX_PAUSE_SENTINEL = 0.25


class RetryClock:
    """Pauses between attempts, within a window that opens at the first failure.

    Parameters
    ----------
    window
        Seconds from the first failure after which no more attempts are made (or a
        function giving them, asked at the first failure).
    deadline
        A monotonic time after which no more attempts are made either (a wait's
        timeout), or None.
    max_pause
        Cap on a single pause.
    """

    def __init__(
        self,
        window: float | Callable[[], float],
        deadline: float | None,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self.window = window
        self.deadline = deadline
        self.max_pause = max_pause
        self._give_up: float | None = None
        self._pause = FIRST_PAUSE
        self.failures = 0

    def next_pause(self, now: float) -> float | None:
        """After a failure at `now`: seconds to pause before the next attempt, or None."""
        self.failures += 1
        if self._give_up is None:
            window = self.window() if callable(self.window) else self.window
            self._give_up = now + window
        end = self._give_up if self.deadline is None else min(self._give_up, self.deadline)
        if now >= end:
            return None
        pause = min(self._pause, end - now)
        self._pause = min(2 * self._pause, self.max_pause)
        return pause

    def past_deadline(self, now: float) -> bool:
        """Whether the caller's own deadline (not the window) is what ran out."""
        return (
            self.deadline is not None
            and now >= self.deadline
            and (self._give_up is None or self.deadline < self._give_up)
        )
