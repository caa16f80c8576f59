"""Helpers of the browser tests and benchmark: headless Debian chromium, ``telstate serve``.

The browser is Debian's ``chromium`` driven through its ``chromium-driver`` by
selenium (``bash .ci/run`` installs both); a missing one fails the test, as a
missing redis-server does, rather than skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
TIMEOUT = 15.0  # seconds any wait for the page may take before the test fails


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser() -> Any:
    """A headless chromium (selenium WebDriver), 1400 x 900."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _which(CHROMIUM), shutil.which(DRIVER)
    if binary is None or driver is None:
        pytest.fail(
            "chromium and chromedriver are not on PATH: install them "
            "(apt-get install chromium chromium-driver); bash .ci/run does so",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in [
        "--headless=new",
        "--no-sandbox",  # as root, in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-background-networking",
    ]:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


@contextlib.contextmanager
def serving(source: str, *extra: str) -> Iterator[str]:
    """``telstate serve SOURCE --port 0`` in a child process; yields the page's address."""
    command = [sys.executable, "-m", "telstate", "serve", source, "--port", "0", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the address, once listening (or an error)
        if " on http://" not in line:
            proc.kill()
            rest = proc.communicate(timeout=10)[0]
            pytest.fail(f"telstate serve did not start: {line}{rest}", pytrace=False)
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll `condition` until it returns something true (at most `timeout` s, every 20 ms)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    for _ in range(int(timeout / 0.02) + 1):
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the element is being replaced: look again
            last_error = exc
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


def key_rows(driver: Any) -> dict[str, Any]:
    """The key list's rows by shown name (one round trip to the browser)."""
    pairs = driver.execute_script(
        "return [...document.querySelectorAll('tr.key')]"
        ".map((r) => [r.querySelector('.name').textContent, r]);"
    )
    return {name: row for name, row in pairs}


def open_key(driver: Any, name: str) -> None:
    """Click a key in the list and wait for its value to show."""
    wait_for(lambda: name in key_rows(driver), f"key {name} in the list")
    key_rows(driver)[name].click()
    wait_for(
        lambda: (
            driver.execute_script(
                "const h = document.getElementById('key-name'); return h && h.textContent;"
            )
            == name
        ),
        f"the value of {name}",
    )


def plots(driver: Any) -> list[dict[str, str]]:
    """The plots drawn: their kind, ids and number of points, from the page's data attributes."""
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#plots .plot')].map((p) => ({"
            "kind: p.dataset.kind, ids: p.dataset.ids, points: p.dataset.points,"
            "canvas: p.querySelectorAll('canvas').length}));"
        )
    )
