"""The ``telstate`` command (also ``python -m telstate``).

Every subcommand but ``demo`` reads a SOURCE: an RDB file (opened lazily with
:meth:`TelescopeState.open`), a Redis server (``redis://``, ``rediss://`` or
``unix://`` URL, or ``host:port``) or the word ``demo`` (the synthetic state of
:func:`telstate._demo.build_demo`, in memory).  Each subcommand is a function
taking the parsed arguments and returning an exit status; :func:`main` maps user
errors (our exceptions, missing files, unreachable servers, bad arguments) to
one line ``telstate: error: ...`` on stderr and status 1 (2 for bad usage),
never a traceback.  Ctrl-C ends a command with status 130, except ``watch``,
whose normal end it is (status 0).

Rendering rules (times, sizes, values, namespaces) live in :mod:`._cli_text`;
``plot``, ``copy`` and ``watch`` in their own modules, imported when used, so
that matplotlib, tqdm and asyncio cost nothing to the other commands.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import __version__
from . import _cli_text as text
from ._cli_text import CommandError
from ._errors import TelstateError
from ._keys import KeyType
from .backends.base import KeyStats
from .client import TelescopeState

__all__ = ["main"]

#: Exit status of a command interrupted by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------- sources

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")
_URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


@dataclass
class Source:
    """An opened SOURCE: its telescope state and what it is."""

    kind: str  # 'demo', 'rdb' or 'redis'
    label: str  # for messages and titles
    ts: TelescopeState
    path: str | None = None  # of an RDB file
    url: str | None = None  # of a Redis server, for redis-py's from_url

    def close(self) -> None:
        self.ts.backend.close()


def classify(spec: str) -> tuple[str, str]:
    """What a SOURCE or DEST names: ``('demo', 'demo')``, ``('redis', url)`` or ``('rdb', path)``.

    URLs and ``host:port`` name servers, anything else a file (an existing file
    is always a file, whatever its name).
    """
    if spec == "demo":
        return "demo", spec
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme not in _URL_SCHEMES:
            raise CommandError(
                f"unsupported URL {_redis_label(spec)!r}: use redis://, rediss://, unix:// "
                "or redis+sentinel://"
            )
        return "redis", spec
    if not os.path.exists(spec) and _HOST_PORT.match(spec):
        return "redis", f"redis://{spec}"
    return "rdb", spec


def _redis_label(url: str) -> str:
    """The URL without credentials (user and password, or a query that may hold one)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1].split('?', 1)[0]}"


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        if "@" in path:  # user:password@host:port without a scheme: don't echo a password
            raise CommandError(
                "no such file; to give a user and password, use a URL: "
                "redis://USER:PASSWORD@HOST:PORT"
            )
        raise CommandError(
            f"{path}: no such file (a SOURCE is an RDB file, a Redis URL, host:port or 'demo')"
        )
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory, not an RDB file")


def open_source(spec: str) -> Source:
    """Open SOURCE `spec` (see :func:`classify`)."""
    kind, where = classify(spec)
    if kind == "demo":
        from ._demo import build_demo

        ts = TelescopeState()
        build_demo(ts)
        return Source("demo", "demo", ts)
    if kind == "redis":
        ts = TelescopeState(where)
        return Source("redis", ts.backend.server, ts, url=where)  # type: ignore[attr-defined]
    _check_file(where)
    return Source("rdb", where, TelescopeState.open(where), path=where)


@contextlib.contextmanager
def opened(spec: str) -> Iterator[Source]:
    source = open_source(spec)
    try:
        yield source
    finally:
        source.close()


def with_views(ts: TelescopeState, views: Sequence[str] | None) -> TelescopeState:
    """`ts` seen through ``--view`` names, the last one given first (``ts.view(a).view(b)``)."""
    for name in views or ():
        ts = ts.view(name)
    return ts


def _not_found(ts: TelescopeState, key: str, source: Source) -> CommandError:
    """'key not found' with the closest names, for typos."""
    names = ts._ipython_key_completions_()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    prefixes = ", ".join(repr(prefix) for prefix in ts.prefixes)
    where = "" if ts.prefixes == ("",) else f" (view prefixes {prefixes})"
    return CommandError(f"key {key!r} not found in {source.label}{where}{hint}")


def _all_stats(ts: TelescopeState, keys: Sequence[str]) -> list[KeyStats | None]:
    """Stats of many full keys in one backend call (two round trips on Redis)."""
    return ts.backend.stats([key.encode("utf-8", "surrogateescape") for key in keys])


# --------------------------------------------------------------------------- info


def _source_lines(source: Source) -> list[str]:
    lines = []
    if source.kind == "demo":
        lines.append("Source  demo (a synthetic MeerKAT-like state in memory)")
    elif source.kind == "rdb":
        assert source.path is not None
        index = source.ts.backend.index  # type: ignore[attr-defined]
        file_size = text.size(os.path.getsize(source.path))
        lines.append(f"Source  {source.path} (RDB file, {file_size})")
        rows = [["format", f"{index.magic}{index.version:04d} (RDB version {index.version})"]]
        for field, value in index.aux.items():
            name = field.decode("utf-8", "replace")
            shown = value.decode("utf-8", "replace")
            if name == "ctime" and shown.isdigit():
                shown = text.utc(float(shown)).replace(".000Z", "Z")
            elif name == "used-mem" and shown.isdigit():
                shown = text.size(int(shown))
            rows.append([name, shown])
        lines += ["  " + line for line in text.table(rows)]
    else:
        info = source.ts.backend.server_info()  # type: ignore[attr-defined]
        lines.append(f"Source  {source.label} ({info['product']} server)")
        rows = [
            ["version", info["version"]],
            ["used memory", info["used_memory"]],
            [f"keys in db {info['db']}", info["keys"]],
        ]
        lines += ["  " + line for line in text.table(rows)]
    return lines


def _info(args: argparse.Namespace) -> int:
    with opened(args.source) as source:
        root = source.ts
        keys = root.keys()
        stats = _all_stats(root, keys)
        found = {key: s for key, s in zip(keys, stats, strict=True) if s is not None}
        lines = _source_lines(source)

        by_type = Counter(s.key_type for s in found.values())
        lines.append(f"Keys  {len(found)}")
        rows = [[text.TYPE_NAMES[kind], str(by_type[kind])] for kind in KeyType]
        skipped: Counter[str] = Counter()
        if source.kind == "rdb":
            skipped.update(source.ts.backend.index.skipped)  # type: ignore[attr-defined]
        elif len(found) < len(keys):
            skipped["other Redis types"] = len(keys) - len(found)
        if skipped:
            detail = ", ".join(f"{name} {count}" for name, count in sorted(skipped.items()))
            rows.append(["skipped", f"{sum(skipped.values())} non-telstate keys ({detail})"])
        lines += ["  " + line for line in text.table(rows)]

        names = list(found)
        config = None
        if found.get("sdp_config") and found["sdp_config"].key_type is KeyType.IMMUTABLE:
            with contextlib.suppress(TelstateError, ValueError):
                config = root.get("sdp_config")
        streams = text.find_streams(names, config)
        spaces = Counter(text.namespace(key, streams) for key in names)
        lines.append("Namespaces")
        order = ["capture block", "capture stream", "stream"]
        rows = [
            [kind, text.printable(name), str(count), "key" if count == 1 else "keys"]
            for kind in order
            for (k, name), count in sorted(spaces.items())
            if k == kind
        ]
        antennas = sorted(name for kind, name in spaces if kind == "antenna")
        if antennas:
            n_antenna = sum(count for (kind, _), count in spaces.items() if kind == "antenna")
            shown = antennas[0] if len(antennas) == 1 else f"{antennas[0]}..{antennas[-1]}"
            rows.append([f"antennas ({len(antennas)})", shown, str(n_antenna), "keys"])
        n_global = spaces[("global", "")]
        rows.append(["global", "", str(n_global), "key" if n_global == 1 else "keys"])
        lines += ["  " + line for line in text.table(rows)]

        sensors = [s for s in found.values() if s.key_type is KeyType.MUTABLE]
        firsts = [s.first for s in sensors if s.first is not None]
        lasts = [s.last for s in sensors if s.last is not None]
        lines.append("Sensors")
        rows = [["sensors", str(len(sensors))], ["samples", str(sum(s.count for s in sensors))]]
        if firsts and lasts:
            first, last = min(firsts), max(lasts)
            rows += [
                ["first", text.utc(first)],
                ["last", text.utc(last)],
                ["duration", text.duration(last - first)],
            ]
        lines += ["  " + line for line in text.table(rows)]

        biggest = sorted(found.items(), key=lambda item: (-item[1].nbytes, item[0]))[:10]
        if biggest:
            lines.append("Biggest keys")
            rows = [
                [text.printable(key), text.TYPE_NAMES[s.key_type], text.size(s.nbytes)]
                for key, s in biggest
            ]
            lines += ["  " + line for line in text.table(rows)]
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------- keys


def _keys(args: argparse.Namespace) -> int:
    from ._glob import compile_glob

    wanted = text.TYPE_CHOICES[args.type] if args.type else None
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        if args.view:
            match = compile_glob(args.pattern.encode("utf-8", "surrogateescape"))
            listing = text.view_listing(source.ts.keys(), ts.prefixes)
            names = {
                name: full
                for name, full in listing.items()
                if match(name.encode("utf-8", "surrogateescape"))
            }
        else:
            names = {key: key for key in source.ts.keys(args.pattern)}
        stats = _all_stats(source.ts, list(names.values()))
        rows = []
        for (name, full), s in zip(names.items(), stats, strict=True):
            if s is None or (wanted is not None and s.key_type is not wanted):
                continue
            if args.names:  # for scripts: the name itself, bytes that are not UTF-8 too
                print(name)
                continue
            count = "" if s.key_type is KeyType.IMMUTABLE else str(s.count)
            row = [text.printable(name), text.TYPE_NAMES[s.key_type], count, text.size(s.nbytes)]
            if args.view:
                prefix = full[: len(full) - len(name)]
                row.insert(1, text.printable(prefix.rstrip("_")) or "(root)")
            row.append(text.span(s.first, s.last))
            rows.append(row)
    if rows:
        header = ["KEY", "TYPE", "COUNT", "SIZE", "SENSOR SPAN (UTC)"]
        right = [2, 3]
        if args.view:
            header.insert(1, "VIEW")
            right = [3, 4]
        print("\n".join(text.table(rows, header, right)))
    elif not args.names:
        print("(no matching keys)", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- get


def _get(args: argparse.Namespace) -> int:
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        kind = ts.key_type(args.key)
        if kind is None:
            raise _not_found(ts, args.key, source)
        if kind is KeyType.MUTABLE:
            samples = ts.get_range(args.key)
            if not samples:  # pragma: no cover - Redis has no empty sorted sets
                print("(no samples)")
                return 0
            value, stamp = samples[-1]
            shown = text.pretty(value, args.full)
            sep = "\n" if "\n" in shown else "  "
            print(f"{text.utc(stamp)}{sep}{shown}")
        elif kind is KeyType.INDEXED:
            print(text.pretty(text.sorted_dict(ts.get(args.key)), args.full))
        else:
            print(text.pretty(ts.get(args.key), args.full))
    return 0


# --------------------------------------------------------------------------- range


def _time_arg(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return text.parse_time(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def sensor_samples(
    ts: TelescopeState,
    key: str,
    source: Source,
    st: float | None,
    et: float | None,
    include_previous: bool = False,
) -> list[tuple[Any, float]]:
    """The samples of sensor `key` with ``st <= t < et`` (all of them by default)."""
    kind = ts.key_type(key)
    if kind is None:
        raise _not_found(ts, key, source)
    if kind is not KeyType.MUTABLE:
        raise CommandError(
            f"{key} is {'an immutable' if kind is KeyType.IMMUTABLE else 'an indexed'} key, "
            "not a sensor: use 'telstate get'"
        )
    if st is not None and et is not None and et < st:
        raise CommandError("--et is before --st")
    return ts.get_range(
        key,
        st=0.0 if st is None else st,
        et=et,
        include_previous=include_previous and st is not None,
    )


def _range(args: argparse.Namespace) -> int:
    st, et = _time_arg(args.st, "--st"), _time_arg(args.et, "--et")
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        samples = sensor_samples(ts, args.key, source, st, et)
    out = sys.stdout
    if args.format == "json":
        out.write("[")
        for i, (value, stamp) in enumerate(samples):
            item = {"timestamp": stamp, "time": text.utc(stamp), "value": text.to_json(value)}
            out.write(("\n" if i == 0 else ",\n") + json.dumps(item, allow_nan=False))
        out.write("\n]\n" if samples else "]\n")
    elif args.format == "csv":
        out.write(text.csv_line(["timestamp", "time", "value"]))
        for value, stamp in samples:
            out.write(text.csv_line([repr(stamp), text.utc(stamp), text.csv_value(value)]))
    else:
        if not samples:
            print("(no samples in that range)", file=sys.stderr)
            return 0
        rows = ([text.utc(stamp), text.one_line(value)] for value, stamp in samples)
        print("\n".join(text.table(rows, ["TIME (UTC)", "VALUE"], right=())))
    return 0


# --------------------------------------------------------------------------- plot, copy, watch


def _plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError(
            "plotting needs matplotlib, which is not installed: pip install 'telstate[plot]'"
        ) from None
    from ._cli_plot import plot

    st, et = _time_arg(args.st, "--st"), _time_arg(args.et, "--et")
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        series = [
            (key, sensor_samples(ts, key, source, st, et, include_previous=True))
            for key in args.keys
        ]
        plot(series, args.output, title=args.title or source.label, st=st, et=et)
    print(f"wrote {args.output}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    from ._cli_copy import copy

    return copy(args)


def _watch(args: argparse.Namespace) -> int:
    from ._cli_watch import watch

    return watch(args)


def _serve(args: argparse.Namespace) -> int:
    from .web import serve

    return serve(args)


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from ._demo import build_demo, summarize

    if args.save and os.path.exists(args.save) and not args.force:
        raise CommandError(f"{args.save} exists: use --force to overwrite it")
    ts = TelescopeState()
    start = time.perf_counter()
    build_demo(ts, n_antennas=args.antennas, duration=args.duration, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(summarize(ts))
    print(f"\n(built in memory in {elapsed:.2f} s)")
    if args.save:
        from ._cli_copy import write_rdb

        start = time.perf_counter()
        written = write_rdb(ts, args.save, force=args.force, label="demo")
        elapsed = time.perf_counter() - start
        print(f"saved {text.plural(written, 'key')} to {args.save} in {elapsed:.2f} s")
    return 0


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
    """Run the ``telstate`` command with `argv` (default ``sys.argv[1:]``); return its exit code."""
    import redis

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
    except (TelstateError, OSError, KeyError, ValueError, redis.RedisError) as exc:
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


if __name__ == "__main__":
    sys.exit(main())
