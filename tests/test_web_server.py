"""``telstate serve``'s HTTP endpoints, through aiohttp's test client (no browser)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from telstate import TelescopeState
from telstate._demo import build_demo
from telstate.cli import main
from telstate.web._listing import key_id
from telstate.web._server import CSP, Site, make_app

XSS = "<script>window.pwned=1</script>"


def _state() -> TelescopeState:
    ts = TelescopeState()
    ts.set("sdp_l0_n_chans", 4096)
    ts.set("sdp_l0_stream_type", "sdp.vis")
    ts.set(XSS, "<img src=x onerror=window.pwned=2>")
    ts.set("big", "x" * 100_000)
    for i in range(50):
        ts.add("m000_activity", "track" if i % 10 < 5 else "slew", ts=1e9 + i)
        ts.add("m000_temp", float(i) if i != 7 else float("nan"), ts=1e9 + i)
    ts.set_indexed("cal_product_G", 1e9, np.ones(3))
    ts.backend.set_immutable(b"pickled", pickle.dumps({"a": 1}, protocol=2))
    return ts


def _run(test: Callable[[TestClient[Any, Any]], Awaitable[None]], ts: TelescopeState) -> None:
    async def main() -> None:
        app = make_app(Site(ts, "test state"), frozenset({"127.0.0.1", "localhost"}))
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            await test(client)
        finally:
            await client.close()

    asyncio.run(main())


def _host(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Host": "127.0.0.1"}


def test_page_and_headers() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        page = await client.get("/", headers=_host(client))
        assert page.status == 200
        body = await page.text()
        assert "<script" in body and "/static/app.js" in body
        assert "http" not in body.replace("http-equiv", "")  # nothing loaded from elsewhere
        assert page.headers["Content-Security-Policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        for name in ["app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"]:
            static = await client.get(f"/static/{name}", headers=_host(client))
            assert static.status == 200 and len(await static.read()) > 100
        assert (await client.get("/static/../x", headers=_host(client))).status == 404

    _run(test, _state())


def test_read_only_and_host_check() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        for method in ["POST", "PUT", "DELETE", "PATCH"]:
            for path in ["/", "/api/keys", "/api/value"]:
                response = await client.request(method, path, headers=_host(client))
                assert response.status == 405, (method, path)
        evil = await client.get("/api/keys", headers={"Host": "evil.example:80"})
        assert evil.status == 421

    _run(test, _state())


def test_keys_listing_and_filter() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        listing = await (await client.get("/api/keys", headers=_host(client))).json()
        assert listing["total"] == listing["shown"] == 8
        kinds = [group["kind"] for group in listing["groups"]]
        assert kinds == ["global", "stream", "antenna"]
        names = [row["name"] for group in listing["groups"] for row in group["keys"]]
        assert XSS in names  # as text: the page inserts it with textContent
        glob = await client.get("/api/keys", params={"filter": "m000_*"}, headers=_host(client))
        assert [r["name"] for g in (await glob.json())["groups"] for r in g["keys"]] == [
            "m000_activity",
            "m000_temp",
        ]
        sub = await client.get("/api/keys", params={"filter": "CHANS"}, headers=_host(client))
        assert (await sub.json())["shown"] == 1

    _run(test, _state())


async def _get(client: TestClient[Any, Any], path: str, **params: Any) -> tuple[int, Any]:
    response = await client.get(f"/api/{path}", params=params, headers=_host(client))
    return response.status, await response.json()


def test_values() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        status, data = await _get(client, "value", key=key_id(XSS))
        assert status == 200 and data["type"] == "immutable"
        assert data["value"]["text"] == "'<img src=x onerror=window.pwned=2>'"
        status, data = await _get(client, "value", key=key_id("big"))
        assert data["value"]["more"] > 90_000  # cut, with a note
        status, data = await _get(client, "value", key=key_id("cal_product_G"))
        assert data["type"] == "indexed" and data["value"]["t"] == "dict"
        status, data = await _get(client, "value", key=key_id("m000_temp"))
        assert data["type"] == "sensor" and data["count"] == 50 and data["numeric"]
        assert data["time"] == "2001-09-09T01:47:29.000Z"
        status, data = await _get(client, "value", key=key_id("pickled"))
        assert status == 422 and "pickle" in data["error"].lower()
        status, data = await _get(client, "value", key=key_id("absent"))
        assert status == 404 and "not found" in data["error"]
        status, data = await _get(client, "value", key="zz")
        assert status == 400

    _run(test, _state())


def test_series_samples_and_downloads() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        status, data = await _get(client, "series", key=key_id("m000_temp"), buckets=5)
        assert status == 200 and data["kind"] == "numeric" and data["count"] == 50
        assert len(data["t"]) <= 20  # decimated
        status, data = await _get(client, "series", key=key_id("m000_temp"), buckets=100)
        assert len(data["t"]) == 50 and data["v"][7] is None  # raw; NaN is a gap
        status, data = await _get(client, "series", key=key_id("m000_activity"))
        assert data["kind"] == "state" and data["v"][:2] == ["track", "slew"]
        status, data = await _get(client, "series", key=key_id("sdp_l0_n_chans"))
        assert status == 400 and "not a sensor" in data["error"]
        status, data = await _get(client, "series", key=key_id("m000_temp"), buckets=10**6)
        assert status == 400
        window = {"st": 1e9 + 10, "et": 1e9 + 19}
        status, data = await _get(client, "samples", key=key_id("m000_temp"), limit=3, **window)
        assert data["count"] == 10 and data["cut"] and len(data["rows"]) == 3
        assert data["rows"][0] == ["2001-09-09T01:46:50.000Z", "10.0"]
        csv = await client.get(
            "/api/download",
            params={"key": key_id("m000_temp"), "format": "csv", **window},
            headers=_host(client),
        )
        assert csv.headers["Content-Disposition"] == 'attachment; filename="m000_temp.csv"'
        lines = (await csv.text()).splitlines()
        assert lines[0] == "timestamp,time,value" and len(lines) == 11
        raw = await client.get(
            "/api/download",
            params={"key": key_id("m000_temp"), "format": "json"},
            headers=_host(client),
        )
        rows = json.loads(await raw.text())
        assert len(rows) == 50 and rows[7]["value"] == "nan"

    _run(test, _state())


def test_events_of_a_static_source() -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        response = await client.get(
            "/api/events", params={"key": key_id("m000_temp")}, headers=_host(client)
        )
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = [await asyncio.wait_for(response.content.readline(), 10) for _ in range(4)]
        assert lines[2:] == [b"event: status\n", b'data: {"status": "static"}\n']
        response.close()

    ts = TelescopeState()
    build_demo(ts, n_antennas=1, duration=60)
    _run(test, ts)


# --------------------------------------------------------------------------- the command


def test_serve_refuses_bad_ports_and_a_missing_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["serve", "demo", "--port", "70000"]) == 1
    assert "--port: 70000 is not a port number" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "demo", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if the web extra were absent
    assert main(["serve", "demo"]) == 1
    assert "pip install 'telstate[web]'" in capsys.readouterr().err


def test_serve_warns_when_not_on_loopback_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "telstate",
        "serve",
        "demo",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            warning = process.stderr.readline()
            assert "warning: serving on 0.0.0.0" in warning and "no password" in warning
            started = process.stdout.readline()
            assert started.startswith("serving demo on http://0.0.0.0:")
            address = started.split(" on ", 1)[1].split(" ", 1)[0]
            port = int(address.rsplit(":", 1)[1].rstrip("/"))
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.")
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
