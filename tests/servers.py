"""Private redis-server processes for tests (never the shared server on port 6379).

Each server gets its own temporary directory, a Unix socket and/or a free TCP
port on 127.0.0.1, and ``--save ''`` so it writes nothing unless asked.  Tests
that kill or restart a server make their own RedisServer; give it
:data:`DURABLE_ARGS` when acknowledged writes must survive the kill.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis

#: redis-server options under which every acknowledged write survives SIGKILL: the
#: append-only file, fsynced before the server sends any reply.  :meth:`RedisServer.start`
#: after :meth:`RedisServer.kill` loads it back (same directory, socket and port).
DURABLE_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process.

    Parameters
    ----------
    tcp
        Also listen on a free TCP port of 127.0.0.1 (default: Unix socket only).
    args
        Extra command-line arguments for redis-server.
    preload
        An RDB file for the server to load at start (copied into its directory
        under the ``--dbfilename`` given in `args`, default dump.rdb).
    """

    def __init__(
        self, tcp: bool = False, args: tuple[str, ...] = (), preload: Path | None = None
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(
                "redis-server is not on PATH: install it (apt-get install redis-server); "
                "bash .ci/run does so",
                pytrace=False,
            )
        self.exe = exe
        self._tmp = tempfile.TemporaryDirectory(prefix="telstate-redis-")
        self.dir = Path(self._tmp.name)
        self.socket_path = str(self.dir / "redis.sock")
        self.port = free_port() if tcp else 0
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        if preload is not None:
            name = args[args.index("--dbfilename") + 1] if "--dbfilename" in args else "dump.rdb"
            shutil.copy(preload, self.dir / name)
        self.start()

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}"
        return f"unix://{self.socket_path}"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, **kwargs)

    def start(self) -> None:
        # fmt: off
        command = [
            self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.socket_path, "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), *self.args,
        ]
        # fmt: on
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        client = self.client()
        deadline = time.monotonic() + 10.0
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"redis-server exited with status {self.proc.returncode}:\n"
                        + (self.dir / "redis.log").read_text(errors="replace"),
                        pytrace=False,
                    )
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop(kill=True)
                    pytest.fail("redis-server did not answer PING within 10 s", pytrace=False)
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final save); :meth:`start` brings it back."""
        self.stop(kill=True)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()
