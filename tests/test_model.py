"""Model-based test: the memory backend and a real Redis server behave identically.

A hypothesis state machine drives two TelescopeStates, one on a
:class:`~telstate.MemoryBackend` and one on a :class:`RedisBackend` talking to a
private redis-server, with the same random operations (through the root and
through several views), and checks after every step that both returned the
same value or raised the same type of exception.  Invariants check that the
two databases hold the same keys with the same types and contents.

The same machine also runs the memory backend against an RDB file of the same writes
(tests/rdb_reopen.py: writes go to a memory backend, every read is answered by the
read-only RDB backend opened on that state, saved anew after each write), so the lazy
RDB reader is held to the memory backend's read rules.

The key, sub-key, value and timestamp alphabets are small on purpose, so that
keys collide across types and views, immutables are re-set, samples repeat
and time-range bounds fall on, between and around samples.  For a longer hunt::

    TELSTATE_MODEL_EXAMPLES=3000 pytest tests/test_model.py
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from telstate import (
    EncodeError,
    ImmutableKeyError,
    InvalidTimestampError,
    KeyType,
    MemoryBackend,
    TelescopeState,
)
from telstate.backends.base import Backend
from telstate.backends.redis import RedisBackend

from .rdb_reopen import ReopenedRdbBackend
from .servers import RedisServer

NAN = math.nan
INF = math.inf
MAX = sys.float_info.max

# --------------------------------------------------------------------------- comparing results


def canon(x: Any) -> Any:
    """A hashable, exact and NaN-aware stand-in for `x`: equal iff the results are the same.

    Types are kept (1, 1.0 and True differ), floats compare by bits (-0.0 is not
    0.0, NaN equals NaN), lists keep their order and dicts do not.
    """
    if isinstance(x, float):
        return ("float", type(x).__name__, x.hex())
    if isinstance(x, complex):
        return ("complex", x.real.hex(), x.imag.hex())
    if isinstance(x, list | tuple):
        return (type(x).__name__, tuple(canon(item) for item in x))
    if isinstance(x, dict):
        return ("dict", frozenset((canon(k), canon(v)) for k, v in x.items()))
    if x is None or isinstance(x, int | str | bytes | KeyType):
        return (type(x).__name__, x)
    raise AssertionError(f"unexpected result type {type(x).__name__}: {x!r}")


class Outcome:
    """What a call did: returned a value (compared by :func:`canon`) or raised (by type)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.error: type[Exception] | None = None
        self.value: Any = None
        try:
            self.value = call()
        except Exception as exc:
            self.error = type(exc)
            self.value = exc
            self.key: tuple[str, Any] = ("raised", self.error)
        else:
            self.key = ("ok", canon(self.value))  # outside the try: its failures are ours

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self.key == other.key

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.error is not None:
            return f"raised {self.error.__name__}: {self.value}"
        return f"returned {self.value!r}"


# --------------------------------------------------------------------------- alphabets

# Views by name; "!" marks an exclusive view.  Prefixes: root (''), v ('v_', ''),
# w.v ('v_', 'w_', ''), v.w ('w_', 'v_', ''), v! ('v_'), w! ('w_').
VIEWS: dict[str, Callable[[TelescopeState], TelescopeState]] = {
    "root": lambda ts: ts,
    "v": lambda ts: ts.view("v"),
    "w.v": lambda ts: ts.view("w").view("v"),
    "v.w": lambda ts: ts.view("v").view("w"),
    "v!": lambda ts: ts.view("v", exclusive=True),
    "w!": lambda ts: ts.view("w", exclusive=True),
}
views = st.sampled_from(sorted(VIEWS))

# 'v_a' and 'w_b' are also 'a' and 'b' seen through the views; b'a' is 'a' as bytes.
keys = st.sampled_from(["a", "b", "c", "v_a", "w_b", b"a", ""])

# 2**64 cannot be encoded (EncodeError).
VALUES = [
    0, 1, -1, True, False, None, 1.0, 0.0, -0.0, NAN, INF, -INF, 1.5, 2**64 - 1, -(2**63), 2**64,
    "", "a", "é", b"", b"a", b"\xff", (), (1, 2), ("a", b"a"), ((1,), None),
    [1, 2], {"x": 1}, 1 + 2j, complex(NAN, 0),
]  # fmt: skip
values = st.one_of(
    st.sampled_from(VALUES),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.tuples(st.integers(-2, 2), st.text(max_size=1)),
)

# Sub-keys: 1, 1.0 and True are different fields that collapse in a Python dict;
# [1] is unhashable (TypeError).
sub_keys = st.one_of(
    st.sampled_from([0, 1, -1, 1.0, True, "x", "a", b"a", (1, 2), (), None, [1]]),
    st.integers(-3, 3),
)

# Sample timestamps: valid ones (including -0.0, duplicates, subnormals and the
# largest double) and invalid ones that both backends must refuse.
VALID_TIMES = [0.0, -0.0, 0, 1, 1.0, 1.5, 2.0, 5e-324, 1e-300, 1e300, MAX]
INVALID_TIMES = [-1.0, -5e-324, NAN, INF, -INF]
# (Valid ones most of the time, so that sensors grow.)
timestamps = st.one_of(
    st.sampled_from(VALID_TIMES),
    st.sampled_from(VALID_TIMES),
    st.floats(0.0, 3.0),
    st.floats(0.0, 3.0),
    st.sampled_from(INVALID_TIMES),
    st.floats(allow_nan=True, allow_infinity=True),
)

# Lists of samples to add, with values of one size (8+ such samples are decoded in bulk) or any.
sample_lists = st.one_of(
    [
        st.lists(
            st.tuples(kind, st.sampled_from(VALID_TIMES) | st.floats(0.0, 3.0)),
            min_size=1,
            max_size=12,
        )
        for kind in (st.floats(), st.integers(-32, 127), st.booleans() | st.none(), values)
    ]
)

# get_range bounds: None, negative, infinite, NaN (an error), on and between samples.
bounds = st.one_of(
    st.sampled_from([None, 0, 0.0, -0.0, -1, -5e-324, -INF, INF, NAN, 5e-324, 0.5, 1.0, 1.5, 2.0]),
    st.sampled_from([1e-300, 1e300, MAX]),
    st.floats(-1.0, 3.0),
)

GLOBS = [
    "*", "v_*", "?", "[ab]*", "*_[^a]", "*_?", "[a-c]", "[^v]*", "w_b", "",
    "\\*", "a\\", "[a-", "[]", "[^]", "[]a]*", "*[", "??*", b"v_[a]",
]  # fmt: skip
globs = st.sampled_from(GLOBS)

# One write of a pipeline: (kind, key, value, timestamp or sub-key).
pipeline_writes = st.one_of(
    st.tuples(st.just("set"), keys, values, st.none()),
    st.tuples(st.just("add"), keys, values, timestamps),
    st.tuples(st.just("set_indexed"), keys, values, sub_keys),
)


def queue_write(batch: Any, write: tuple[str, Any, Any, Any]) -> None:
    kind, key, value, extra = write
    if kind == "set":
        batch.add(key, value, immutable=True)
    elif kind == "add":
        batch.add(key, value, ts=extra)
    else:
        batch.set_indexed(key, extra, value)


def run_pipeline(ts: TelescopeState, writes: list[tuple[str, Any, Any, Any]]) -> None:
    with ts.pipeline() as batch:
        for write in writes:
            queue_write(batch, write)


def dump(ts: TelescopeState) -> dict[str, Any]:
    """Everything in the database: {key: [type, encoded value, encoded samples]}."""
    root = ts.root()
    state = {}
    for key in root.keys():
        key_type = root.key_type(key)
        samples = (
            root.get_range(key, st=0, return_encoded=True) if key_type is KeyType.MUTABLE else None
        )
        state[key] = [key_type, root.get(key, return_encoded=True), samples]
    return state


# --------------------------------------------------------------------------- the state machine


class BackendsAgree(RuleBasedStateMachine):
    """Same operations on both backends; same answers expected."""

    def __init__(self, make_backend: Callable[[], Backend], name: str = "redis") -> None:
        super().__init__()
        memory = TelescopeState(MemoryBackend())
        self.other_backend = make_backend()
        self.other_name = name
        other = TelescopeState(self.other_backend)
        self.sides = {view: (make(memory), make(other)) for view, make in VIEWS.items()}

    def teardown(self) -> None:
        if isinstance(self.other_backend, RedisBackend):
            self.other_backend.release()  # telstate's connections (not the test's client)
        else:
            self.other_backend.close()

    def both(self, view: str, call: Callable[[TelescopeState], Any]) -> Outcome:
        """Run `call` on the view of each backend and check the outcomes agree."""
        memory, other = self.sides[view]
        expected = Outcome(lambda: call(memory))
        got = Outcome(lambda: call(other))
        assert got == expected, f"on {view!r}: {self.other_name} {got!r}, memory {expected!r}"
        return expected

    # -- writes

    @rule(view=views, key=keys, value=values)
    def add_immutable(self, view: str, key: Any, value: Any) -> None:
        self.both(view, lambda ts: ts.add(key, value, immutable=True))

    @rule(view=views, key=keys, value=values, ts=timestamps)
    def add_sample(self, view: str, key: Any, value: Any, ts: Any) -> None:
        result = self.both(view, lambda t: t.add(key, value, ts=ts))
        if math.isnan(ts) or not 0 <= ts < INF:
            # (an unencodable value may be refused first)
            assert result.error in (InvalidTimestampError, EncodeError), result

    @initialize(view=views, key=keys, samples=sample_lists)
    def seed_sensor(self, view: str, key: Any, samples: list[tuple[Any, float]]) -> None:
        # Every example starts with some data, so that reads have something to find.
        self.add_samples(view, key, samples)

    @initialize(view=views, key=keys, items=st.lists(st.tuples(sub_keys, values), max_size=4))
    def seed_indexed(self, view: str, key: Any, items: list[tuple[Any, Any]]) -> None:
        for sub_key, value in items:
            self.set_indexed(view, key, sub_key, value)

    @rule(view=views, key=keys, samples=sample_lists)
    def add_samples(self, view: str, key: Any, samples: list[tuple[Any, float]]) -> None:
        # Many samples at once, so that sensors get long.
        for value, ts in samples:
            self.both(view, lambda t, value=value, ts=ts: t.add(key, value, ts=ts))

    @rule(view=views, key=keys, sub_key=sub_keys, value=values)
    def set_indexed(self, view: str, key: Any, sub_key: Any, value: Any) -> None:
        self.both(view, lambda ts: ts.set_indexed(key, sub_key, value))

    @rule(view=views, writes=st.lists(pipeline_writes, min_size=1, max_size=5))
    def pipeline(self, view: str, writes: list[tuple[str, Any, Any, Any]]) -> None:
        # The exception on leaving the block; the invariants compare the resulting state.
        self.both(view, lambda ts: run_pipeline(ts, writes))

    @rule(view=views, key=keys)
    def delete(self, view: str, key: Any) -> None:
        self.both(view, lambda ts: ts.delete(key))

    @rule(view=views, roll=st.integers(0, 9))
    def clear(self, view: str, roll: int) -> None:
        if roll == 7:  # occasionally: it empties everything
            self.both(view, lambda ts: ts.clear())

    def pick_key(self, data: st.DataObject, view: str, key_type: KeyType | None = None) -> Any:
        """A key for a read: from the alphabet, or stored (as `key_type`, seen through `view`)."""
        memory = self.sides[view][0]
        stored = {
            key[len(prefix) :]
            for key in memory.keys()
            for prefix in memory.prefixes
            if key.startswith(prefix)
        }
        if key_type is not None:
            stored = {key for key in stored if memory.key_type(key) is key_type}
        if not stored:
            return data.draw(keys, label="key")
        stored_keys = st.sampled_from(sorted(stored))
        return data.draw(st.one_of(keys, stored_keys, stored_keys, stored_keys), label="key")

    # -- reads

    @rule(view=views, data=st.data(), return_encoded=st.booleans())
    def get(self, view: str, data: st.DataObject, return_encoded: bool) -> None:
        key = self.pick_key(data, view)
        self.both(view, lambda ts: ts.get(key, return_encoded=return_encoded))

    @rule(view=views, data=st.data())
    def getitem(self, view: str, data: st.DataObject) -> None:
        key = self.pick_key(data, view)
        self.both(view, lambda ts: ts[key])

    @rule(view=views, data=st.data(), return_encoded=st.booleans())
    def get_indexed(self, view: str, data: st.DataObject, return_encoded: bool) -> None:
        key = self.pick_key(data, view, KeyType.INDEXED)
        stored = self.sides[view][0].get(key)
        if isinstance(stored, dict) and stored:
            sub_key = data.draw(sub_keys | st.sampled_from(list(stored)), label="sub_key")
        else:
            sub_key = data.draw(sub_keys, label="sub_key")
        self.both(view, lambda ts: ts.get_indexed(key, sub_key, return_encoded=return_encoded))

    @rule(
        view=views,
        data=st.data(),
        start=bounds,
        end=bounds,
        include_previous=st.sampled_from([None, True, False]),
        include_end=st.booleans(),
        return_encoded=st.booleans(),
    )
    def get_range(
        self,
        view: str,
        data: st.DataObject,
        start: Any,
        end: Any,
        include_previous: bool | None,
        include_end: bool,
        return_encoded: bool,
    ) -> None:
        key = self.pick_key(data, view, KeyType.MUTABLE)
        result = self.both(
            view,
            lambda ts: ts.get_range(
                key,
                st=start,
                et=end,
                include_previous=include_previous,
                include_end=include_end,
                return_encoded=return_encoded,
            ),
        )
        if any(bound is not None and math.isnan(bound) for bound in (start, end)):
            assert result.error is InvalidTimestampError, result

    @rule(view=views, data=st.data())
    def key_type(self, view: str, data: st.DataObject) -> None:
        key = self.pick_key(data, view)
        self.both(view, lambda ts: ts.key_type(key))

    @rule(view=views, data=st.data())
    def contains(self, view: str, data: st.DataObject) -> None:
        key = self.pick_key(data, view)
        self.both(view, lambda ts: [key in ts, ts.exists(key)])

    @rule(view=views, pattern=globs)
    def keys_matching(self, view: str, pattern: Any) -> None:
        self.both(view, lambda ts: ts.keys(pattern))

    # -- invariants

    @invariant()
    def same_keys(self) -> None:
        self.both("root", lambda ts: ts.keys())

    @invariant()
    def same_contents(self) -> None:
        self.both("root", dump)


SETTINGS = settings(
    max_examples=int(os.environ.get("TELSTATE_MODEL_EXAMPLES", "150")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CLUSTER_SETTINGS = settings(
    SETTINGS, max_examples=int(os.environ.get("TELSTATE_MODEL_EXAMPLES", "60"))
)


@pytest.fixture
def model_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


def test_memory_and_redis_agree(model_client: redis.Redis) -> None:
    def fresh() -> RedisBackend:
        model_client.flushall()
        return RedisBackend(model_client)

    run_state_machine_as_test(lambda: BackendsAgree(fresh), settings=SETTINGS)


def test_memory_and_cluster_agree(cluster_deployment: Any) -> None:
    """The same on a Redis Cluster: view reads across slots, pipelines in rounds."""

    def fresh() -> RedisBackend:
        cluster_deployment.flush()
        return RedisBackend.from_url(cluster_deployment.url)

    run_state_machine_as_test(lambda: BackendsAgree(fresh), settings=CLUSTER_SETTINGS)


def test_memory_and_rdb_file_agree(tmp_path: Path) -> None:
    """Reads of an RDB file of the same writes: the lazy RDB backend's read rules."""
    run_state_machine_as_test(
        lambda: BackendsAgree(lambda: ReopenedRdbBackend(tmp_path), "rdb"), settings=SETTINGS
    )


# --------------------------------------------------------------------------- regressions


# Found by the state machine (fixed in 5a56e32): RedisBackend.write_batch used to group a
# batch by kind (immutables, then samples, then sub-keys), so when a pipeline wrote one key
# as two kinds, a different write won than on the memory backend, which keeps their order.
@pytest.mark.parametrize(
    ("writes", "winner"),
    [
        ([("add", "a", 1, 0.0), ("set", "a", 1, None)], KeyType.MUTABLE),
        ([("set_indexed", "a", 1, "x"), ("add", "a", 1, 0.0)], KeyType.INDEXED),
        ([("set_indexed", "a", 1, "x"), ("set", "a", 1, None)], KeyType.INDEXED),
        ([("add", "b", 1, 0.0), ("set_indexed", "a", 1, "x"), ("set", "a", 1, None)],
         KeyType.INDEXED),
    ],
)  # fmt: skip
def test_pipeline_applies_writes_in_order(
    model_client: redis.Redis, writes: list[tuple[str, Any, Any, Any]], winner: KeyType
) -> None:
    """The first write to a key decides its type, as when the writes are made one by one."""
    model_client.flushall()
    for backend in (MemoryBackend(), RedisBackend(model_client)):
        ts = TelescopeState(backend)
        with pytest.raises(ImmutableKeyError):
            run_pipeline(ts, writes)
        assert ts.key_type("a") is winner, backend
