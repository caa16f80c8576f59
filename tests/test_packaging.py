"""The dependency versions pyproject.toml claims are the ones CI installs and tests.

CI installs the pins of ``.ci/constraints.txt`` for the full suite and the floors of
``.ci/floor.txt`` for a second run; these tests keep the three files telling the same story,
so a lower bound in pyproject.toml is never one that no test has run against.  They also
hold the version to one string, ``telstate.__version__``, which the package metadata, the
``telstate --version`` command and the RDB writer's ``telstate-version`` field all read.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

import telstate

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    name = re.split(r"[=<>!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def _lower_bounds(requirements: list[str]) -> dict[str, str]:
    bounds = {}
    for requirement in requirements:
        match = re.search(r">=\s*([\w.]+)", requirement)
        assert match, f"pyproject.toml: {requirement!r} has no lower bound"
        bounds[_name(requirement)] = match.group(1)
    return bounds


def test_pyproject_floors_are_the_tested_floors() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = _pins(ROOT / ".ci" / "floor.txt")
    extras = project["optional-dependencies"]
    claimed = _lower_bounds(
        project["dependencies"] + extras["plot"] + extras["progress"] + extras["web"]
    )
    assert claimed == {name: floor[name] for name in claimed}
    # what the floor file adds beyond the claims only follows them down (e.g. matplotlib's
    # own dependencies), it is never a claim of ours
    assert set(floor) >= set(claimed)


def test_everything_ci_installs_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / ".ci" / "constraints.txt")
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["test"] + extras["docs"]
    missing = sorted({_name(requirement) for requirement in wanted} - set(pins))
    assert not missing, f"not pinned in .ci/constraints.txt: {missing}"


def test_docs_extra_is_built_with_a_release_it_allows() -> None:
    # The docs extra has no floor run (CI builds the reference with the pinned Sphinx only),
    # so it stays out of .ci/floor.txt; its pins must still satisfy its own bounds.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / ".ci" / "constraints.txt")
    bounds = _lower_bounds(project["optional-dependencies"]["docs"])
    assert bounds
    for name, bound in bounds.items():
        assert Version(pins[name]) >= Version(bound), (name, pins[name], bound)
    assert not set(bounds) & set(_pins(ROOT / ".ci" / "floor.txt"))
    assert "test,docs" in (ROOT / ".ci" / "run").read_text()


def test_one_version_string() -> None:
    # pyproject.toml takes its version from telstate.__version__ (_version.py, hatch's source)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"]
    assert config["project"]["dynamic"] == ["version"]
    assert config["tool"]["hatch"]["version"]["path"] == "src/telstate/_version.py"
    # ... so the installed metadata says what the package says
    assert importlib.metadata.version("telstate") == telstate.__version__
    # a canonical PEP 440 string, which the metadata keeps as it is (hatch normalises)
    assert str(Version(telstate.__version__)) == telstate.__version__


def test_cli_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from telstate import cli

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"telstate {telstate.__version__}\n"


def test_python_floor_is_the_one_ci_tests() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert "find_python 3.11" in (ROOT / ".ci" / "run").read_text()
