# Network endpoint handling (host + port) for command lines and configuration.  Drop-in
# replacement for ``katsdptelstate.endpoint``: the same strings give the same endpoints.
"""Parse and format network endpoints.

An endpoint is a host plus a port.  This module provides

- :class:`Endpoint`, a small host/port value type;
- :func:`endpoint_parser`, which makes a parser for one endpoint, e.g. ``host:7148``;
- :func:`endpoint_list_parser`, which makes a parser for a comma-separated list of endpoints
  in which ``addr+N`` stands for ``N + 1`` consecutive IPv4 addresses;
- :func:`endpoints_to_str`, which turns a list of endpoints back into such a list string.

The parsers are meant to be used as the ``type`` of an :mod:`argparse` option, so every
malformed input is reported with :exc:`ValueError`.

IPv6 addresses are written in square brackets (as in RFC 2732 URLs) so that the colons in the
address cannot be confused with the colon in front of the port: ``[::1]:7148``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["Endpoint", "endpoint_parser", "endpoint_list_parser", "endpoints_to_str"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_IPV4 = 0xFFFFFFFF


def _host_text(host: Any, errors: str = "strict") -> str:
    """Return `host` as text, decoding :class:`bytes` as UTF-8."""
    if isinstance(host, bytes):
        return host.decode("utf-8", errors)
    if isinstance(host, str):
        return host
    return str(host)


class Endpoint:
    """A network (e.g. TCP or UDP) endpoint: a host and a port.

    The host is normally a hostname or IP address as a :class:`str` and the port an
    :class:`int` (or ``None`` when no port is known), but neither is checked, so callers may
    use other conventions.

    Parameters
    ----------
    host : Any
        Hostname or IP address.  IPv6 addresses are stored without square brackets.
    port : Any
        Port number.

    Attributes
    ----------
    host : Any
        The host, as given.
    port : Any
        The port, as given.

    Notes
    -----
    Two endpoints are equal when both their hosts and their ports are equal, and equal
    endpoints hash the same.  Iterating over an endpoint yields ``host`` then ``port``, so
    ``tuple(endpoint)`` is an address that can be handed to :mod:`socket` functions.
    """

    def __init__(self, host: Any, port: Any) -> None:
        self.host = host
        self.port = port

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return bool(self.host == other.host and self.port == other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __str__(self) -> str:
        """Format as ``host:port``, or ``[host]:port`` when the host contains a colon (IPv6)."""
        host = _host_text(self.host, errors="backslashreplace")
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host!r}, {self.port!r})"

    def __iter__(self) -> Iterator[Any]:
        """Yield the host, then the port."""
        yield self.host
        yield self.port


def _parse_endpoint(text: str, default_port: Any) -> Endpoint:
    """Parse one ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port`` string.

    See :func:`endpoint_parser` for the rules.
    """
    # The port separator is the last colon, except that a colon inside a leading
    # ``[...]`` block belongs to the IPv6 address and cannot be the separator.
    search_from = 0
    if text.startswith("["):
        close = text.find("]")
        if close >= 0:
            search_from = close + 1
    colon = text.rfind(":", search_from)
    if colon >= 0:
        host = text[:colon]
        port = int(text[colon + 1 :])
    else:
        host = text
        port = default_port
    if len(host) >= 2 and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        # inet_pton gives the same answer as the socket layer that the address is destined
        # for (in particular it refuses ``%scope`` suffixes).
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError as exc:
            raise ValueError(f"invalid IPv6 address [{host}]") from exc
    return Endpoint(host, port)


def endpoint_parser(default_port: Any) -> Callable[[str], Endpoint]:
    """Make a function that parses a string into an :class:`Endpoint`.

    The accepted forms are ``host``, ``host:port``, ``[ipv6]`` and ``[ipv6]:port``.  The
    port is whatever follows the last colon (outside of a leading ``[...]``) and must be
    accepted by :class:`int`; when there is no port, `default_port` is used.  A host in square
    brackets must be a valid IPv6 address and is stored without the brackets.  Other hosts are
    not checked.

    Parameters
    ----------
    default_port : Any
        Port given to endpoints that do not specify one (often an :class:`int` or ``None``).

    Returns
    -------
    Callable[[str], Endpoint]
        The parser.  It is suitable as the ``type`` of an :mod:`argparse` option.

    Raises
    ------
    ValueError
        From the returned parser, if the port is not an integer or a bracketed host is not a
        valid IPv6 address.

    Examples
    --------
    >>> parse = endpoint_parser(7148)
    >>> parse("example.com")
    Endpoint('example.com', 7148)
    >>> parse("[::1]:8080")
    Endpoint('::1', 8080)
    """

    # The name is what argparse shows in its "invalid <name> value" messages.
    def endpoint(text: str) -> Endpoint:
        return _parse_endpoint(text, default_port)

    return endpoint


def _expand(endpoint: Endpoint) -> list[Endpoint]:
    """Expand an endpoint whose host is ``addr+N`` into ``N + 1`` consecutive IPv4 endpoints.

    An endpoint without a ``+`` in its host is returned on its own.
    """
    base, plus, count_text = endpoint.host.rpartition("+")
    if not plus:
        return [endpoint]
    count = int(count_text)
    if count < 0:
        raise ValueError(f"negative address count in {endpoint.host!r}")
    # inet_aton also accepts the classic short forms such as 127.1 or 0x7f.0.0.1.
    try:
        first = int.from_bytes(socket.inet_aton(base), "big")
    except OSError as exc:
        raise ValueError(f"{base!r} is not an IPv4 address") from exc
    if first + count > _MAX_IPV4:
        raise ValueError(f"address range {endpoint.host!r} goes past 255.255.255.255")
    return [
        Endpoint(str(ipaddress.IPv4Address(value)), endpoint.port)
        for value in range(first, first + count + 1)
    ]


def _check_single_port(endpoints: list[Endpoint]) -> None:
    """Raise :exc:`ValueError` unless `endpoints` is non-empty and uses only one port."""
    if not endpoints:
        raise ValueError("at least one endpoint is required")
    port = endpoints[0].port
    if any(endpoint.port != port for endpoint in endpoints):
        raise ValueError("all endpoints must have the same port")


def endpoint_list_parser(
    default_port: Any, single_port: bool = False
) -> Callable[[str], list[Endpoint]]:
    """Make a function that parses a comma-separated list of endpoints.

    Each item, with surrounding whitespace removed, has one of the forms accepted by
    :func:`endpoint_parser`.  In addition, the host of an item may be an IPv4 address followed
    by ``+N`` for a non-negative integer ``N``; the item then stands for ``N + 1`` endpoints
    with consecutive addresses, starting at the one given, all with the item's port.  For
    example ``10.0.0.255+2:7148`` yields ``10.0.0.255:7148``, ``10.0.1.0:7148`` and
    ``10.0.1.1:7148``.

    Parameters
    ----------
    default_port : Any
        Port given to items that do not specify one.
    single_port : bool
        If true, the parser also insists that all endpoints share a single port (and that there
        is at least one endpoint), so that the caller can rely on one port for the whole list.

    Returns
    -------
    Callable[[str], list[Endpoint]]
        The parser, returning the endpoints in the order written.  It is suitable as the
        ``type`` of an :mod:`argparse` option.

    Raises
    ------
    ValueError
        From the returned parser, if an item is rejected by :func:`endpoint_parser`, if ``+N``
        is not a non-negative integer, follows something other than an IPv4 address or runs
        past ``255.255.255.255``, or if `single_port` is true and the ports differ.

    Notes
    -----
    Splitting is done on every comma, so an empty string or an empty item gives an endpoint
    with an empty host rather than no endpoint.
    """

    def endpoint_list(text: str) -> list[Endpoint]:
        endpoints: list[Endpoint] = []
        for item in text.split(","):
            endpoints.extend(_expand(_parse_endpoint(item.strip(), default_port)))
        if single_port:
            _check_single_port(endpoints)
        return endpoints

    return endpoint_list


def _to_ip_address(host: Any) -> _IPAddress | None:
    """Interpret `host` as an IPv4 or IPv6 address, or return ``None`` if it is neither."""
    for address_type in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        try:
            return address_type(host)
        except ipaddress.AddressValueError:
            pass
    return None


def _format_ip_runs(endpoints: list[tuple[_IPAddress, Any]]) -> list[str]:
    """Format (address, port) pairs of one IP version, merging consecutive addresses.

    The pairs are ordered by port (no port first) and then address, and each run of
    consecutive addresses with the same port is written as ``addr+N``.
    """
    endpoints = sorted(endpoints, key=lambda pair: (pair[1] is not None, pair[1], pair[0]))
    # Each run is [first address, number of addresses, port].
    runs: list[list[Any]] = []
    for address, port in endpoints:
        if runs:
            first, length, run_port = runs[-1]
            # Addresses with a zone (%scope) suffix are never a continuation of a run.
            if (
                run_port == port
                and getattr(address, "scope_id", None) is None
                and int(first) + length == int(address)
            ):
                runs[-1][1] += 1
                continue
        runs.append([address, 1, port])
    parts = []
    for first, length, port in runs:
        text = first.compressed
        if first.version == 6:
            text = f"[{text}]"
        if length > 1:
            text += f"+{length - 1}"
        if port is not None:
            text += f":{port}"
        parts.append(text)
    return parts


def endpoints_to_str(endpoints: Iterable[Endpoint]) -> str:
    """Write endpoints as a compact string that :func:`endpoint_list_parser` reads back.

    IPv4 endpoints come first, then IPv6 endpoints, each sorted by port and then address, with
    runs of consecutive addresses that share a port abbreviated to ``addr+N``.  Any other
    endpoints (e.g. hostnames) follow in their original order.  An endpoint whose port is
    ``None`` is written without a port.

    Parameters
    ----------
    endpoints : Iterable[Endpoint]
        Endpoints to describe.  A :class:`bytes` host is treated as UTF-8 text.

    Returns
    -------
    str
        Comma-separated description, e.g. ``10.0.0.1+3:7148,[::1]:7148,example.com:80``.

    Notes
    -----
    Parsing the result with ``endpoint_list_parser(None)`` gives back the same endpoints,
    reordered as described above, provided that the IP addresses are written in their
    canonical (compressed) form, that the other hosts are free of ``,``, ``:``, ``+``,
    brackets and surrounding whitespace, and that no two IPv6 endpoints with the same port
    have consecutive addresses: such runs are written as ``[addr]+N``, which
    :func:`endpoint_list_parser` rejects because it only expands IPv4 runs (both behaviours
    match ``katsdptelstate``).  An empty `endpoints` gives an empty string, which does not
    round-trip either.

    Examples
    --------
    >>> endpoints_to_str([Endpoint("10.0.0.2", 80), Endpoint("10.0.0.1", 80)])
    '10.0.0.1+1:80'
    """
    ipv4: list[tuple[_IPAddress, Any]] = []
    ipv6: list[tuple[_IPAddress, Any]] = []
    others: list[str] = []
    for endpoint in endpoints:
        host = endpoint.host.decode("utf-8") if isinstance(endpoint.host, bytes) else endpoint.host
        address = _to_ip_address(host)
        if address is None:
            text = _host_text(host)
            if endpoint.port is not None:
                text += f":{endpoint.port}"
            others.append(text)
        elif address.version == 4:
            ipv4.append((address, endpoint.port))
        else:
            ipv6.append((address, endpoint.port))
    return ",".join(_format_ip_runs(ipv4) + _format_ip_runs(ipv6) + others)
