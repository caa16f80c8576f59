"""``telstate serve`` in a real browser: headless Debian chromium against the served page.

On the demo state (the key list, the filter, plots) and on a live private
redis-server (keys named like markup render as text; a write made while the
page is open appears on it; the page says "disconnected" while the server is
down and recovers by itself).  With TELSTATE_UPDATE_SCREENSHOT=1 the demo test
also rewrites the README's screenshot, docs/serve-example.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telstate import TelescopeState

from .servers import DURABLE_ARGS, RedisServer
from .web_browser import browser, key_rows, open_key, plots, serving, wait_for

ROOT = Path(__file__).resolve().parent.parent
XSS_KEY = "<script>window.pwned=1</script>"
XSS_VALUE = "<img src=x onerror=window.pwned=2>"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    made = browser()
    try:
        yield made
    finally:
        made.quit()


def _filter(driver: Any, text: str) -> None:
    box = driver.find_element("id", "filter")
    driver.execute_script("arguments[0].value = '';", box)  # clear() fires no input event
    box.send_keys(text or " \b")


def _shown(driver: Any) -> int:
    return int(driver.find_element("id", "count").text.split()[0])


def test_demo_keys_filter_and_plots(driver: Any, tmp_path: Path) -> None:
    with serving("demo") as url:
        driver.get(url)
        wait_for(lambda: len(key_rows(driver)) > 80, "the key list")
        assert driver.find_element("id", "status").text == "static"
        groups = [s.text for s in driver.find_elements("css selector", "details > summary")]
        assert groups[0].startswith("global") and any(g.startswith("antenna m000") for g in groups)
        total = _shown(driver)
        _filter(driver, "m0*_activity")  # a glob
        wait_for(lambda: _shown(driver) == 16, "the glob filter")
        assert sorted(key_rows(driver)) == [f"m{i:03d}_activity" for i in range(16)]
        _filter(driver, "ACTIVITY")  # a substring, any case
        wait_for(lambda: _shown(driver) == 17, "the substring filter")
        _filter(driver, "")
        wait_for(lambda: _shown(driver) == total, "no filter")

        open_key(driver, "m000_pos_actual_scan_azim")
        wait_for(lambda: plots(driver), "a plot")
        (plot,) = plots(driver)
        assert plot["kind"] == "numeric" and int(plot["points"]) == 600 and plot["canvas"]
        wait_for(
            lambda: (
                "600 samples in view" in driver.find_element("id", "samples-note").text
                or "of 600 samples" in driver.find_element("id", "samples-note").text
            ),
            "samples",
        )
        assert "/api/download?" in driver.find_element("id", "csv").get_attribute("href")
        key_rows(driver)["m000_activity"].find_element("css selector", "button.add").click()
        wait_for(lambda: len(plots(driver)) == 2, "the state bands")
        assert plots(driver)[1]["kind"] == "state"
        # zoom (as a drag does): the window is fetched again, with fewer samples
        drawn = int(driver.execute_script("return window.telstateProbe.plotsDrawn"))
        driver.execute_script(
            "const u = document.querySelector('#plots .plot');document.getElementById('plots');"
        )
        driver.find_element("xpath", "//button[text()='zoom out']").click()
        wait_for(
            lambda: driver.execute_script("return window.telstateProbe.plotsDrawn") > drawn,
            "the plot redrawn after zooming",
        )
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("TELSTATE_UPDATE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "serve-example.png")

        open_key(driver, "sdp_config")
        value = driver.find_element("id", "value").text
        assert "'outputs'" in value


@pytest.fixture
def live_server() -> Iterator[RedisServer]:
    server = RedisServer(args=DURABLE_ARGS)  # its data survives a restart
    try:
        yield server
    finally:
        server.close()


def test_markup_in_names_and_values_is_text(driver: Any, live_server: RedisServer) -> None:
    ts = TelescopeState(live_server.url)
    ts.set(XSS_KEY, XSS_VALUE)
    ts.add("<b>bold</b>_sensor", XSS_VALUE, ts=1e9)
    ts.backend.close()
    with serving(live_server.url) as url:
        driver.get(url)
        wait_for(lambda: XSS_KEY in key_rows(driver), "the key named like a script")
        open_key(driver, XSS_KEY)
        assert driver.find_element("id", "value").text == repr(XSS_VALUE)
        open_key(driver, "<b>bold</b>_sensor")
        wait_for(lambda: plots(driver), "the state plot")
        assert driver.execute_script("return window.pwned") is None
        assert driver.find_elements("css selector", "img, b") == []
        assert len(driver.find_elements("css selector", "script")) == 2  # the page's own


def _probe(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script("return window.telstateProbe"))


def test_live_updates_and_recovery(driver: Any, live_server: RedisServer) -> None:
    ts = TelescopeState(live_server.url)
    try:
        for i in range(20):
            ts.add("anc_wind_speed", float(i), ts=1e9 + i)
        with serving(live_server.url) as url:
            driver.get(url)
            wait_for(lambda: driver.find_element("id", "status").text == "live", "live")
            open_key(driver, "anc_wind_speed")
            wait_for(lambda: plots(driver), "the plot")
            assert int(plots(driver)[0]["points"]) == 20
            updates = _probe(driver)["updates"]
            # the event stream subscribes once the page shows the key: write until seen
            # (each write is a new sample; bounded in count and time)
            ts.add("anc_wind_speed", 123.5, ts=1e9 + 20)
            wait_for(lambda: _probe(driver)["updates"] > updates, "the write on the page")
            assert driver.find_element("id", "latest").text == "123.5"
            wait_for(lambda: int(plots(driver)[0]["points"]) == 21, "the new point plotted")

            live_server.stop()
            wait_for(
                lambda: driver.find_element("id", "status").text == "disconnected",
                "the page to say disconnected",
            )
            live_server.start()
            wait_for(lambda: driver.find_element("id", "status").text == "live", "recovery")
            updates = _probe(driver)["updates"]
            ts.add("anc_wind_speed", 77.25, ts=1e9 + 21)
            wait_for(lambda: _probe(driver)["updates"] > updates, "a write after the restart")
            wait_for(lambda: driver.find_element("id", "latest").text == "77.25", "its value")
    finally:
        ts.backend.close()
