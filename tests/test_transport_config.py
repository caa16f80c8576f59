"""telstate._redis.config: URLs, redis-py clients and TLS options (no servers, no sockets)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from telstate._redis.config import (
    DEFAULT_PORT,
    SENTINEL_PORT,
    ServerConfig,
    TlsOptions,
    describe_address,
    from_client,
    parse_url,
)

WEIRD = "p@ss:w/rd%"
WEIRD_Q = quote(WEIRD, safe="")  # p%40ss%3Aw%2Frd%25


# ------------------------------------------------------------------------ URL forms


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://h", ("h", DEFAULT_PORT)),
        ("redis://h:6380", ("h", 6380)),
        ("redis://h:", ("h", DEFAULT_PORT)),
        ("redis://10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("redis://[::1]:6380", ("::1", 6380)),
        ("redis://[::1]", ("::1", DEFAULT_PORT)),
        ("redis://[fe80::1%25eth0]:1", ("fe80::1%eth0", 1)),
        ("REDIS://H:1", ("H", 1)),
        ("rediss://h:6390", ("h", 6390)),
        ("redis://h:65535", ("h", 65535)),
        ("redis://h:1", ("h", 1)),
    ],
)
def test_single_server_addresses(url: str, address: tuple[str, int]) -> None:
    config = parse_url(url)
    assert config.kind == "server"
    assert config.addresses == (address,)
    assert config.service == ""


def test_plain_url_defaults() -> None:
    config = parse_url("redis://h")
    assert config == ServerConfig(kind="server", addresses=(("h", 6379),))
    assert config.db == 0
    assert config.username is None and config.password is None
    assert config.sentinel_username is None and config.sentinel_password is None
    assert config.tls is None
    assert (config.connect_timeout, config.socket_timeout, config.retry_window) == (3.0, 5.0, 5.0)
    assert config.min_replicas == 0
    assert config.client_name is None and config.label is None


def test_rediss_turns_tls_on_with_verification() -> None:
    config = parse_url("rediss://h")
    assert config.tls == TlsOptions()
    assert config.tls is not None and config.tls.cert_reqs == "required"
    assert config.tls.check_hostname is None


def test_tls_query_parameters() -> None:
    config = parse_url(
        "rediss://h?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_cert_reqs=CERT_OPTIONAL&ssl_check_hostname=no&ssl_ca_data=PEM"
    )
    assert config.tls == TlsOptions(
        ca_certs="/ca.pem",
        certfile="/c.pem",
        keyfile="/k.pem",
        cert_reqs="optional",
        check_hostname=False,
        ca_data="PEM",
    )


def test_ssl_parameter_turns_tls_on_even_for_redis_scheme() -> None:
    config = parse_url("redis://h?ssl_cert_reqs=none")
    assert config.tls == TlsOptions(cert_reqs="none")
    assert config.describe().startswith("rediss://")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_check_hostname_booleans(text: str, expected: bool) -> None:
    config = parse_url(f"rediss://h?ssl_check_hostname={text}")
    assert config.tls is not None and config.tls.check_hostname is expected


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://h/3", 3),
        ("redis://h/", 0),
        ("redis://h:1/15", 15),
        ("redis://h?db=4", 4),
        ("redis://h/2?db=5", 5),  # the query wins over the path
        ("unix:///tmp/r.sock?db=7", 7),
        ("redis+sentinel://s/svc/9", 9),
        ("redis+sentinel://s/svc?db=8", 8),
        ("redis+sentinel://s/svc/1?db=6", 6),
    ],
)
def test_database_in_path_or_query(url: str, db: int) -> None:
    assert parse_url(url).db == db


def test_credentials_from_userinfo() -> None:
    config = parse_url("redis://alice:secret@h:1/2")
    assert (config.username, config.password, config.db) == ("alice", "secret", 2)
    config = parse_url("redis://:secret@h")
    assert (config.username, config.password) == (None, "secret")
    config = parse_url("redis://alice@h")
    assert (config.username, config.password) == ("alice", None)


def test_percent_encoded_credentials() -> None:
    config = parse_url(f"redis://us%3Aer:{WEIRD_Q}@h/1")
    assert config.username == "us:er"
    assert config.password == WEIRD
    assert config.addresses == (("h", 6379),)
    assert config.db == 1


def test_raw_colon_and_at_in_password() -> None:
    # The userinfo ends at the last '@' and the user name at the first ':'.
    config = parse_url("redis://u:a:b@c@h")
    assert (config.username, config.password, config.addresses) == ("u", "a:b@c", (("h", 6379),))


def test_query_credentials_beat_userinfo_and_options_beat_both() -> None:
    config = parse_url("redis://u:a@h?password=b&username=v")
    assert (config.username, config.password) == ("v", "b")
    config = parse_url("redis://u:a@h?password=b", password="c", username="w")
    assert (config.username, config.password) == ("w", "c")


def test_options_override_the_url() -> None:
    config = parse_url(
        "redis://h/2?db=3&retry_window=9&min_replicas=1&socket_timeout=7",
        db=4,
        retry_window=1.5,
        min_replicas=2,
        socket_timeout=0.5,
        socket_connect_timeout=0.25,
        client_name="me",
    )
    assert config.db == 4
    assert config.retry_window == 1.5
    assert config.min_replicas == 2
    assert config.socket_timeout == 0.5
    assert config.connect_timeout == 0.25
    assert config.client_name == "me"


def test_options_given_as_text_are_parsed() -> None:
    config = parse_url("redis://h", db="3", min_replicas="1", retry_window="2.5")
    assert (config.db, config.min_replicas, config.retry_window) == (3, 1, 2.5)
    config = parse_url("rediss://h", ssl_check_hostname="off", ssl_cert_reqs="optional")
    assert config.tls == TlsOptions(cert_reqs="optional", check_hostname=False)


def test_options_that_are_none_are_ignored() -> None:
    config = parse_url("redis://u:pw@h/3", db=None, password=None, username=None, bogus=None)
    assert (config.username, config.password, config.db) == ("u", "pw", 3)


def test_query_parameters() -> None:
    config = parse_url(
        "redis://h?socket_timeout=1.5&socket_connect_timeout=0.5&retry_window=0"
        "&min_replicas=2&client_name=telstate-test"
    )
    assert config.socket_timeout == 1.5
    assert config.connect_timeout == 0.5
    assert config.retry_window == 0.0
    assert config.min_replicas == 2
    assert config.client_name == "telstate-test"


def test_blank_client_name_and_username_mean_none() -> None:
    config = parse_url("redis://h?client_name=&username=")
    assert config.client_name is None
    assert config.username is None


def test_unix_socket_urls() -> None:
    config = parse_url("unix:///var/run/redis.sock")
    assert config.kind == "server"
    assert config.addresses == ("/var/run/redis.sock",)
    assert config.db == 0
    config = parse_url(f"unix://u:{WEIRD_Q}@/tmp/r%20s.sock?db=2")
    assert config.addresses == ("/tmp/r s.sock",)
    assert (config.username, config.password, config.db) == ("u", WEIRD, 2)


def test_sentinel_urls() -> None:
    config = parse_url("redis+sentinel://s1,s2:26380,[::1],[fe80::2]:1/mymaster/3")
    assert config.kind == "sentinel"
    assert config.addresses == (
        ("s1", SENTINEL_PORT),
        ("s2", 26380),
        ("::1", SENTINEL_PORT),
        ("fe80::2", 1),
    )
    assert config.service == "mymaster"
    assert config.db == 3
    assert config.tls is None


def test_sentinel_credentials() -> None:
    config = parse_url(
        "redis+sentinel://u:pw@s/svc?sentinel_username=su&sentinel_password=" + WEIRD_Q
    )
    assert (config.username, config.password) == ("u", "pw")
    assert (config.sentinel_username, config.sentinel_password) == ("su", WEIRD)


def test_sentinel_over_tls() -> None:
    config = parse_url("rediss+sentinel://s1,s2/svc?ssl_ca_certs=/ca.pem")
    assert config.kind == "sentinel"
    assert config.tls == TlsOptions(ca_certs="/ca.pem")
    assert config.addresses == (("s1", SENTINEL_PORT), ("s2", SENTINEL_PORT))


def test_sentinel_service_with_trailing_slash() -> None:
    config = parse_url("redis+sentinel://s/svc/")
    assert (config.service, config.db) == ("svc", 0)


# ------------------------------------------------------------------------ bad URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "unsupported URL scheme"),
        ("h:6379", "unsupported URL scheme"),
        ("redis://", "empty host"),
        ("redis+sentinel://s1,,s2/svc", "empty host"),
        ("redis://:6379", "no host"),
        ("redis://h:x", "bad port"),
        ("redis://h:0", "bad port"),
        ("redis://h:65536", "bad port"),
        ("redis://h:-1", "bad port"),
        ("redis://[::1]:x", "bad port"),
        ("redis+sentinel://s:99999/svc", "bad port"),
        ("redis://h/x", "bad database number"),
        ("redis://h/1/2", "bad database number"),
        ("redis://h/-1", "bad database number"),
        ("redis://h?db=x", "bad value for 'db'"),
        ("redis://h?db=-2", "bad database number"),
        ("redis+sentinel://s/svc/x", "bad database number"),
        ("redis://h?foo=1", "unknown Redis URL parameter or option 'foo'"),
        ("redis://h?ssl=true", "unknown Redis URL parameter or option 'ssl'"),
        ("redis://h?min_replicas=x", "bad value for 'min_replicas'"),
        ("redis://h?min_replicas=-1", "min_replicas must be >= 0"),
        ("redis://h?socket_timeout=0", "timeouts must be positive"),
        ("redis://h?socket_connect_timeout=-1", "timeouts must be positive"),
        ("redis://h?retry_window=-1", "timeouts must be positive"),
        ("redis://h?retry_window=soon", "bad value for 'retry_window'"),
        ("rediss://h?ssl_cert_reqs=maybe", "bad value for 'ssl_cert_reqs'"),
        ("rediss://h?ssl_check_hostname=perhaps", "bad value for 'ssl_check_hostname'"),
        ("redis+sentinel://s", "SERVICE"),
        ("redis+sentinel://s/", "SERVICE"),
        ("redis+sentinel://s/svc/1/2", "SERVICE"),
        ("rediss+sentinel://s", "SERVICE"),
        ("unix://", "needs the socket's path"),
        ("unix://host/tmp/r.sock", "has no host"),
        ("redis://[::1", "Invalid IPv6 URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        parse_url(url)


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown Redis URL parameter or option 'bogus'"):
        parse_url("redis://h", bogus=1)


def test_bad_option_value() -> None:
    with pytest.raises(ValueError, match="bad value for 'db'"):
        parse_url("redis://h", db="three")


def test_errors_never_repeat_an_encoded_password() -> None:
    for url in [
        f"redis://u:{WEIRD_Q}@h:x",
        f"redis://u:{WEIRD_Q}@h1,h2:x",
        f"redis://u:{WEIRD_Q}@h/x",
        f"redis://u:{WEIRD_Q}@h?foo=1",
        f"redis+sentinel://u:{WEIRD_Q}@s/",
        f"redis+sentinel://u:{WEIRD_Q}@s:0/svc",
        f"unix://u:{WEIRD_Q}@host/tmp/x",
    ]:
        with pytest.raises(ValueError) as info:
            parse_url(url)
        text = str(info.value)
        assert WEIRD not in text and WEIRD_Q not in text, (url, text)
        assert "p%40ss" not in text and "p@ss" not in text, (url, text)


@pytest.mark.parametrize(
    "url",
    ["redis://u:p@ss:w/rd%@h", "redis://u:secretpart/rest@h", "redis://u:secretpart#x@h"],
)
def test_errors_never_repeat_a_raw_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_url(url)
    text = str(info.value)
    assert "ss:w" not in text and "secretpart" not in text, text


@pytest.mark.parametrize("url", ["redis://::1", "redis://h:6379:1", "redis+sentinel://fe80::1/svc"])
def test_unbracketed_ipv6_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


@pytest.mark.parametrize("url", ["redis://:@h", "redis://u:@h", "redis://h?password="])
def test_empty_password_means_no_password(url: str) -> None:
    assert parse_url(url).password is None


# ------------------------------------------------------------------------ ServerConfig


def test_server_config_checks() -> None:
    with pytest.raises(ValueError, match="at least one address"):
        ServerConfig(kind="server", addresses=())
    with pytest.raises(ValueError, match="service name"):
        ServerConfig(kind="sentinel", addresses=(("s", 26379),))
    with pytest.raises(ValueError, match="bad database number"):
        ServerConfig(kind="server", addresses=(("h", 1),), db=-1)
    with pytest.raises(ValueError, match="min_replicas"):
        ServerConfig(kind="server", addresses=(("h", 1),), min_replicas=-1)
    with pytest.raises(ValueError, match="positive"):
        ServerConfig(kind="server", addresses=(("h", 1),), connect_timeout=0)
    with pytest.raises(ValueError, match="positive"):
        ServerConfig(kind="server", addresses=(("h", 1),), socket_timeout=0)
    with pytest.raises(ValueError, match="positive"):
        ServerConfig(kind="server", addresses=(("h", 1),), retry_window=-0.1)
    # a zero retry window is allowed: fail at the first problem
    assert ServerConfig(kind="server", addresses=(("h", 1),), retry_window=0).retry_window == 0


def test_replace_checks_too() -> None:
    config = parse_url("redis://h")
    assert config.replace(db=5).db == 5
    assert config.db == 0  # frozen original
    with pytest.raises(ValueError):
        config.replace(db=-1)


def test_describe_address() -> None:
    assert describe_address(("h", 1)) == "h:1"
    assert describe_address(("::1", 2)) == "[::1]:2"
    assert describe_address("/tmp/r.sock") == "unix:///tmp/r.sock"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("redis://h", "redis://h:6379/0"),
        ("redis://h:1/2", "redis://h:1/2"),
        ("redis://[::1]:6380/1", "redis://[::1]:6380/1"),
        ("rediss://h", "rediss://h:6379/0"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("unix:///tmp/r.sock?db=3", "unix:///tmp/r.sock?db=3"),
        ("redis+sentinel://s1,s2:1/svc", "redis+sentinel://s1:26379,s2:1/svc"),
        ("redis+sentinel://[::1]/svc/4", "redis+sentinel://[::1]:26379/svc/4"),
        ("rediss+sentinel://s/svc", "rediss+sentinel://s:26379/svc"),
    ],
)
def test_describe(url: str, text: str) -> None:
    assert parse_url(url).describe() == text


def test_describe_sentinel_with_primary() -> None:
    config = parse_url("redis+sentinel://s/svc/2")
    assert (
        config.describe(("10.0.0.5", 6380))
        == "redis+sentinel://s:26379/svc/2 (primary 10.0.0.5:6380)"
    )
    assert config.describe(("::5", 1)).endswith("(primary [::5]:1)")
    # a plain server ignores the primary
    assert parse_url("redis://h").describe(("x", 1)) == "redis://h:6379/0"


def test_describe_uses_the_label() -> None:
    config = ServerConfig(kind="server", addresses=("fake",), label="FakeRedis<x>")
    assert config.describe() == "FakeRedis<x>"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{WEIRD_Q}@h:1/2",
        f"rediss://user:{WEIRD_Q}@h",
        f"redis://h?password={WEIRD_Q}",
        f"unix://user:{WEIRD_Q}@/tmp/r.sock?db=1",
        f"redis+sentinel://user:{WEIRD_Q}@s1,s2/svc?sentinel_password={WEIRD_Q}",
        f"rediss+sentinel://user:{WEIRD_Q}@s/svc/1?sentinel_password={WEIRD_Q}",
    ],
)
def test_describe_and_repr_never_show_passwords(url: str) -> None:
    config = parse_url(url)
    assert config.password == WEIRD
    for text in (config.describe(), config.describe(("h", 1)), repr(config), str(config)):
        assert WEIRD not in text and WEIRD_Q not in text, text
        assert "p@ss" not in text and "rd%" not in text, text


def test_repr_hides_sentinel_password() -> None:
    config = parse_url("redis+sentinel://s/svc", sentinel_password="hunter2", password="swordfish")
    assert "hunter2" not in repr(config)
    assert "swordfish" not in repr(config)


# ------------------------------------------------------------------------ TLS contexts


def test_tls_context_required() -> None:
    context = TlsOptions().context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_tls_context_required_without_hostname_check() -> None:
    context = TlsOptions(check_hostname=False).context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_tls_context_optional() -> None:
    context = TlsOptions(cert_reqs="optional").context()
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.check_hostname is False
    context = TlsOptions(cert_reqs="optional", check_hostname=True).context()
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.check_hostname is True


def test_tls_context_none_ignores_hostname_check() -> None:
    for check in (None, True, False):
        context = TlsOptions(cert_reqs="none", check_hostname=check).context()
        assert context.verify_mode == ssl.CERT_NONE
        assert context.check_hostname is False


def test_tls_context_missing_ca_file() -> None:
    with pytest.raises(OSError):
        TlsOptions(ca_certs="/nonexistent/ca.pem").context()


def test_cert_reqs_option_as_verify_mode() -> None:
    config = parse_url("rediss://h", ssl_cert_reqs=ssl.CERT_NONE)
    assert config.tls is not None
    assert config.tls.cert_reqs == "none"
    assert config.tls.context().verify_mode == ssl.CERT_NONE


# ------------------------------------------------------------------------ redis-py clients


@pytest.fixture
def make() -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """Build redis-py clients (never connected) and close the sync ones afterwards."""
    made: list[Any] = []

    def build(factory: Callable[[], Any]) -> Any:
        client = factory()
        made.append(client)
        return client

    yield build
    for client in made:
        if isinstance(client, redis.Redis):
            client.close()


def test_from_plain_client(make: Callable[[Callable[[], Any]], Any]) -> None:
    client = make(
        lambda: redis.Redis(
            host="h",
            port=1234,
            username="u",
            password=WEIRD,
            db=3,
            socket_timeout=2,
            socket_connect_timeout=1,
            client_name="cn",
        )
    )
    config = from_client(client)
    assert config is not None
    assert config.kind == "server"
    assert config.addresses == (("h", 1234),)
    assert (config.username, config.password, config.db) == ("u", WEIRD, 3)
    assert (config.socket_timeout, config.connect_timeout) == (2.0, 1.0)
    assert config.client_name == "cn"
    assert config.tls is None
    assert config.describe() == "redis://h:1234/3"
    assert WEIRD not in repr(config)


def test_from_default_client(make: Callable[[Callable[[], Any]], Any]) -> None:
    config = from_client(make(redis.Redis))
    assert config is not None
    assert config.addresses == (("localhost", 6379),)
    assert config.password is None and config.db == 0


def test_from_client_options_override(make: Callable[[Callable[[], Any]], Any]) -> None:
    config = from_client(make(lambda: redis.Redis(host="h", db=1)), retry_window=1.0, db=2)
    assert config is not None
    assert (config.retry_window, config.db) == (1.0, 2)
    config = from_client(make(lambda: redis.Redis(host="h")), min_replicas=2)
    assert config is not None and config.min_replicas == 2


def test_from_unix_client(make: Callable[[Callable[[], Any]], Any]) -> None:
    config = from_client(make(lambda: redis.Redis(unix_socket_path="/tmp/x.sock", db=1)))
    assert config is not None
    assert config.addresses == ("/tmp/x.sock",)
    assert config.db == 1
    assert config.tls is None
    assert config.describe() == "unix:///tmp/x.sock?db=1"


def test_from_ssl_client(make: Callable[[Callable[[], Any]], Any]) -> None:
    client = make(lambda: redis.Redis(host="h", port=6390, ssl=True, ssl_ca_certs="/ca.pem"))
    config = from_client(client)
    assert config is not None
    assert config.tls is not None
    assert config.tls.ca_certs == "/ca.pem"
    assert config.tls.cert_reqs == "required"
    assert config.describe() == "rediss://h:6390/0"


@pytest.mark.parametrize(
    ("reqs", "expected"),
    [
        (ssl.CERT_NONE, "none"),
        (ssl.CERT_OPTIONAL, "optional"),
        (ssl.CERT_REQUIRED, "required"),
        ("none", "none"),
        ("optional", "optional"),
        ("required", "required"),
        (None, "none"),  # redis-py: None means no verification
    ],
)
def test_from_ssl_client_cert_reqs(
    make: Callable[[Callable[[], Any]], Any], reqs: Any, expected: str
) -> None:
    config = from_client(make(lambda: redis.Redis(host="h", ssl=True, ssl_cert_reqs=reqs)))
    assert config is not None and config.tls is not None
    assert config.tls.cert_reqs == expected


def test_from_ssl_client_hostname_check(make: Callable[[Callable[[], Any]], Any]) -> None:
    client = make(lambda: redis.Redis(host="h", ssl=True, ssl_check_hostname=False))
    config = from_client(client)
    assert config is not None and config.tls is not None
    assert config.tls.check_hostname is False
    assert config.tls.context().check_hostname is False


@pytest.mark.parametrize(
    ("url", "address", "db", "tls"),
    [
        ("redis://u:p%40w@h:7/5", ("h", 7), 5, False),
        ("rediss://h:7/1", ("h", 7), 1, True),
        ("redis://h?db=2", ("h", 6379), 2, False),
        ("unix:///tmp/s.sock?db=2", "/tmp/s.sock", 2, False),
    ],
)
def test_from_url_client(
    make: Callable[[Callable[[], Any]], Any], url: str, address: Any, db: int, tls: bool
) -> None:
    config = from_client(make(lambda: redis.Redis.from_url(url)))
    assert config is not None
    assert config.addresses == (address,)
    assert config.db == db
    assert (config.tls is not None) is tls
    if url.startswith("redis://u"):
        assert (config.username, config.password) == ("u", "p@w")


def test_from_asyncio_clients() -> None:
    config = from_client(redis.asyncio.Redis(host="h", port=9, password="pw", db=2))
    assert config is not None
    assert (config.addresses, config.password, config.db) == ((("h", 9),), "pw", 2)
    config = from_client(redis.asyncio.Redis(unix_socket_path="/tmp/a.sock"))
    assert config is not None and config.addresses == ("/tmp/a.sock",)
    config = from_client(redis.asyncio.Redis(host="h", ssl=True))
    assert config is not None and config.tls is not None
    config = from_client(redis.asyncio.Redis.from_url("redis://h:9/1"))
    assert config is not None and (config.addresses, config.db) == ((("h", 9),), 1)


def test_from_sentinel_master_client() -> None:
    sentinel = redis.sentinel.Sentinel(
        [("s1", 26379), ("s2", 26380)],
        sentinel_kwargs={"username": "su", "password": "spw"},
    )
    client = sentinel.master_for("svc", username="u", password=WEIRD, db=2)
    config = from_client(client)
    assert config is not None
    assert config.kind == "sentinel"
    assert config.addresses == (("s1", 26379), ("s2", 26380))
    assert config.service == "svc"
    assert (config.username, config.password, config.db) == ("u", WEIRD, 2)
    assert (config.sentinel_username, config.sentinel_password) == ("su", "spw")
    assert config.describe() == "redis+sentinel://s1:26379,s2:26380/svc/2"
    assert WEIRD not in repr(config) and "spw" not in repr(config)


def test_from_sentinel_master_client_without_credentials() -> None:
    client = redis.sentinel.Sentinel([("s1", 26379)]).master_for("svc")
    config = from_client(client)
    assert config is not None
    assert (config.password, config.sentinel_password, config.db) == (None, None, 0)


def test_from_asyncio_sentinel_master_client() -> None:
    client = redis.asyncio.sentinel.Sentinel([("s1", 26379)]).master_for("svc", db=2)
    config = from_client(client)
    assert config is not None
    assert (config.kind, config.service, config.db) == ("sentinel", "svc", 2)


def test_from_sentinel_replica_client_is_refused() -> None:
    sentinel = redis.sentinel.Sentinel([("s1", 26379)])
    with pytest.raises(ValueError, match="master_for"):
        from_client(sentinel.slave_for("svc"))
    asentinel = redis.asyncio.sentinel.Sentinel([("s1", 26379)])
    with pytest.raises(ValueError, match="master_for"):
        from_client(asentinel.slave_for("svc"))


def test_foreign_and_unusual_clients_give_none(
    make: Callable[[Callable[[], Any]], Any],
) -> None:
    assert from_client(fakeredis.FakeRedis()) is None
    assert from_client(fakeredis.FakeAsyncRedis()) is None
    assert from_client(make(lambda: redis.Redis(decode_responses=True))) is None
    assert from_client(make(lambda: redis.Redis(protocol=3))) is None
    provider = redis.UsernamePasswordCredentialProvider("u", "p")
    assert from_client(make(lambda: redis.Redis(credential_provider=provider))) is None
    assert from_client(object()) is None
    assert from_client(None) is None


def test_custom_connection_class_gives_none(make: Callable[[Callable[[], Any]], Any]) -> None:
    class MyConnection(redis.Connection):
        pass

    pool = redis.ConnectionPool(connection_class=MyConnection, host="h")
    assert from_client(make(lambda: redis.Redis(connection_pool=pool))) is None


def test_resp2_protocol_is_fine(make: Callable[[Callable[[], Any]], Any]) -> None:
    assert from_client(make(lambda: redis.Redis(protocol=2))) is not None


def test_several_hosts_are_the_seeds_of_a_cluster() -> None:
    config = parse_url("rediss://u:pw@h1:7000,[::1]:7001,h3?min_replicas=1")
    assert config.kind == "cluster"
    assert config.addresses == (("h1", 7000), ("::1", 7001), ("h3", 6379))
    assert config.tls is not None and config.min_replicas == 1 and config.password == "pw"
    assert config.describe_cluster(3) == (
        "rediss://h1:7000,[::1]:7001,h3:6379/0 (cluster of 3 primaries)"
    )
