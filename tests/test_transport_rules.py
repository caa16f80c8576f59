"""telstate._redis.rules and resp: error codes, classification, backoff (no I/O)."""

from __future__ import annotations

import pytest
import redis.exceptions as rex
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate._redis import rules
from telstate._redis.resp import Reader, ReplyError, error_code, first_error, pack, words
from telstate._redis.rules import Action, RetryClock, classify_reply, is_access_refusal


def reply_error(text: str) -> BaseException:
    """The error reply hiredis makes of ``-text``, as a server would send it."""
    reader = Reader()
    reader.feed(b"-" + text.encode() + b"\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError)
    return error


# Redis 6 wraps errors raised by redis.call inside a script: the error handler adds
# "@user_script:1: " and luaPushError "@user_script: 1: ", and the original reply keeps its '-'.
R6_READONLY = (
    "ERR Error running script (call to f_8ea2c2b2c1d6b6f0a5e4b0f8c5f9f0e1a2b3c4d5): "
    "@user_script:1: @user_script: 1: -READONLY You can't write against a read only replica. "
)
R6_NOREPLICAS = (
    "ERR Error running script (call to f_abc): @user_script:1: @user_script: 1: "
    "-NOREPLICAS Not enough good replicas to write. "
)
R6_ACL = (
    "ERR Error running script (call to f_abc): @user_script:1: @user_script: 1: "
    "The user executing the script can't run this command or subcommand "
)
# Redis 7 keeps the code and appends where in the script it happened.
R7_READONLY = (
    "READONLY You can't write against a read only replica. script: abc, on @user_script:2."
)
R7_NOREPLICAS = "NOREPLICAS Not enough good replicas to write. script: abc, on @user_script:2."
R70_ACL = (
    "ERR The user executing the script can't run this command or subcommand "
    "script: 104a, on @user_script:1."
)
R72_ACL = (
    "ERR ACL failure in script: User u has no permissions to run the 'publish' command "
    "script: 8a2f, on @user_script:4."
)


# ------------------------------------------------------------------------ resp


def test_reply_error_is_hiredis_error() -> None:
    error = reply_error("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert isinstance(error, ReplyError)
    assert str(error).startswith("WRONGTYPE ")


def test_pack_and_words() -> None:
    assert pack([("SET", b"k", 1), ("GET", "k")]) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )
    assert words("a", b"b", 3, 1.5, bytearray(b"x")) == (b"a", b"b", b"3", b"1.5", b"x")
    with pytest.raises(TypeError):
        words(True)
    assert pack([]) == b""


def test_pack_round_trips_through_hiredis() -> None:
    reader = Reader()
    reader.feed(pack([("EVALSHA", "ab", 2, b"k\r\n1", b"", 0.25)]))
    assert reader.gets() == [b"EVALSHA", b"ab", b"2", b"k\r\n1", b"", b"0.25"]
    assert reader.gets() is False


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.binary(max_size=300),  # past the ready-made headers too
                st.text(max_size=20),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
            ),
            min_size=1,
            max_size=300,
        ),
        max_size=4,
    )
)
def test_pack_any_words(commands: list[list[object]]) -> None:
    reader = Reader()
    reader.feed(pack(commands))
    for command in commands:
        assert reader.gets() == list(words(*command))
    assert reader.gets() is False
    # packed again (names now looked up): the same bytes
    assert pack(commands) == b"".join(pack([command]) for command in commands)
    with pytest.raises(TypeError):
        pack([("SET", b"k", True)])


def test_reader_keeps_errors_in_place() -> None:
    reader = Reader()
    reader.feed(b"+OK\r\n-NOSCRIPT No matching script\r\n:3\r\n*2\r\n$1\r\na\r\n-ERR x\r\n")
    replies = [reader.gets() for _ in range(4)]
    assert replies[0] == b"OK"
    assert error_code(replies[1]) == "NOSCRIPT"
    assert replies[2] == 3
    assert replies[3][0] == b"a" and isinstance(replies[3][1], ReplyError)
    assert first_error(replies) is replies[1]
    assert first_error([b"OK", 1, [reply_error("ERR nested")]]) is None  # one level only
    assert first_error([]) is None


# ------------------------------------------------------------------------ error_code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("NOSCRIPT No matching script. Please use EVAL.", "NOSCRIPT"),
        ("READONLY You can't write against a read only replica.", "READONLY"),
        ("LOADING Redis is loading the dataset in memory", "LOADING"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL", "BUSY"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN"),
        ("NOREPLICAS Not enough good replicas to write.", "NOREPLICAS"),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is 'no'.", "MASTERDOWN"),
        ("NOAUTH Authentication required.", "NOAUTH"),
        ("NOPERM this user has no permissions to run the 'set' command", "NOPERM"),
        ("WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS"),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE"),
        ("EXECABORT Transaction discarded because of previous errors.", "EXECABORT"),
        ("ERR unknown command 'FOO'", "ERR"),
        ("ERR", "ERR"),
        ("", ""),
        (R6_READONLY, "READONLY"),
        (R6_NOREPLICAS, "NOREPLICAS"),
        ("ERR Error running script (call to f_x): @user_script:1: READONLY no", "READONLY"),
        (R7_READONLY, "READONLY"),
        (R7_NOREPLICAS, "NOREPLICAS"),
        (R70_ACL, "ERR"),
        (R72_ACL, "ERR"),
    ],
)
def test_error_code_of_replies(text: str, code: str) -> None:
    assert error_code(reply_error(text)) == code


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (rex.NoScriptError, "NOSCRIPT"),
        (rex.ReadOnlyError, "READONLY"),
        (rex.BusyLoadingError, "LOADING"),
        (rex.NoPermissionError, "NOPERM"),
        (rex.AuthenticationError, "WRONGPASS"),
        (rex.AuthenticationWrongNumberOfArgsError, "WRONGPASS"),
        (rex.ExecAbortError, "EXECABORT"),
        (rex.ModuleError, "ERR"),
    ],
)
def test_error_code_of_redis_py_classes(cls: type[Exception], code: str) -> None:
    # redis-py drops the code from the message: the class names it
    assert error_code(cls("No matching script. Please use EVAL.")) == code
    assert error_code(cls("")) == code


def test_error_code_of_plain_redis_py_response_error() -> None:
    assert error_code(rex.ResponseError("WRONGTYPE Operation against a key")) == "WRONGTYPE"
    assert error_code(rex.ResponseError("MASTERDOWN Link with MASTER is down")) == "MASTERDOWN"
    assert error_code(rex.ResponseError(R6_READONLY)) == "READONLY"


# ------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("text", "action"),
    [
        # retry
        ("LOADING Redis is loading the dataset in memory", Action.RETRY),
        ("BUSY Redis is busy running a script.", Action.RETRY),
        ("TRYAGAIN Multiple keys request during rehashing of slot", Action.RETRY),
        # rediscover
        ("READONLY You can't write against a read only replica.", Action.REDISCOVER),
        ("NOREPLICAS Not enough good replicas to write.", Action.REDISCOVER),
        ("MASTERDOWN Link with MASTER is down", Action.REDISCOVER),
        (R6_READONLY, Action.REDISCOVER),
        (R6_NOREPLICAS, Action.REDISCOVER),
        (R7_READONLY, Action.REDISCOVER),
        (R7_NOREPLICAS, Action.REDISCOVER),
        # fail
        ("NOAUTH Authentication required.", Action.FAIL),
        ("NOPERM this user has no permissions to run the 'evalsha' command", Action.FAIL),
        ("NOPERM this user may not publish the updates of k script: abc", Action.FAIL),
        ("WRONGPASS invalid username-password pair or user is disabled.", Action.FAIL),
        (R70_ACL, Action.FAIL),
        (R72_ACL, Action.FAIL),
        (
            "ERR AUTH <password> called without any password configured for the default user.",
            Action.FAIL,
        ),
        # the command's own answer
        ("WRONGTYPE Operation against a key holding the wrong kind of value", None),
        ("NOSCRIPT No matching script. Please use EVAL.", None),
        ("EXECABORT Transaction discarded because of previous errors.", None),
        ("ERR unknown command 'FOO'", None),
        ("ERR value is not an integer or out of range", None),
        ("ERR Error running script (call to f_x): @user_script:1: WRONGTYPE Operation", None),
        ("OOM command not allowed when used memory > 'maxmemory'.", None),
    ],
)
def test_classify_reply(text: str, action: Action | None) -> None:
    assert classify_reply(reply_error(text)) is action


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (rex.BusyLoadingError("Redis is loading"), Action.RETRY),
        (rex.ReadOnlyError("You can't write against a read only replica."), Action.REDISCOVER),
        (rex.NoPermissionError("no permissions"), Action.FAIL),
        (rex.AuthenticationError("invalid password"), Action.FAIL),
        (rex.NoScriptError("No matching script"), None),
        (rex.ExecAbortError("Transaction discarded"), None),
        (rex.ResponseError("WRONGTYPE Operation"), None),
    ],
)
def test_classify_redis_py_errors(error: Exception, action: Action | None) -> None:
    assert classify_reply(error) is action


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("NOAUTH Authentication required.", True),
        ("NOPERM this user has no permissions to access one of the keys", True),
        ("WRONGPASS invalid username-password pair", True),
        (R70_ACL, True),
        (R72_ACL, True),
        ("ACL failure in script: no", True),
        ("ERR AUTH <password> called without any password configured for the default user", True),
        ("READONLY You can't write against a read only replica.", False),
        ("ERR unknown command 'ACL'", False),
        ("WRONGTYPE Operation against a key", False),
        ("ERR the ACL failure in script is mentioned later", False),
    ],
)
def test_is_access_refusal(text: str, refused: bool) -> None:
    assert is_access_refusal(reply_error(text)) is refused


def test_is_access_refusal_redis6_script_wrapped() -> None:
    error = reply_error(R6_ACL)
    assert is_access_refusal(error)
    assert classify_reply(error) is Action.FAIL


def test_failure_classes() -> None:
    assert rules.Failure.action is Action.RETRY
    assert rules.Unreachable.action is Action.RETRY
    assert rules.Dropped.action is Action.RETRY
    assert rules.Refused.action is Action.FAIL
    assert rules.TlsRefused.action is Action.FAIL
    assert issubclass(rules.TlsRefused, rules.Refused)
    assert rules.WrongRole.action is Action.REDISCOVER
    assert rules.NoPrimary.action is Action.REDISCOVER
    assert rules.NotConfirmed.action is Action.REDISCOVER
    for cls in (
        rules.Unreachable,
        rules.Dropped,
        rules.Refused,
        rules.WrongRole,
        rules.NoPrimary,
        rules.NotConfirmed,
    ):
        assert issubclass(cls, rules.Failure)
        assert cls("x").action is cls.action


# ------------------------------------------------------------------------ RetryClock


def pauses(clock: RetryClock, start: float = 0.0) -> tuple[list[float], float]:
    """Every pause `clock` grants to failures that happen right after each pause."""
    now, out = start, []
    while (pause := clock.next_pause(now)) is not None:
        assert pause > 0
        out.append(pause)
        now += pause
        assert len(out) < 1000
    return out, now


def test_pauses_double_from_50ms_to_the_cap() -> None:
    out, end = pauses(RetryClock(5.0, None, max_pause=1.0))
    assert out == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.45])
    assert end == pytest.approx(5.0)


def test_pauses_with_sentinel_cap() -> None:
    out, end = pauses(RetryClock(1.0, None, max_pause=rules.MAX_PAUSE_SENTINEL))
    assert out[:4] == pytest.approx([0.05, 0.1, 0.2, 0.25])
    assert max(out) == pytest.approx(0.25)
    assert end == pytest.approx(1.0)


def test_default_cap_is_max_pause() -> None:
    clock = RetryClock(100.0, None)
    assert clock.max_pause == rules.MAX_PAUSE
    out = [clock.next_pause(0.0) for _ in range(10)]
    assert out == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_window_opens_at_the_first_failure() -> None:
    clock = RetryClock(1.0, None)
    assert clock.next_pause(100.0) == pytest.approx(0.05)
    assert clock.next_pause(100.5) == pytest.approx(0.1)
    assert clock.next_pause(100.95) == pytest.approx(0.05)  # clipped to the window's end
    assert clock.next_pause(101.0) is None
    assert clock.next_pause(101.5) is None
    assert clock.failures == 5
    assert not clock.past_deadline(101.0)


def test_zero_window_gives_no_pause() -> None:
    clock = RetryClock(0.0, None)
    assert clock.next_pause(3.0) is None
    assert clock.failures == 1
    assert not clock.past_deadline(3.0)


def test_deadline_before_the_window_ends() -> None:
    clock = RetryClock(5.0, deadline=0.3)
    out, end = pauses(clock)
    assert out == pytest.approx([0.05, 0.1, 0.15])
    assert end == pytest.approx(0.3)
    assert clock.past_deadline(end)
    assert clock.past_deadline(10.0)


def test_deadline_after_the_window_ends() -> None:
    clock = RetryClock(0.5, deadline=10.0)
    out, end = pauses(clock)
    assert sum(out) == pytest.approx(0.5)
    assert end == pytest.approx(0.5)
    assert not clock.past_deadline(end)  # the window ran out, not the caller's deadline
    assert not clock.past_deadline(10.0)


def test_deadline_already_passed() -> None:
    clock = RetryClock(5.0, deadline=1.0)
    assert clock.next_pause(2.0) is None
    assert clock.past_deadline(2.0)


def test_past_deadline_before_any_failure() -> None:
    clock = RetryClock(5.0, deadline=1.0)
    assert not clock.past_deadline(0.5)
    assert clock.past_deadline(1.0)
    assert not RetryClock(5.0, None).past_deadline(1e9)


def test_deadline_equal_to_window_end_is_the_window() -> None:
    clock = RetryClock(1.0, deadline=1.0)
    pauses(clock)
    assert not clock.past_deadline(1.0)
