"""The plans of the Redis transport: what to send, and what to do with the answer (no I/O).

A plan is a generator.  It yields effects and receives their results:

``Exchange(node, payload, count)``
    write `payload` on a connection to `node` (made and introduced as
    :func:`handshake_commands` says, if none is idle) and send back its first
    `count` replies, error replies in place; a :class:`~.rules.Failure` is thrown
    into the plan if the connection fails.
``Pause(seconds)``
    sleep, waking early if the :class:`Topology` changes (a failover announced).

:func:`call` runs a batch of commands with every rule of the transport: find the
primary (asking the sentinels if needed), send, reload the scripts on
``NOSCRIPT`` and send again, ``WAIT`` for replicas, and on failure classify
(:mod:`.rules`), pause and try again until the window closes.  The sync and
asyncio drivers run the same plans.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from .._errors import TimeoutError
from . import rules
from .cluster import Each, SlotMap, command_key, key_slot, redirection
from .config import Address, ServerConfig, describe_address
from .errors import RedisConnectionError, RedisUnconfirmedWriteError
from .hub import Hold, SentinelEvent, Switch
from .resp import error_code, first_error, pack

__all__ = [
    "Exchange",
    "Node",
    "Parallel",
    "Pause",
    "Targeted",
    "Transaction",
    "MISS",
    "first_try",
    "first_try_answered",
    "first_try_failed",
    "first_try_node",
    "quick_answered",
    "Plan",
    "Script",
    "Scripts",
    "Topology",
    "call",
    "check_handshake",
    "discover",
    "first_contact",
    "refresh_slots",
    "handshake_commands",
]

_T = TypeVar("_T")

#: Milliseconds a WAIT for replicas may block the connection in one attempt.
WAIT_MS = 1000


@dataclass(frozen=True, slots=True)
class Node:
    """A server to talk to: a data server, or a sentinel."""

    address: Address
    sentinel: bool = False

    def __str__(self) -> str:
        return ("sentinel " if self.sentinel else "") + describe_address(self.address)


@dataclass(slots=True)  # not frozen: made on every call, it must be cheap to make
class Exchange:
    """Effect: send `payload` to `node`, reply with the first `count` replies.

    With `bulk`, the payload is sensor-read transactions only (:class:`Transaction`
    with ``bulk``): a connection that can may deliver their members arrays raw.
    """

    node: Node
    payload: bytes
    count: int
    bulk: bool = False


@dataclass(slots=True)
class Pause:
    """Effect: sleep (waking early on a topology change); reply None."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Parallel:
    """Effect: several exchanges with different nodes at once.

    Reply: for each exchange, its replies or the :class:`~.rules.Failure` it met.
    """

    exchanges: tuple[Exchange, ...]


Effect = Exchange | Pause | Parallel
Plan = Generator[Effect, Any, _T]


class Script(NamedTuple):
    """A command that runs one of the transport's Lua scripts."""

    name: str
    keys: Sequence[bytes]
    args: Sequence[bytes] = ()


class Transaction(NamedTuple):
    """Commands run atomically (MULTI ... EXEC) on one node; the reply is EXEC's (or the
    first error a command met while being queued).

    `bulk` marks a sensor read, ``TYPE key`` then ``ZRANGEBYLEX key ...``: sent alone,
    its members may come back as a ``resp.RawArray`` rather than a list.
    """

    commands: Sequence[Sequence[Any]]
    bulk: bool = False


class Targeted(NamedTuple):
    """A command for one node of a cluster (on one server: for the server)."""

    address: Address
    command: Sequence[Any]


Command = Sequence[Any] | Script | Transaction | Each | Targeted


def _simple(commands: Sequence[Command]) -> bool:
    """Whether every command is one RESP command (the hot path)."""
    return all(type(command) is tuple or type(command) is Script for command in commands)


class Scripts:
    """The Lua scripts a transport runs, by name; sent as EVALSHA, loaded on NOSCRIPT."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self.shas = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in texts.items()}
        self._evalsha = {name: (b"EVALSHA", sha.encode()) for name, sha in self.shas.items()}
        self.load_payload = pack([("SCRIPT", "LOAD", text) for text in self.texts.values()])

    def prefix(self, name: str, keys: int, args: int) -> bytes:
        """The RESP of a call of script `name` with `keys` keys and `args` arguments, up
        to its first key.

        A hot path appends the keys and arguments as bulk strings (:data:`.resp.BULK`)
        and has what :func:`.resp.pack` makes of :meth:`expand`'s words, without making
        them.
        """
        empty = pack([self.expand(Script(name, [b""] * keys, [b""] * args))])
        return empty[: len(empty) - len(b"$0\r\n\r\n") * (keys + args)]

    def expand(self, command: Sequence[Any] | Script) -> Sequence[Any]:
        """The words of a command (EVALSHA for a script)."""
        if type(command) is Script:  # words as bytes already: the hot path packs them as is
            return (
                *self._evalsha[command.name],
                b"%d" % len(command.keys),
                *command.keys,
                *command.args,
            )
        return command

    def words(self, command: Command) -> list[Sequence[Any]]:
        """The RESP commands that carry `command` (several for a transaction)."""
        if isinstance(command, Transaction):
            return [("MULTI",), *command.commands, ("EXEC",)]
        if isinstance(command, Each | Targeted):
            return [command.command]
        return [self.expand(command)]


def _collapse(command: Command, replies: Sequence[Any]) -> Any:
    """The reply of `command` from the replies of its RESP commands."""
    if isinstance(command, Transaction):
        queued = first_error(replies[:-1])
        return queued if queued is not None else replies[-1]
    return replies[0]


class Topology:
    """What a client believes about a deployment: where the primary is, and since when.

    Shared by every connection and waiter of a backend.  The `epoch` grows whenever
    the primary changes (or is found to be gone), so drivers can drop connections
    to a former primary and wake anything waiting for a new one.

    Parameters
    ----------
    config
        The deployment.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sentinels: list[Address] = list(config.addresses)
        self.primary: Node | None = None if config.kind == "sentinel" else Node(config.addresses[0])
        self.epoch = 0
        #: The sentinels' down-after time for the service, in seconds (learnt on discovery).
        self.down_after = 0.0
        #: Until when writes are held: a failover is under way (monotonic time).
        self.held_until = 0.0
        #: With Redis Cluster: which node holds each slot (None: not a cluster).
        self.cluster: SlotMap | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def sentinel(self) -> bool:
        return self.config.kind == "sentinel"

    def describe(self) -> str:
        """Where this is (with the current primary behind Sentinel), never with a password."""
        if self.cluster is not None:
            return self.config.describe_cluster(len(self.cluster.primaries))
        primary = self.primary.address if self.primary is not None else None
        return self.config.describe(primary if self.sentinel else None)

    def learn_node_timeout(self, replies: dict[Address, Any]) -> None:
        """Size the retry window from ``CONFIG GET cluster-node-timeout`` (if allowed):
        a failed primary's slots come back after about twice that."""
        for reply in replies.values():
            if isinstance(reply, list) and len(reply) == 2:
                self.down_after = 2.5 * int(reply[1]) / 1000.0
                return
        self.down_after = 2.5 * 15.0  # redis-server's default node timeout

    def set_cluster(self, slots: SlotMap) -> None:
        """The deployment is a cluster whose slots are where `slots` says."""
        self.cluster = slots
        if self.primary is None or self.primary.address not in slots.replicas:
            # where commands without a key (and the pub/sub hub) go: any primary
            self.primary = Node(slots.primaries[0])

    def window(self) -> float:
        """Seconds to keep retrying after a failure (a failover must fit in with Sentinel)."""
        return self.config.retry_window + self.down_after

    def listen(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from any thread) whenever the primary changes."""
        self._listeners.append(callback)

    def switch(self, address: Address) -> Node:
        """The primary is at `address` (as the sentinels say)."""
        with self._lock:
            changed = self.primary is None or self.primary.address != address
            self.held_until = 0.0
            if changed:
                self.primary = Node(address)
                self.epoch += 1
            primary = self.primary
        assert primary is not None
        if changed:
            self._notify()
        return primary

    def forget(self, node: Node) -> None:
        """`node` may no longer be the primary: ask the sentinels before the next attempt."""
        if not self.sentinel:
            return
        with self._lock:
            if self.primary != node:
                return  # already forgotten, or another primary found meanwhile
            self.primary = None
            self.epoch += 1
        self._notify()

    @property
    def holding(self) -> bool:
        """Whether a failover is under way (the sentinels said so): no primary to use."""
        return self.held_until > time.monotonic()

    def hold(self) -> None:
        """A failover has begun: drop the primary until the sentinels name the new one.

        Writes the old primary takes from now on would be lost when it is demoted, so
        none are sent (they pause); the hold ends with the switch, an abandoned
        failover, or the retry window.
        """
        with self._lock:
            self.held_until = time.monotonic() + self.window()
            self.primary = None
            self.epoch += 1
        self._notify()

    def release(self) -> None:
        """The failover was abandoned: ask the sentinels for the primary again."""
        with self._lock:
            if not self.held_until:
                return
            self.held_until = 0.0
            self.epoch += 1
        self._notify()

    def on_event(self, event: SentinelEvent) -> None:
        """Follow what a sentinel announced."""
        if isinstance(event, Switch):
            self.switch(event.address)
        elif isinstance(event, Hold):
            self.hold()
        else:
            self.release()

    def prefer(self, sentinel: Address) -> None:
        """Ask this sentinel first next time (it answered)."""
        with self._lock:
            if sentinel in self.sentinels:
                self.sentinels.remove(sentinel)
                self.sentinels.insert(0, sentinel)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()


# ------------------------------------------------------------------------ handshake


def handshake_commands(config: ServerConfig, node: Node) -> list[tuple[Any, ...]]:
    """What a new connection to `node` sends first: credentials, database, role check."""
    commands: list[tuple[Any, ...]] = []
    if node.sentinel:
        if config.sentinel_password is not None:
            user = config.sentinel_username
            commands.append(
                ("AUTH", user, config.sentinel_password)
                if user
                else ("AUTH", config.sentinel_password)
            )
        return commands
    if config.password is not None:
        user = config.username
        commands.append(("AUTH", user, config.password) if user else ("AUTH", config.password))
    if config.db:
        commands.append(("SELECT", config.db))
    if config.client_name:
        commands.append(("CLIENT", "SETNAME", config.client_name))
    if config.kind == "sentinel":
        commands.append(("ROLE",))
    return commands


def check_handshake(
    config: ServerConfig, node: Node, commands: Sequence[Sequence[Any]], replies: Sequence[Any]
) -> None:
    """Raise the :class:`~.rules.Failure` that the handshake replies call for, if any."""
    for command, reply in zip(commands, replies, strict=True):
        if command[0] == "AUTH" and isinstance(reply, BaseException):
            raise rules.Refused(f"refused the credentials: {reply}")
        if isinstance(reply, BaseException):
            if rules.is_access_refusal(reply):
                raise rules.Refused(f"refused access: {reply}")
            if rules.classify_reply(reply) is not None:  # LOADING, ...
                raise rules.Dropped(f"{node} answered {reply}")
            raise rules.Refused(f"refused {command[0]}: {reply}")
        if command[0] == "ROLE":
            role = reply[0] if isinstance(reply, list) and reply else b"?"
            if role != b"master":
                raise rules.WrongRole(
                    f"{node} is a {role.decode(errors='replace')}, not the primary"
                )


# ------------------------------------------------------------------------ discovery


def discover(topology: Topology) -> Plan[Node]:
    """Ask the sentinels, in order of preference, where the primary of the service is."""
    config = topology.config
    service = config.service
    if topology.holding:
        raise rules.NoPrimary(f"a failover of {service!r} is under way")
    payload = pack(
        [("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service), ("SENTINEL", "MASTER", service)]
    )
    problems: list[str] = []
    refused = 0
    for address in list(topology.sentinels):
        node = Node(address, sentinel=True)
        try:
            where, master = yield Exchange(node, payload, 2)
        except rules.Refused as exc:
            refused += 1
            problems.append(f"{node} {exc}")
            continue
        except rules.Failure as exc:
            problems.append(f"{node}: {exc}")
            continue
        if isinstance(where, BaseException):
            if rules.is_access_refusal(where):
                refused += 1
            problems.append(f"{node} answered {where}")
            continue
        if not isinstance(where, list) or len(where) != 2:
            problems.append(f"{node} knows no service {service!r}")
            continue
        if isinstance(master, list):
            fields = dict(zip(master[0::2], master[1::2], strict=False))
            down_after = fields.get(b"down-after-milliseconds")
            if down_after is not None:
                topology.down_after = int(down_after) / 1000.0
        topology.prefer(address)
        return topology.switch((where[0].decode(), int(where[1])))
    text = f"no sentinel named a primary for {service!r}: " + "; ".join(problems)
    if refused == len(topology.sentinels):
        raise rules.Refused(text)
    raise rules.NoPrimary(text)


# --------------------------------------------------------------------------- a call


def call(
    topology: Topology,
    scripts: Scripts,
    commands: Sequence[Command],
    *,
    writes: bool = False,
    deadline: float | None = None,
    retry: bool = True,
) -> Plan[list[Any]]:
    """Send `commands` to the primary in one round trip and return their replies.

    Error replies that are the commands' own answers (``WRONGTYPE``...) come back in
    place; transport problems are handled here (see the module notes).

    Parameters
    ----------
    topology, scripts
        The deployment and the scripts of the transport.
    commands
        Command words, or :class:`Script` calls.
    writes
        The commands write: with ``min_replicas``, a ``WAIT`` follows them and the
        call returns only once enough replicas have the writes.
    deadline
        A monotonic time after which the call stops retrying and raises TimeoutError.
    retry
        False to fail at the first problem (a backend's first contact).

    Raises
    ------
    telstate.ConnectionError
        The deployment could not be reached, or refused us, within the retry window.
    telstate.UnconfirmedWriteError
        Not enough replicas acknowledged the writes within the retry window.
    telstate.TimeoutError
        The `deadline` passed first.
    """
    if not commands:  # no replies to wait for (a stats or a batch of nothing)
        return []
    if topology.cluster is not None:
        return (yield from _call_cluster(topology, scripts, commands, writes, deadline, retry))
    config = topology.config
    simple = _simple(commands)
    if simple:
        units: list[list[Sequence[Any]]] = []
        count = len(commands)
        payload = pack(scripts.expand(command) for command in commands)  # type: ignore[arg-type]
    else:
        units = [scripts.words(command) for command in commands]
        count = sum(len(unit) for unit in units)
        payload = pack(words for unit in units for words in unit)
    need = config.min_replicas if writes else 0
    if need:
        payload += pack([("WAIT", need, WAIT_MS)])
    clock: rules.RetryClock | None = None  # made at the first failure
    expected = count + (1 if need else 0)
    bulk = not need and all(type(command) is Transaction and command.bulk for command in commands)
    while True:
        node = topology.primary
        try:
            if node is None:
                node = yield from discover(topology)
            replies = yield Exchange(node, payload, expected, bulk)
            if any(_noscript(reply) for reply in replies[:count]):
                # A restarted server or a new primary: load the scripts, send again (once
                # per attempt; a server that keeps forgetting them is retried as failing)
                loaded = yield Exchange(node, scripts.load_payload, len(scripts.texts))
                _check_loaded(loaded)
                replies = yield Exchange(node, payload, expected, bulk)
            _check_replies(replies[:count])
            if need:
                _check_acknowledged(replies[count], need)
            if simple:
                return list(replies[:count])
            if topology.cluster is not None:  # MOVED: a cluster after all (see first_contact)
                raise rules.Dropped("the server is part of a cluster")
            return _assemble(commands, units, replies, node)
        except rules.Failure as failure:
            problem = failure
        if not _may_retry(topology, problem, retry):
            raise _final_error(topology, problem)
        if topology.sentinel and node is not None:
            topology.forget(node)  # the primary may have moved: ask the sentinels
        if clock is None:
            max_pause = rules.MAX_PAUSE_SENTINEL if topology.sentinel else rules.MAX_PAUSE
            clock = rules.RetryClock(topology.window, deadline, max_pause)
        now = time.monotonic()
        pause = clock.next_pause(now)
        if pause is None:
            if clock.past_deadline(now):
                raise TimeoutError(
                    f"gave up at the deadline: redis server at {topology.describe()}: {problem}"
                )
            raise _final_error(topology, problem)
        yield Pause(pause)


def first_try_node(topology: Topology, writes: bool) -> Node | None:
    """Where the first try of a call goes (the primary), or None if the call must run its
    whole plan: a cluster, a primary unknown, or writes that must ``WAIT`` for replicas."""
    node = topology.primary
    if node is None or topology.cluster is not None or (writes and topology.config.min_replicas):
        return None
    return node


def first_try(
    topology: Topology, scripts: Scripts, commands: Sequence[Command], writes: bool
) -> tuple[Node, bytes] | None:
    """The one exchange that answers `commands` when all is well, or None.

    The common case of :func:`call`, which the drivers run without its plan: one
    server whose primary is known (:func:`first_try_node`), plain commands and
    scripts, no ``WAIT``.  The replies stand if :func:`first_try_answered` says so;
    otherwise the driver runs :func:`call`, which sends the commands again (they are
    idempotent) and applies every rule.
    """
    node = first_try_node(topology, writes)
    if node is None or not commands or not _simple(commands):
        return None  # (no commands: call() answers at once, sending nothing)
    return node, pack(scripts.expand(command) for command in commands)  # type: ignore[arg-type]


def first_try_failed(topology: Topology, failure: rules.Failure) -> None:
    """After :func:`first_try` failed: raise what :func:`call` would, unless it would retry."""
    if not _may_retry(topology, failure, True):
        raise _final_error(topology, failure)


def quick_answered(reply: Any) -> bool:
    """Whether the reply of a first try stands: not an error reply, nor a list holding one."""
    if isinstance(reply, BaseException):
        return False
    if type(reply) is list:
        for item in reply:
            if isinstance(item, BaseException):
                return False
    return True


def first_try_answered(replies: Sequence[Any]) -> bool:
    """Whether the replies of :func:`first_try` stand: no error reply, even nested."""
    return all(map(quick_answered, replies))


#: What a driver's quick call returns when the first try did not answer: the caller
#: runs the operation's whole plan instead.
MISS: Any = object()


def _assemble(
    commands: Sequence[Command],
    units: list[list[Sequence[Any]]],
    replies: Sequence[Any],
    node: Node,
) -> list[Any]:
    """Each command's reply from the replies of its RESP commands (one server)."""
    out: list[Any] = []
    position = 0
    for command, unit in zip(commands, units, strict=True):
        reply = _collapse(command, replies[position : position + len(unit)])
        position += len(unit)
        out.append({node.address: reply} if isinstance(command, Each) else reply)
    return out


#: Redirections followed within one attempt before refreshing the slots instead.
MAX_REDIRECTIONS = 16


def _route(topology: Topology, scripts: Scripts, command: Command) -> Address:
    """The node a cluster command goes to."""
    slots = topology.cluster
    assert slots is not None
    if isinstance(command, Targeted):
        return command.address
    if isinstance(command, Script):
        key: bytes | None = command.keys[0] if command.keys else None
    elif isinstance(command, Transaction):
        key = command_key(command.commands[0])
    else:
        key = command_key(command)  # type: ignore[arg-type]
    owner = slots.owner[key_slot(key)] if key is not None else None
    return owner if owner is not None else slots.primaries[0]


def _call_cluster(
    topology: Topology,
    scripts: Scripts,
    commands: Sequence[Command],
    writes: bool,
    deadline: float | None,
    retry: bool,
) -> Plan[list[Any]]:
    """:func:`call` on a cluster: each command to the node of its key, nodes in parallel.

    Commands for one node keep their order (one pipeline); nodes are not ordered
    with each other (a plan that needs it waits for one batch before the next).
    ``MOVED`` updates the slot map and resends at once, ``ASK`` resends once after
    ``ASKING``; failures, ``TRYAGAIN`` and ``CLUSTERDOWN`` pause, refresh the slot map
    from any node, and resend what did not succeed (writes are idempotent).
    """
    slots = topology.cluster
    assert slots is not None
    need = topology.config.min_replicas if writes else 0
    if len(commands) == 1 and type(commands[0]) in (tuple, Script):
        # The hot path (one command, one node): anything unusual in the answer is handled
        # by the general path below, which sends the command again (writes are idempotent)
        only = [scripts.expand(commands[0])]  # type: ignore[arg-type]
        if need:
            only.append(("WAIT", need, WAIT_MS))
        address = _route(topology, scripts, commands[0])
        try:
            replies = yield Exchange(Node(address), pack(only), len(only))
        except rules.Failure:
            pass
        else:
            reply = replies[0]
            if not isinstance(reply, BaseException) and (
                not need or (not isinstance(replies[1], BaseException) and replies[1] >= need)
            ):
                return [reply]
            if (
                isinstance(reply, BaseException)
                and rules.classify_reply(reply) is None
                and redirection(reply) is None
                and not _noscript(reply)
                and (not need or _acknowledged(replies[1], need))
            ):
                return [reply]  # the command's own answer (WRONGTYPE...)
    # (command index, command) for each piece: an Each is one piece per primary
    pieces: list[tuple[int, Command]] = []
    for index, command in enumerate(commands):
        if isinstance(command, Each):
            pieces += [(index, Targeted(address, command.command)) for address in slots.primaries]
        else:
            pieces.append((index, command))
    results: list[Any] = [None] * len(pieces)
    asking: dict[int, Address] = {}
    clock = rules.RetryClock(topology.window, deadline, rules.MAX_PAUSE)
    redirected: dict[int, int] = {}  # redirections of each piece in this attempt
    reloaded: set[Address] = set()  # nodes whose scripts were loaded in this attempt
    pending = list(range(len(pieces)))
    while pending:
        groups: dict[Address, list[int]] = {}
        for piece in pending:
            address = asking.get(piece) or _route(topology, scripts, pieces[piece][1])
            groups.setdefault(address, []).append(piece)
        plans: list[tuple[Address, list[int], list[int]]] = []
        exchanges: list[Exchange] = []
        for address, group in groups.items():
            words: list[Sequence[Any]] = []
            sizes = []
            for piece in group:
                unit = scripts.words(pieces[piece][1])
                if piece in asking:
                    unit = [("ASKING",), *unit]
                words += unit
                sizes.append(len(unit))
            if need:
                words.append(("WAIT", need, WAIT_MS))
            plans.append((address, group, sizes))
            exchanges.append(Exchange(Node(address), pack(words), len(words)))
        if len(exchanges) == 1:  # one node: no need for the driver's parallel machinery
            try:
                outcomes = [(yield exchanges[0])]
            except rules.Failure as exc:
                outcomes = [exc]
        else:
            outcomes = yield Parallel(tuple(exchanges))
        again: list[int] = []  # at once (redirected, scripts loaded)
        later: list[int] = []  # after a pause and a fresh slot map
        problem: rules.Failure | None = None
        for (address, group, sizes), outcome in zip(plans, outcomes, strict=True):
            try:
                if isinstance(outcome, rules.Failure):
                    raise outcome
                if need and not _acknowledged(outcome[-1], need):
                    raise rules.NotConfirmed(
                        f"{describe_address(address)}: only {outcome[-1]} of the {need} "
                        "replicas required acknowledged the writes"
                    )
                noscript, moved = _sort_replies(
                    topology, pieces, group, sizes, outcome, address, asking, results, again, later
                )
                for piece in moved:
                    redirected[piece] = redirected.get(piece, 0) + 1
                if noscript:
                    if address in reloaded:  # it keeps forgetting them: a failing node
                        raise rules.Dropped(
                            f"{describe_address(address)} answered NOSCRIPT again after its "
                            "scripts were loaded"
                        )
                    reloaded.add(address)
                    loaded = yield Exchange(Node(address), scripts.load_payload, len(scripts.texts))
                    _check_loaded(loaded)
            except rules.Failure as failure:
                if failure.action is rules.Action.FAIL:
                    raise _final_error(topology, failure) from None
                problem = failure
                later += [piece for piece in group if piece not in later]
                again = [piece for piece in again if piece not in group]
        bounced = [piece for piece in again if redirected.get(piece, 0) > MAX_REDIRECTIONS]
        if bounced:  # nodes disagree about where a slot is: wait, then ask again
            problem = rules.Dropped("redirected too often: the slots are moving")
            later += bounced
            again = [piece for piece in again if piece not in bounced]
        if later and problem is None:
            problem = rules.Dropped("a node answered that it cannot serve the command now")
        pending = sorted(again)
        if later:
            assert problem is not None
            if not retry:
                raise _final_error(topology, problem)
            now = time.monotonic()
            pause = clock.next_pause(now)
            if pause is None:
                if clock.past_deadline(now):
                    raise TimeoutError(f"gave up at the deadline: {topology.describe()}: {problem}")
                raise _final_error(topology, problem)
            yield Pause(pause)
            try:
                yield from refresh_slots(topology)
            except rules.Failure as exc:
                problem = exc
            slots = topology.cluster
            assert slots is not None
            redirected.clear()
            reloaded.clear()
            known = len(pieces)
            pieces = _retarget(pieces, later, slots.primaries)
            results += [None] * (len(pieces) - known)
            pending = sorted({*pending, *later, *range(known, len(pieces))})
    by_command: dict[int, list[int]] = {}
    for piece, (index, _) in enumerate(pieces):
        by_command.setdefault(index, []).append(piece)
    out: list[Any] = []
    for index, command in enumerate(commands):
        if isinstance(command, Each):
            out.append(
                {
                    pieces[piece][1].address: results[piece]  # type: ignore[union-attr]
                    for piece in by_command[index]
                }
            )
        else:
            out.append(results[by_command[index][0]])
    return out


def _sort_replies(
    topology: Topology,
    pieces: list[tuple[int, Command]],
    group: list[int],
    sizes: list[int],
    outcome: list[Any],
    address: Address,
    asking: dict[int, Address],
    results: list[Any],
    again: list[int],
    later: list[int],
) -> tuple[bool, list[int]]:
    """File each piece of a node's replies: a result, to send again at once (MOVED, ASK,
    NOSCRIPT), or later (TRYAGAIN, CLUSTERDOWN, LOADING...).

    Returns whether scripts are missing and the pieces redirected; raises the failure a
    refusal calls for.
    """
    slots = topology.cluster
    assert slots is not None
    noscript = False
    moved_pieces: list[int] = []
    position = 0
    for piece, size in zip(group, sizes, strict=True):
        unit_replies = outcome[position : position + size]
        position += size
        if piece in asking:
            unit_replies = unit_replies[1:]
        reply = _collapse(pieces[piece][1], unit_replies)
        if isinstance(reply, BaseException):
            moved = redirection(reply)
            if moved is not None:
                kind, slot, target = moved
                if isinstance(target, tuple) and not target[0]:
                    # "MOVED 3999 :6380": on the host that answered
                    host = address[0] if isinstance(address, tuple) else ""
                    target = (host, target[1])
                if kind == "MOVED":
                    slots.moved(slot, target)
                    asking.pop(piece, None)
                else:
                    asking[piece] = target
                again.append(piece)
                moved_pieces.append(piece)
                continue
            if _noscript(reply):
                noscript = True
                again.append(piece)
                continue
            action = rules.classify_reply(reply)
            if action is rules.Action.FAIL:
                raise rules.Refused(f"refused access: {reply}")
            if action is not None:
                later.append(piece)
                continue
        results[piece] = reply
        asking.pop(piece, None)
    return noscript, moved_pieces


def _retarget(
    pieces: list[tuple[int, Command]], later: list[int], primaries: list[Address]
) -> list[tuple[int, Command]]:
    """After a failover, the pieces of an Each meant for a node that is no longer a
    primary go to the primaries that the Each has not reached yet."""
    out = list(pieces)
    for piece in later:
        index, command = out[piece]
        if not isinstance(command, Targeted) or command.address in primaries:
            continue
        covered = {c.address for i, c in out if i == index and isinstance(c, Targeted)}
        fresh = [address for address in primaries if address not in covered]
        if fresh:
            out[piece] = (index, Targeted(fresh[0], command.command))
            out += [(index, Targeted(address, command.command)) for address in fresh[1:]]
    return out


def _acknowledged(reply: Any, need: int) -> bool:
    if isinstance(reply, BaseException):
        if rules.is_access_refusal(reply):
            raise rules.Refused(f"refused access: {reply}")
        return False
    return int(reply) >= need


def refresh_slots(topology: Topology) -> Plan[None]:
    """Ask the nodes we know (then the seeds) which node holds each slot."""
    known = topology.cluster.nodes() if topology.cluster is not None else []
    seeds = [address for address in topology.config.addresses if address not in known]
    problems = []
    for address in [*known, *seeds]:
        try:
            (reply,) = yield Exchange(Node(address), pack([("CLUSTER", "SLOTS")]), 1)
        except rules.Refused:
            raise
        except rules.Failure as exc:
            problems.append(f"{describe_address(address)}: {exc}")
            continue
        if isinstance(reply, BaseException):
            problems.append(f"{describe_address(address)} answered {reply}")
            continue
        if isinstance(reply, list) and reply:
            slots = SlotMap(reply)
            if slots.complete or address == [*known, *seeds][-1]:
                topology.set_cluster(slots)
                return
            problems.append(f"{describe_address(address)}: slots not all covered")
    raise rules.NoPrimary("no cluster node could say where the slots are: " + "; ".join(problems))


def first_contact(topology: Topology, scripts: Scripts) -> Plan[None]:
    """A new backend's first exchange, not retried (see :func:`call`); it also finds out
    whether the server is part of a cluster (then its slot map is fetched)."""
    config = topology.config
    if config.kind == "cluster":
        try:
            yield from refresh_slots(topology)
        except rules.Failure as exc:
            raise _final_error(topology, exc) from None
        yield from _learn_node_timeout(topology, scripts)
        return
    if config.kind == "sentinel":
        yield from call(topology, scripts, [("PING",)], retry=False)
        return
    _, slots = yield from call(topology, scripts, [("PING",), ("CLUSTER", "SLOTS")], retry=False)
    if isinstance(slots, list) and slots:
        topology.set_cluster(SlotMap(slots))
        yield from _learn_node_timeout(topology, scripts)


def _learn_node_timeout(topology: Topology, scripts: Scripts) -> Plan[None]:
    """Size a cluster's retry window from its node timeout (a default if not allowed)."""
    try:
        (timeout,) = yield from call(
            topology, scripts, [Each(("CONFIG", "GET", "cluster-node-timeout"))], retry=False
        )
    except RedisConnectionError:  # a user without CONFIG: assume the default
        timeout = {}
    topology.learn_node_timeout(timeout)


def _may_retry(topology: Topology, problem: rules.Failure, retry: bool) -> bool:
    """Whether to try again after `problem`.

    A first contact (`retry` false) fails at once, so that a wrong address or refused
    credentials are reported without delay; with Sentinel it still rides out a
    primary that the sentinels named but that is going away (a failover in progress).
    """
    if problem.action is rules.Action.FAIL:
        return False
    if retry:
        return True
    if isinstance(problem, rules.NoPrimary):
        return topology.holding  # a failover under way, not an unknown service
    return topology.sentinel and isinstance(
        problem, rules.Unreachable | rules.Dropped | rules.WrongRole
    )


def _check_acknowledged(reply: Any, need: int) -> None:
    """Raise unless the WAIT reply says `need` replicas have the writes."""
    if isinstance(reply, BaseException):
        if rules.is_access_refusal(reply):
            raise rules.Refused(f"refused access: {reply}")
        raise rules.Dropped(f"WAIT failed: {reply}")
    if reply < need:
        raise rules.NotConfirmed(
            f"only {reply} of the {need} replicas required acknowledged the writes"
        )


def _noscript(reply: Any) -> bool:
    return isinstance(reply, BaseException) and error_code(reply) == "NOSCRIPT"


def _check_loaded(replies: Sequence[Any]) -> None:
    error = first_error(replies)
    if error is not None:
        if rules.classify_reply(error) is not None:
            raise _as_failure(error)
        raise rules.Rejected(f"refused our scripts: {error}")


def _check_replies(replies: Sequence[Any]) -> None:
    """Raise the failure that an error reply calls for (others are the commands' answers).

    Replies that are lists (EXEC of a transaction, a script's table) are looked into
    one level down; their items are few (a transaction's replies, a batch's results).
    """
    for reply in replies:
        if isinstance(reply, BaseException):
            if rules.classify_reply(reply) is not None or _noscript(reply):
                raise _as_failure(reply)
        elif type(reply) is list:
            for item in reply:
                if isinstance(item, BaseException) and rules.classify_reply(item) is not None:
                    raise _as_failure(item)


def _as_failure(reply: BaseException) -> rules.Failure:
    action = rules.classify_reply(reply)
    if action is rules.Action.FAIL:
        return rules.Refused(f"refused access: {reply}")
    if action is rules.Action.REDISCOVER:
        return rules.WrongRole(f"answered {reply}")
    return rules.Dropped(f"answered {reply}")


def _final_error(topology: Topology, failure: rules.Failure) -> Exception:
    where = topology.describe()
    if isinstance(failure, rules.NotConfirmed):
        return RedisUnconfirmedWriteError(f"writes to {where} are not confirmed: {failure}")
    if isinstance(failure, rules.TlsRefused):
        return RedisConnectionError(f"TLS connection to redis server at {where} failed: {failure}")
    if isinstance(failure, rules.Refused | rules.Rejected):
        return RedisConnectionError(f"redis server at {where} {failure}")
    return RedisConnectionError(f"cannot reach redis server at {where}: {failure}")
