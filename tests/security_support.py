"""Helpers for tests/test_security.py: certificates, hostile pickles, leak and write checks."""

from __future__ import annotations

import logging
import pickle
import shutil
import subprocess
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    """Certificates and keys made for one test session (PEM files)."""

    dir: Path
    ca: Path  # the CA that signs the server and client certificates
    rogue_ca: Path  # another CA, trusted by nobody
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path  # signed by the rogue CA
    rogue_client_key: Path


_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {name}
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_pki(directory: Path) -> Pki:
    """Make a CA, a server and a client certificate (and rogue ones) with ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed for the TLS tests", pytrace=False)
    ec_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def run(*args: str) -> None:
        done = subprocess.run(
            [openssl, *args], cwd=directory, capture_output=True, text=True, timeout=60
        )
        if done.returncode:
            pytest.fail(f"openssl {' '.join(args)} failed:\n{done.stderr}", pytrace=False)

    for ca in ("ca", "rogue-ca"):
        (directory / f"{ca}.cnf").write_text(_CA_CONFIG.format(name=f"telstate test {ca}"))
        # fmt: off
        run("req", "-x509", "-new", *ec_key, "-config", f"{ca}.cnf", "-extensions", "v3_ca",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2")
        # fmt: on

    def leaf(name: str, ca: str, serial: int, extensions: str) -> None:
        (directory / f"{name}.ext").write_text(_LEAF_EXTENSIONS + extensions)
        run("req", "-new", *ec_key, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")  # fmt: skip
        # fmt: off
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt")
        # fmt: on

    server_ext = "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n"
    leaf("server", "ca", 1, server_ext)
    leaf("client", "ca", 2, "extendedKeyUsage = clientAuth\n")
    leaf("rogue-client", "rogue-ca", 3, "extendedKeyUsage = clientAuth\n")
    d = directory
    return Pki(
        d,
        d / "ca.crt",
        d / "rogue-ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
        d / "rogue-client.crt",
        d / "rogue-client.key",
    )


def tls_server_args(pki: Pki, port: int, auth_clients: str) -> tuple[str, ...]:
    """redis-server options for TLS only on `port` (the Unix socket stays plain)."""
    # fmt: off
    return (
        "--tls-port", str(port),
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", auth_clients,
    )
    # fmt: on


# --------------------------------------------------------------------------- credentials


def userinfo(user: str, password: str) -> str:
    """``user:password`` as it goes into a URL (percent-encoded)."""
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def secret_forms(password: str) -> list[str]:
    """The ways a password could show up in text: as is, URL-encoded, as a bytes repr."""
    return sorted({password, quote(password, safe=""), repr(password.encode())[2:-1]})


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows: its traceback with the whole cause/context chain,
    and the str, repr and args of every exception in the chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item), repr(item.args)]
        stack += [item.__cause__, item.__context__]
    return texts


def log_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    """Messages, raw arguments and formatted exceptions of log records."""
    formatter = logging.Formatter()
    texts: list[str] = []
    for record in records:
        texts += [record.getMessage(), repr(record.args), str(record.msg)]
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
    return texts


def assert_no_secret(texts: Iterable[str], password: str) -> None:
    forms = secret_forms(password)
    for text in texts:
        for form in forms:
            assert form not in text, f"the password leaked into: {text!r}"


# --------------------------------------------------------------------------- writes


#: Commands a test's own checks may run on the server while "nothing" happens.
ADMIN_COMMANDS = frozenset(
    {"info", "config|resetstat", "dbsize", "ping", "client|setinfo", "hello", "auth"}
)


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls of each command since the last CONFIG RESETSTAT, from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(info["calls"]) for name, info in stats.items()}


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the database with its DUMP, to prove that nothing changed."""
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}  # type: ignore[misc]


# --------------------------------------------------------------------------- hostile pickles


class RunsCode:
    """Pickles into a payload that, when unpickled, runs code: it creates `marker`.

    The payload names only ``builtins.exec``, so any process can unpickle it.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def hostile_pickles(marker: Path) -> dict[str, bytes]:
    """Code-running pickles in protocols 0 (text, starts with 'c'), 2 and 5 (start 0x80)."""
    return {f"protocol{p}": pickle.dumps(RunsCode(marker), protocol=p) for p in (0, 2, 5)}
