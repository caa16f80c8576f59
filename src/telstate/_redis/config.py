"""Where a Redis deployment is and how to reach it (no I/O).

A :class:`ServerConfig` says everything a driver needs to open a connection and
introduce itself, and is made from a URL or from a redis-py client:

==========================================================  ========================
``redis://[user:password@]host[:port][/db]``                one server (TCP)
``rediss://...``                                            the same over TLS
``unix://[user:password@]/path/to/redis.sock[?db=N]``       one server (Unix socket)
``redis+sentinel://[user:password@]h1[:p1],h2[:p2]/SERVICE[/db]``
                                                            the primary of SERVICE, as
                                                            the sentinels say (port 26379)
``rediss+sentinel://...``                                   the same over TLS
==========================================================  ========================

The credentials in the URL are those of the data servers; the sentinels' own are
the query parameters ``sentinel_username`` and ``sentinel_password``.  Other query
parameters: ``db``, ``username``, ``password``, ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs`` (``required``, ``optional``, ``none``),
``ssl_check_hostname``, ``socket_timeout``, ``socket_connect_timeout``,
``retry_window``, ``min_replicas`` and ``client_name``.  An unknown parameter is an error rather
than silently ignored.  Passwords never appear in a config's repr or in
:meth:`ServerConfig.describe`.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "DEFAULT_PORT",
    "SENTINEL_PORT",
    "Address",
    "ServerConfig",
    "TlsOptions",
    "describe_address",
    "from_client",
    "parse_url",
]

DEFAULT_PORT = 6379
SENTINEL_PORT = 26379

#: (host, port) of a TCP server, or the path of a Unix socket.
Address = tuple[str, int] | str


def describe_address(address: Address) -> str:
    """``host:port`` (``[v6]:port``) or ``unix://path``."""
    if isinstance(address, str):
        return f"unix://{address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class TlsOptions:
    """How to set up TLS (the ``ssl_*`` options of redis-py and of URLs)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: Literal["required", "optional", "none"] = "required"
    check_hostname: bool | None = None
    ca_data: str | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context for these options (certificates are read now)."""
        context = ssl.create_default_context(cafile=self.ca_certs, cadata=self.ca_data)
        check = self.check_hostname
        if self.cert_reqs == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = check if check is not None else self.cert_reqs == "required"
            if self.cert_reqs == "optional":
                context.verify_mode = ssl.CERT_OPTIONAL
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


@dataclass(frozen=True)
class ServerConfig:
    """A Redis deployment: one server, or a service behind Redis Sentinel.

    Attributes
    ----------
    kind
        ``'server'`` (talk to `addresses[0]`, which may turn out to be a node of a
        cluster), ``'sentinel'`` (ask the sentinels at `addresses` for the primary of
        `service`) or ``'cluster'`` (`addresses` are nodes of a Redis Cluster).
    addresses
        The server, the sentinels, or some nodes of the cluster (seeds).
    service
        The sentinels' name for the deployment.
    db
        Database number on the data servers.
    username, password
        Credentials on the data servers (None: none).
    sentinel_username, sentinel_password
        Credentials on the sentinels.
    tls
        TLS options for the data servers, or None for plain connections.
    sentinel_tls
        The same for the sentinels (a ``rediss+sentinel://`` URL: both alike).
    connect_timeout, socket_timeout
        Seconds to connect, and to wait for a reply before the connection is deemed lost.
    retry_window
        Seconds a call keeps retrying after a connection failure (Sentinel adds the
        sentinels' down-after time, so a failover fits in).
    min_replicas
        Writes return once this many replicas have them too (``WAIT``); 0: don't wait.
    """

    kind: Literal["server", "sentinel", "cluster"]
    addresses: tuple[Address, ...]
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: TlsOptions | None = None
    sentinel_tls: TlsOptions | None = None
    connect_timeout: float = 3.0
    socket_timeout: float = 5.0
    retry_window: float = 5.0
    min_replicas: int = 0
    #: Name of our connections (CLIENT SETNAME), as ``CLIENT LIST`` shows them.
    client_name: str | None = None
    #: How to name the deployment in messages, if not from its address (foreign clients).
    label: str | None = None

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("a Redis deployment needs at least one address")
        if self.kind == "sentinel" and not self.service:
            raise ValueError(
                "a Sentinel URL needs the service name: redis+sentinel://HOSTS/SERVICE"
            )
        if self.db < 0:
            raise ValueError(f"bad database number {self.db}")
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, not {self.min_replicas}")
        if self.retry_window < 0 or self.connect_timeout <= 0 or self.socket_timeout <= 0:
            raise ValueError("timeouts must be positive")

    def describe(self, primary: Address | None = None) -> str:
        """Where this is, for messages and reprs (never with a password)."""
        if self.label is not None:
            return self.label
        scheme = "rediss" if self.tls is not None else "redis"
        if self.kind == "sentinel":
            hosts = ",".join(describe_address(address) for address in self.addresses)
            text = f"{scheme}+sentinel://{hosts}/{self.service}"
            text += f"/{self.db}" if self.db else ""
            if primary is not None:
                text += f" (primary {describe_address(primary)})"
            return text
        address = self.addresses[0]
        if isinstance(address, str):
            return f"unix://{address}" + (f"?db={self.db}" if self.db else "")
        return f"{scheme}://{describe_address(address)}/{self.db}"

    def describe_cluster(self, primaries: int) -> str:
        """Where a cluster is (its seeds), for messages and reprs."""
        scheme = "rediss" if self.tls is not None else "redis"
        hosts = ",".join(describe_address(address) for address in self.addresses)
        return f"{scheme}://{hosts}/{self.db} (cluster of {primaries} primaries)"

    def replace(self, **changes: Any) -> ServerConfig:
        """A copy with some fields changed (and checked)."""
        return dataclasses.replace(self, **changes)


# URL query parameters: name -> (ServerConfig field or tls option, parser)
def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _cert_reqs(text: Any) -> str:
    if isinstance(text, ssl.VerifyMode):  # as redis-py accepts it
        return {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional"}.get(text, "required")
    lowered = str(text).lower().removeprefix("cert_")
    if lowered not in ("required", "optional", "none"):
        raise ValueError(f"ssl_cert_reqs must be required, optional or none, not {text!r}")
    return lowered


_OPTIONS: dict[str, Any] = {
    "db": int,
    "username": str,
    "password": str,
    "sentinel_username": str,
    "sentinel_password": str,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "retry_window": float,
    "min_replicas": int,
    "client_name": str,
}
_TLS_OPTIONS: dict[str, Any] = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _bool,
    "ssl_ca_data": str,
}


def _split_hosts(netloc: str, default_port: int) -> tuple[Address, ...]:
    """The addresses of ``host[:port],...`` (IPv6 hosts in brackets).

    Errors name the position of a bad host, never its text: a password with an
    unencoded ``@`` or ``/`` ends up here, and must not be repeated.
    """
    addresses: list[Address] = []
    for position, item in enumerate(netloc.split(","), 1):
        item = item.strip()
        where = f"host {position} of the URL" if "," in netloc else "the URL's host"
        if not item:
            raise ValueError(f"empty host: {where} is empty")
        if item.startswith("["):  # [v6]:port
            host, closed, rest = item[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                raise ValueError(f"{where} has a bad IPv6 address: write it [addr]:port")
            port_text = rest.removeprefix(":")
        elif item.count(":") > 1:
            raise ValueError(f"{where} has several ':': write an IPv6 address [addr]:port")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"{where} has no host name")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(
                f"bad port in {where} (is a password in it not percent-encoded?)"
            ) from None
        if not 0 < port < 65536:
            raise ValueError(f"bad port: {where} has a port out of range")
        addresses.append((unquote(host), port))
    return tuple(addresses)


def host_text(address: Address) -> str:
    """``host:port`` as URLs write it (IPv6 in brackets)."""
    if isinstance(address, str):
        return address
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_url(url: str, **options: Any) -> ServerConfig:
    """The deployment a URL names (see the module notes), with `options` overriding it.

    Raises
    ------
    ValueError
        If the URL or an option is not understood (the message never repeats a password).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r}: use redis://, rediss://, unix:// "
            "or redis+sentinel://"
        )
    values: dict[str, Any] = {}
    tls: dict[str, Any] = {}
    query = parse_qsl(parts.query, keep_blank_values=True)
    for name, text in [*query, *((k, v) for k, v in options.items() if v is not None)]:
        if name in _OPTIONS:
            parser, target = _OPTIONS[name], values
        elif name in _TLS_OPTIONS:
            parser, target = _TLS_OPTIONS[name], tls
        else:
            raise ValueError(f"unknown Redis URL parameter or option {name!r}")
        if (isinstance(text, str) and parser is not str) or name == "ssl_cert_reqs":
            try:
                target[name] = parser(text)
            except ValueError:
                raise ValueError(f"bad value for {name!r} in the Redis URL") from None
        else:
            target[name] = text
    # userinfo, taken apart by hand: urlsplit cannot split a netloc holding several hosts
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        values.setdefault("username", unquote(user) or None)
        if has_password and password:  # an empty password is none, as in redis-py
            values.setdefault("password", unquote(password))
    path = unquote(parts.path)
    kind: Literal["server", "sentinel", "cluster"] = "server"
    service = ""
    if scheme == "unix":
        if hosts:
            raise ValueError("a unix:// URL has no host: unix:///path/to/redis.sock")
        if not path:
            raise ValueError("a unix:// URL needs the socket's path")
        addresses: tuple[Address, ...] = (path,)
    elif scheme.endswith("+sentinel"):
        kind = "sentinel"
        addresses = _split_hosts(hosts, SENTINEL_PORT)
        segments = [segment for segment in path.split("/") if segment]
        if not segments or len(segments) > 2:
            raise ValueError("a Sentinel URL is redis+sentinel://HOSTS/SERVICE[/DB]")
        service = segments[0]
        if len(segments) == 2:
            values.setdefault("db", _db(segments[1]))
    else:
        addresses = _split_hosts(hosts, DEFAULT_PORT)
        if len(addresses) > 1:
            kind = "cluster"  # seeds: some nodes of a cluster
        segment = path.strip("/")
        if segment:
            values.setdefault("db", _db(segment))
    use_tls = scheme.startswith("rediss") or bool(tls)
    return ServerConfig(
        kind=kind,
        addresses=addresses,
        service=service,
        db=values.get("db", 0),
        username=values.get("username") or None,
        password=values.get("password") or None,
        sentinel_username=values.get("sentinel_username") or None,
        sentinel_password=values.get("sentinel_password") or None,
        tls=_tls(tls) if use_tls else None,
        sentinel_tls=_tls(tls) if use_tls and kind == "sentinel" else None,
        connect_timeout=values.get("socket_connect_timeout", 3.0),
        socket_timeout=values.get("socket_timeout", 5.0),
        retry_window=values.get("retry_window", 5.0),
        min_replicas=values.get("min_replicas", 0),
        client_name=values.get("client_name") or None,
    )


def _db(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad database number {text!r} in the Redis URL") from None


def _tls(options: Mapping[str, Any]) -> TlsOptions:
    return TlsOptions(
        ca_certs=options.get("ssl_ca_certs"),
        certfile=options.get("ssl_certfile"),
        keyfile=options.get("ssl_keyfile"),
        cert_reqs=options.get("ssl_cert_reqs", "required"),
        check_hostname=options.get("ssl_check_hostname"),
        ca_data=options.get("ssl_ca_data"),
    )


# ------------------------------------------------------------------- redis-py clients

_PLAIN = ("Connection", "SSLConnection", "UnixDomainSocketConnection")
_SENTINEL = ("SentinelManagedConnection", "SentinelManagedSSLConnection")


def from_client(client: Any, **options: Any) -> ServerConfig | None:
    """The deployment a redis-py client (sync or asyncio) talks to.

    None if the client is not a plain one that telstate can reproduce with its own
    connections (fakeredis, custom connection classes, credential providers, RESP3,
    decoded responses...): such clients are driven through their own connections.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None or type(client).__module__.split(".")[0] != "redis":
        return None
    kwargs: dict[str, Any] = dict(getattr(pool, "connection_kwargs", {}))
    connection_class = getattr(pool, "connection_class", None)
    class_name = getattr(connection_class, "__name__", "")
    if getattr(connection_class, "__module__", "").split(".")[0] != "redis":
        return None
    if kwargs.get("credential_provider") is not None or kwargs.get("decode_responses"):
        return None
    if kwargs.get("protocol") not in (None, 2, "2"):
        return None
    tls = _client_tls(kwargs, class_name)
    common: dict[str, Any] = {
        "db": int(kwargs.get("db") or 0),
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "tls": tls,
        "connect_timeout": float(kwargs.get("socket_connect_timeout") or 3.0),
        "socket_timeout": float(kwargs.get("socket_timeout") or 5.0),
        "client_name": kwargs.get("client_name"),
        **options,
    }
    if class_name in _PLAIN:
        if "path" in kwargs:
            address: Address = str(kwargs["path"])
        else:
            address = (str(kwargs.get("host") or "localhost"), int(kwargs.get("port") or 6379))
        return ServerConfig(kind="server", addresses=(address,), **common)
    if class_name in _SENTINEL:
        if not getattr(pool, "is_master", True):
            raise ValueError("a Sentinel client for replicas cannot write: use master_for()")
        manager = pool.sentinel_manager
        sentinels: list[Address] = []
        sentinel_kwargs: dict[str, Any] = {}
        sentinel_class = ""
        for sentinel in manager.sentinels:
            sentinel_pool = sentinel.connection_pool
            sentinel_kwargs = sentinel_pool.connection_kwargs
            sentinel_class = getattr(sentinel_pool.connection_class, "__name__", "")
            sentinels.append((str(sentinel_kwargs["host"]), int(sentinel_kwargs["port"])))
        return ServerConfig(
            kind="sentinel",
            addresses=tuple(sentinels),
            service=str(pool.service_name),
            sentinel_username=sentinel_kwargs.get("username"),
            sentinel_password=sentinel_kwargs.get("password"),
            sentinel_tls=_client_tls(sentinel_kwargs, sentinel_class),
            **common,
        )
    return None


def _client_tls(kwargs: Mapping[str, Any], class_name: str) -> TlsOptions | None:
    if "SSL" not in class_name and not kwargs.get("ssl"):
        return None
    reqs = kwargs.get("ssl_cert_reqs", "required")
    return TlsOptions(
        ca_certs=kwargs.get("ssl_ca_certs"),
        certfile=kwargs.get("ssl_certfile"),
        keyfile=kwargs.get("ssl_keyfile"),
        cert_reqs=_cert_reqs(reqs or "none"),  # type: ignore[arg-type]
        check_hostname=kwargs.get("ssl_check_hostname"),
        ca_data=kwargs.get("ssl_ca_data"),
    )
