"""katsdptelstate 1.0.0's own test suite, run on telstate through ``telstate.compat``.

The proof that code written for katsdptelstate runs unchanged: the tests that
katsdptelstate ships in its wheel (``katsdptelstate/test`` and
``katsdptelstate/aio/test``) are copied, at test time only, into a temporary
directory and run by pytest in a subprocess whose conftest calls
``telstate.compat.install()`` before anything else.  The copied packages import
as ``katsdptelstate.test...`` and ``katsdptelstate.aio.test...`` (their relative
imports, ``from ..encoding import ...``, need that) because the conftest appends
their directories to the ``__path__`` of the alias packages; everything else
they import from ``katsdptelstate`` is telstate.  The real katsdptelstate is
never imported there (the conftest checks).

Every collected test must pass, except those in :data:`EXCLUDED`: tests of
katsdptelstate internals that telstate deliberately lacks.  They are deselected
(never run), and the number of tests collected is checked, so none can silently
vanish.  The subprocess has its own pytest ini (not ours: the suite needs
pytest-asyncio's auto mode, and our warnings-as-errors is not its setting), and
its conftest reports each test's outcome in a JSON file.

A few katsdptelstate internals are imported at the top of test modules whose
other tests must run; the conftest gives them placeholders that raise if called
(only excluded tests call them).  See README.md, "katsdptelstate's test suite".
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

_RDB = "katsdptelstate/test/test_rdb_handling.py::TestRDBHandling::"
_AIO_TS = "katsdptelstate/aio/test/test_telescope_state.py::"
_READER = (
    "reads the file back with rdb_reader.load_from_file and RedisCallback (rdbtools' "
    "callback interface); its fake server's dump() is rdb_utility's"
)
# telstate copies any key of a real Redis server (its DUMP), but reads other backends'
# keys as telstate keys
_NOT_SENSORS = "; and its sorted sets of members under 8 bytes are not telstate sensors"

# node id (or a class's node id, for all its tests) -> why the test cannot apply to telstate
EXCLUDED: dict[str, str] = {
    _RDB + "test_writer_reader": _READER + _NOT_SENSORS,
    _RDB + "test_zset_many_entries": _READER + _NOT_SENSORS,
    _RDB + "test_zset_with_big_entry": _READER,
    _RDB + "test_hash_many_entries": _READER,
    _RDB + "test_hash_big_entry": _READER,
    _AIO_TS + "TestTelescopeStateRedis::test_wait_key_concurrent": (
        "inspects the private _pubsub of katsdptelstate's asyncio Redis backend and its "
        "_DUMMY_CHANNEL"
    ),
    _AIO_TS + "TestTelescopeStateRedis::test_wait_key_concurrent_same": (
        "inspects the private _pubsub of katsdptelstate's asyncio Redis backend and its "
        "_DUMMY_CHANNEL"
    ),
    _AIO_TS + "TestTelescopeStateRedisFromUrl::test_wait_key_concurrent": (
        "inspects the private _pubsub of katsdptelstate's asyncio Redis backend and its "
        "_DUMMY_CHANNEL"
    ),
    _AIO_TS + "TestTelescopeStateRedisFromUrl::test_wait_key_concurrent_same": (
        "inspects the private _pubsub of katsdptelstate's asyncio Redis backend and its "
        "_DUMMY_CHANNEL"
    ),
    "katsdptelstate/aio/test/test_rdb_writer.py::TestRdbWriter::test_write_some": (
        "expects the exact log record of katsdptelstate's private logger "
        "katsdptelstate.rdb_writer_base"
    ),
}

# Tests that the suite skips by itself, whatever it runs on
SKIPPED_BY_THE_SUITE: dict[str, str] = {
    "katsdptelstate/test/test_encoding.py::TestEncodingPickle::test_fuzz": (
        "skips itself: bad pickles may exhaust memory or crash"
    ),
}

EXPECTED_COLLECTED = 397
EXPECTED_EXCLUDED = 10
EXPECTED_PASSED = EXPECTED_COLLECTED - EXPECTED_EXCLUDED - len(SKIPPED_BY_THE_SUITE)  # 386
_ALLOWED = {nodeid: (":passed", ":skipped") for nodeid in SKIPPED_BY_THE_SUITE}

_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 300
"""

_CONFTEST = '''\
"""Runs katsdptelstate's test suite on telstate (written by telstate's tests/test_peer_suite.py)."""

import json
import os
import sys
import types

import telstate
import telstate.aio
import telstate.compat

telstate.compat.install()  # before anything imports katsdptelstate

import katsdptelstate  # noqa: E402
import katsdptelstate.aio  # noqa: E402
import katsdptelstate.aio.redis  # noqa: E402
import katsdptelstate.redis  # noqa: E402

assert katsdptelstate.TelescopeState is telstate.TelescopeState
assert katsdptelstate.aio.TelescopeState is telstate.aio.TelescopeState

HERE = os.path.dirname(os.path.abspath(__file__))
# The copied test packages become katsdptelstate.test and katsdptelstate.aio.test.
katsdptelstate.__path__.append(os.path.join(HERE, "katsdptelstate"))
katsdptelstate.aio.__path__.append(os.path.join(HERE, "katsdptelstate", "aio"))


def _lacking(name):
    def lacking(*args, **kwargs):
        raise NotImplementedError(f"{name}: a katsdptelstate internal that telstate lacks")

    lacking.__name__ = name
    return lacking


# Internals imported at the top of test modules (only excluded tests use them)
for module_name, names in {
    "katsdptelstate.rdb_reader": ["load_from_file"],
    "katsdptelstate.rdb_utility": ["dump_string", "dump_zset", "dump_hash"],
    "katsdptelstate.redis": ["RedisCallback"],
}.items():
    module = sys.modules.get(module_name)
    if module is None:
        module = sys.modules[module_name] = types.ModuleType(module_name)
        module.__peer_placeholder__ = True
    for name in names:
        setattr(module, name, _lacking(name))
katsdptelstate.aio.redis._DUMMY_CHANNEL = b"placeholder: telstate has no dummy channel"

EXCLUDED = json.loads(os.environ["PEER_SUITE_EXCLUDED"])
REPORT = {"collected": [], "outcomes": {}, "foreign": []}


def _excluded(nodeid):
    return any(nodeid == key or nodeid.startswith(key + "::") for key in EXCLUDED)


def pytest_collection_modifyitems(config, items):
    REPORT["collected"] = [item.nodeid for item in items]
    dropped = [item for item in items if _excluded(item.nodeid)]
    items[:] = [item for item in items if not _excluded(item.nodeid)]
    config.hook.pytest_deselected(items=dropped)


def pytest_runtest_logreport(report):
    REPORT["outcomes"].setdefault(report.nodeid, []).append(f"{report.when}:{report.outcome}")


def pytest_sessionfinish(session, exitstatus):
    # Every katsdptelstate module seen is an alias, a placeholder or a copied test module
    for name, module in sorted(sys.modules.items()):
        if name != "katsdptelstate" and not name.startswith("katsdptelstate."):
            continue
        if getattr(module, "__telstate_compat__", False):
            continue
        if getattr(module, "__peer_placeholder__", False):
            continue
        if os.path.abspath(getattr(module, "__file__", None) or "/").startswith(HERE):
            continue
        REPORT["foreign"].append(name)
    with open(os.environ["PEER_SUITE_REPORT"], "w") as file:
        json.dump(REPORT, file)
'''


def _copy_suite(root: Path) -> Path:
    """Copy katsdptelstate's installed test packages under `root`; return the package dir."""
    spec = importlib.util.find_spec("katsdptelstate")  # finds it without importing it
    assert spec is not None and spec.submodule_search_locations, "katsdptelstate is not installed"
    installed = Path(next(iter(spec.submodule_search_locations)))
    package = root / "katsdptelstate"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(installed / "test", package / "test", ignore=ignore)
    shutil.copytree(installed / "aio" / "test", package / "aio" / "test", ignore=ignore)
    # Empty markers: pytest names the test modules from the package root upwards.
    # They are never imported (the aliases are in sys.modules first).
    (package / "__init__.py").write_text("")
    (package / "aio" / "__init__.py").write_text("")
    return package


def test_katsdptelstate_suite_passes_on_telstate(tmp_path: Path) -> None:
    root = tmp_path / "peer"
    package = _copy_suite(root)
    (root / "pytest.ini").write_text(_INI)
    (root / "conftest.py").write_text(_CONFTEST)
    report_path = tmp_path / "report.json"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_ADDOPTS", "KATSDPTELSTATE_ALLOW_PICKLE"}
    }
    env["PEER_SUITE_EXCLUDED"] = json.dumps(sorted(EXCLUDED))
    env["PEER_SUITE_REPORT"] = str(report_path)
    command = [
        sys.executable, "-m", "pytest", "-c", str(root / "pytest.ini"), "--rootdir", str(root),
        "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"), "-q", "-rfE",
        str(package),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = "\n" + result.stdout[-6000:] + result.stderr[-3000:]
    assert report_path.exists(), f"the suite did not run: {output}"
    report = json.loads(report_path.read_text())
    collected: list[str] = report["collected"]
    assert report["foreign"] == [], "the real katsdptelstate was imported"
    # Nothing vanished, and every exclusion names something that exists
    assert len(collected) == EXPECTED_COLLECTED, output
    excluded = [
        nodeid
        for nodeid in collected
        if any(nodeid == key or nodeid.startswith(key + "::") for key in EXCLUDED)
    ]
    assert len(excluded) == EXPECTED_EXCLUDED
    unmatched = [key for key in EXCLUDED if not any(n.startswith(key) for n in excluded)]
    assert unmatched == [], "stale exclusions"
    assert sorted(SKIPPED_BY_THE_SUITE) == sorted(set(SKIPPED_BY_THE_SUITE) & set(collected))
    # Every other test ran and passed
    outcomes: dict[str, list[str]] = report["outcomes"]
    assert sorted(outcomes) == sorted(set(collected) - set(excluded))
    bad = {
        nodeid: phases
        for nodeid, phases in outcomes.items()
        if not all(phase.endswith(_ALLOWED.get(nodeid, ":passed")) for phase in phases)
    }
    assert bad == {}, "\n".join(line for line in output.splitlines() if "FAILED" in line)
    passed = [n for n, phases in outcomes.items() if all(p.endswith(":passed") for p in phases)]
    assert len(passed) == EXPECTED_PASSED
    assert result.returncode == 0, output
