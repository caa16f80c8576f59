"""telstate.compat makes katsdptelstate imports resolve to telstate."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_katsdptelstate_code_runs_on_telstate() -> None:
    out = _run(
        """
        import telstate, telstate.compat
        telstate.compat.install()
        import katsdptelstate
        from katsdptelstate import ImmutableKeyError
        from katsdptelstate.memory import MemoryBackend
        from katsdptelstate.utils import KeyType
        from katsdptelstate.encoding import encode_value
        import katsdptelstate.endpoint
        assert katsdptelstate.TelescopeState is telstate.TelescopeState
        assert katsdptelstate.memory.MemoryBackend is telstate.MemoryBackend
        assert KeyType is telstate.KeyType
        ts = katsdptelstate.TelescopeState(MemoryBackend())
        ts['x'] = 1
        try:
            ts['x'] = 2
        except ImmutableKeyError:
            print('refused')
        print(ts.key_type('x') is KeyType.IMMUTABLE, encode_value(1).hex())
        print(katsdptelstate.__version__, katsdptelstate.endpoint.endpoint_parser(1)('h').port)
        """
    )
    assert out.split() == ["refused", "True", "ff01", "1.0.0", "1"]


def test_install_refuses_when_real_package_is_loaded() -> None:
    out = _run(
        """
        import katsdptelstate, telstate.compat
        try:
            telstate.compat.install()
        except RuntimeError as exc:
            print('refused')
        names = telstate.compat.install(force=True)
        import katsdptelstate as again
        import telstate
        print(again.TelescopeState is telstate.TelescopeState, 'katsdptelstate.utils' in names)
        telstate.compat.uninstall()
        import sys
        print('katsdptelstate' in sys.modules)
        """
    )
    assert out.split() == ["refused", "True", "True", "False"]


def test_every_public_submodule_is_provided() -> None:
    out = _run(
        """
        import telstate, telstate.compat, telstate.aio
        names = telstate.compat.install()
        import katsdptelstate.aio, katsdptelstate.redis, katsdptelstate.rdb_writer
        from katsdptelstate.aio.memory import MemoryBackend
        from katsdptelstate.aio.redis import RedisBackend
        from katsdptelstate.aio.rdb_writer import RDBWriter
        from katsdptelstate.rdb_writer import RDBWriter as SyncWriter
        assert katsdptelstate.aio.TelescopeState is telstate.aio.TelescopeState
        assert SyncWriter is telstate.rdb.RDBWriter and RDBWriter is telstate.aio.RDBWriter
        print(' '.join(names))
        """
    )
    assert out.split() == [
        "katsdptelstate",
        "katsdptelstate.aio",
        "katsdptelstate.aio.memory",
        "katsdptelstate.aio.rdb_writer",
        "katsdptelstate.aio.redis",
        "katsdptelstate.backend",
        "katsdptelstate.encoding",
        "katsdptelstate.endpoint",
        "katsdptelstate.errors",
        "katsdptelstate.memory",
        "katsdptelstate.rdb_writer",
        "katsdptelstate.redis",
        "katsdptelstate.utils",
    ]


def test_patching_the_pickle_gate_through_the_alias_reaches_the_codec() -> None:
    """katdal's tests patch katsdptelstate.encoding._allow_pickle / _warn_on_pickle."""
    out = _run(
        """
        import pickle
        from unittest import mock
        import telstate, telstate.compat, telstate._codec as codec
        telstate.compat.install()
        import katsdptelstate
        from katsdptelstate.encoding import decode_value
        pickled = pickle.dumps({'a': (1, 2)}, protocol=2)
        enc = katsdptelstate.encoding
        print(enc._allow_pickle, enc._warn_on_pickle)
        try:
            decode_value(pickled)
        except katsdptelstate.DecodeError:
            print('refused')
        with mock.patch('katsdptelstate.encoding._allow_pickle', True), \\
                mock.patch('katsdptelstate.encoding._warn_on_pickle', False):
            print(codec._allow_pickle, codec._warn_on_pickle, enc._allow_pickle)
            print(decode_value(pickled))
        print(codec._allow_pickle, enc._allow_pickle)
        try:
            decode_value(pickled)
        except katsdptelstate.DecodeError:
            print('refused')
        # the other way round: telstate's setting is what the alias shows
        telstate.set_allow_pickle(True, warn=True)
        print(enc._allow_pickle, enc._warn_on_pickle)
        with mock.patch.object(enc, '_warn_on_pickle', False):
            print(codec._warn_on_pickle)
        print(codec._allow_pickle, codec._warn_on_pickle)
        enc._allow_pickle = False  # a plain assignment reaches the codec too
        print(codec._allow_pickle)
        """
    )
    assert out.splitlines() == [
        "False False",
        "refused",
        "True False True",
        "{'a': (1, 2)}",
        "False False",
        "refused",
        "True True",
        "False",
        "True True",
        "False",
    ]
