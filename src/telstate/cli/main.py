"""The ``telstate`` command line: its parser, and :func:`main`.

Each subcommand is the ``run`` function of its own module (see the package's
docstring), taking the parsed arguments and returning an exit status.
:func:`main` maps user errors (telstate's own exceptions, missing files,
unreachable servers, bad arguments) to one line ``telstate: error: ...`` on
stderr and status 1 (2 for bad usage), never a traceback.  Ctrl-C ends a command
with status 130, except ``watch``, whose normal end it is (status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from .. import __version__
from .. import _text as text
from .._errors import TelstateError
from .._text import CommandError
from .copy import run as _copy
from .demo import run as _demo
from .get import run as _get
from .info import run as _info
from .keys import run as _keys
from .plot import run as _plot
from .range import run as _range

__all__ = ["main"]

#: Exit status of a command interrupted by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def _serve(args: argparse.Namespace) -> int:
    # aiohttp (an optional extra) is imported by this command alone.
    from .serve import run

    return run(args)


def _watch(args: argparse.Namespace) -> int:
    # asyncio and telstate.aio are imported by this command alone, not at every start-up.
    from .watch import run

    return run(args)


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"telstate: error: {message}{hint}\n")


_SOURCE_HELP = (
    "RDB file, redis://, rediss://, unix:// or redis+sentinel:// URL, host:port, or 'demo'"
)
_TIME_HELP = "Unix time or ISO 8601 date-time (UTC unless it has a zone)"
_VIEW_HELP = (
    "read through ts.view(NAME); repeat to stack views, the last given first "
    "(e.g. --view sdp_l0 --view 1556012345 --view 1556012345_sdp_l0, as katdal does)"
)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser, and each subcommand's (for intermixed options and positionals)."""
    parser = _Parser(
        prog="telstate",
        description="Inspect, plot, copy and watch MeerKAT telescope states.",
        epilog="SOURCE is an RDB file, a Redis server (redis://host:port/db, unix:///path, "
        "host:port), a Redis Sentinel service (redis+sentinel://host:26379,host2/SERVICE) "
        "or 'demo' (a synthetic state in memory).",
    )
    parser.add_argument("--version", action="version", version=f"telstate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        made = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        made.set_defaults(func=func, command=name)
        commands[name] = made
        return made

    info = command("info", _info, "summarise a telescope state")
    info.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)

    keys = command("keys", _keys, "list keys with type, count, size and sensor time span")
    keys.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    keys.add_argument(
        "pattern",
        metavar="PATTERN",
        nargs="?",
        default="*",
        help="Redis glob of key names, e.g. 'm000_*' (default: all)",
    )
    keys.add_argument("--type", choices=sorted(text.TYPE_CHOICES), help="only keys of this type")
    keys.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)
    keys.add_argument("--names", action="store_true", help="print names only, one a line")

    get = command("get", _get, "show a key's value (a sensor's latest sample)")
    get.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    get.add_argument("key", metavar="KEY")
    get.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)
    get.add_argument("--full", action="store_true", help="print numpy arrays in full")

    rng = command("range", _range, "print a sensor's samples")
    rng.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    rng.add_argument("key", metavar="KEY")
    rng.add_argument("--st", metavar="T", help=f"start time, inclusive ({_TIME_HELP})")
    rng.add_argument("--et", metavar="T", help="end time, exclusive")
    rng.add_argument("--format", choices=("table", "csv", "json"), default="table")
    rng.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)

    plot = command("plot", _plot, "plot sensors against time into an image file")
    plot.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    plot.add_argument("keys", metavar="KEY", nargs="+")
    plot.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="image file (.png, .svg, .pdf)"
    )
    plot.add_argument("--st", metavar="T", help=f"start time ({_TIME_HELP})")
    plot.add_argument("--et", metavar="T", help="end time")
    plot.add_argument("--title", help="figure title (default: the SOURCE)")
    plot.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)

    copy = command("copy", _copy, "copy every key from SOURCE to DEST (an RDB file or Redis)")
    copy.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    copy.add_argument("dest", metavar="DEST", help="RDB file or Redis URL / host:port")
    copy.add_argument(
        "-f", "--force", action="store_true", help="overwrite DEST if it is an existing file"
    )

    watch = command("watch", _watch, "print updates of keys on a Redis server until Ctrl-C")
    watch.add_argument(
        "source",
        metavar="SOURCE",
        help="redis://, rediss://, unix:// or redis+sentinel:// URL, or host:port",
    )
    watch.add_argument("keys", metavar="KEY", nargs="+")
    watch.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)
    watch.add_argument(
        "--no-initial", dest="initial", action="store_false", help="skip the keys' current values"
    )

    serve = command("serve", _serve, "browse a telescope state in a web browser (live on Redis)")
    serve.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    serve.add_argument("--port", type=int, default=8765, help="port (8765; 0 picks a free one)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, this machine only)")
    serve.add_argument("--view", metavar="NAME", action="append", help=_VIEW_HELP)

    demo = command(
        "demo", _demo, "build a synthetic MeerKAT-like telescope state in memory and summarise it"
    )
    demo.add_argument("--antennas", type=int, default=16, help="number of antennas (16)")
    demo.add_argument("--duration", type=float, default=600.0, help="observation length, s (600)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (1)")
    demo.add_argument("--save", metavar="FILE.rdb", help="also write the state to an RDB file")
    demo.add_argument("-f", "--force", action="store_true", help="overwrite FILE.rdb if it exists")
    return parser, commands


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`; options may come between positionals (``keys demo --view cb 'x*'``)."""
    parser, commands = _parser()
    if argv and argv[0] in commands:
        return commands[argv[0]].parse_intermixed_args(argv[1:])
    return parser.parse_args(argv)


def _error(message: str) -> int:
    """Print the one line of an error; names in it keep their newlines as escapes."""
    print(f"telstate: error: {text.printable(message)}", file=sys.stderr)
    return 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return text.first_line(exc)


@contextlib.contextmanager
def _names_as_bytes() -> Iterator[None]:
    """Print key names that are not UTF-8 as their own bytes, as ``ls`` does.

    Such names come from Redis and RDB files as str with surrogate escapes
    (``b'\\xff'`` is ``'\\udcff'``), which a UTF-8 stdout in strict mode
    refuses; with ``surrogateescape`` the bytes go out as they are, and a name
    printed by ``keys --names`` can be given back as an argument.
    """
    stream = sys.stdout
    errors = getattr(stream, "errors", None)
    if errors != "strict" or not isinstance(stream, io.TextIOWrapper):
        yield
        return
    stream.reconfigure(errors="surrogateescape")
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):  # closed meanwhile, broken pipe
            stream.reconfigure(errors=errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``telstate`` command with `argv` (default ``sys.argv[1:]``); return its exit code.

    Parameters
    ----------
    argv
        The arguments, without the program's name.

    Returns
    -------
    int
        0 on success, 1 after a user error, 2 for bad usage, 130 after Ctrl-C.
    """
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _names_as_bytes():
            return func(args)
    except CommandError as exc:
        return _error(str(exc))
    except (TelstateError, OSError, KeyError, ValueError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        return _error(_describe(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _broken_pipe() -> int:
    """Output piped into `head` that closed early: quietly stop, as Unix tools do."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1
