"""Which namespace a key belongs to: the naming rules of MeerKAT telescope states.

A telescope state is flat, but the SDP names its keys by layers, joined by ``_``:

=================  ==============================  ===================================
namespace          example key                     made of
=================  ==============================  ===================================
capture stream     ``1556012345_sdp_l0_first_...``  capture block ID, stream, attribute
capture block      ``1556012345_obs_params``        an all-digit capture block ID first
stream             ``sdp_l0_n_chans``               a stream name first
antenna            ``m000_observer``                ``m000`` (MeerKAT), ``s0000`` (SKA)
global             ``sub_band``                     none of the above
=================  ==============================  ===================================

Stream names are not marked in the keys themselves, so they are inferred from the
state (:func:`find_streams`); a key is then matched against the longest stream
first, since stream names may share prefixes (``sdp_l0`` and ``sdp_l0_continuum``).

Pure functions, no I/O: the command line, the demo summary and any other front end
classify keys with this one rule.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = ["ANTENNA_KEY", "count_namespaces", "find_streams", "namespace"]

#: MeerKAT (m000) and MeerKAT+/SKA (s0000) antenna names, as a key's first part.
ANTENNA_KEY: Final = re.compile(r"^([ms]\d{3,4})_")
_CAPTURE_BLOCK_KEY: Final = re.compile(r"^(\d+)_(.+)$")
_STREAM_TYPE_SUFFIX: Final = "_stream_type"


def find_streams(keys: Sequence[str], config: Any = None) -> list[str]:
    """Stream names among `keys`, longest first (for prefix matching).

    A stream is named by any of: an output of ``sdp_config`` (`config`, the
    value of that key if any); a ``<stream>_stream_type`` attribute (also under
    a capture block); or a second-level prefix shared by several keys — the part
    of a capture-block key ``<cbid>_<stream>_...`` after the capture block that
    at least two global keys also start with (``1556012345_sdp_l0_first_timestamp``
    and ``sdp_l0_n_chans``, ``sdp_l0_int_time`` give ``sdp_l0``).

    Parameters
    ----------
    keys
        Full key names of the whole state.
    config
        The value of ``sdp_config``, if the state has one (anything else is ignored).

    Returns
    -------
    list of str
        The stream names, longest first, then alphabetical.
    """
    streams: set[str] = set()
    if isinstance(config, dict) and isinstance(config.get("outputs"), dict):
        streams.update(name for name in config["outputs"] if isinstance(name, str) and name)
    global_keys = []
    capture_rests = []
    for key in keys:
        match = _CAPTURE_BLOCK_KEY.match(key)
        rest = match.group(2) if match else key
        if rest.endswith(_STREAM_TYPE_SUFFIX) and len(rest) > len(_STREAM_TYPE_SUFFIX):
            streams.add(rest[: -len(_STREAM_TYPE_SUFFIX)])
        if match:
            capture_rests.append(rest)
        else:
            global_keys.append(key)
    prefix_counts: Counter[str] = Counter()
    for key in global_keys:
        parts = key.split("_")
        for j in range(1, len(parts)):
            prefix_counts["_".join(parts[:j])] += 1
    for rest in capture_rests:
        parts = rest.split("_")
        for j in range(len(parts) - 1, 0, -1):
            candidate = "_".join(parts[:j])
            if prefix_counts[candidate] >= 2:
                streams.add(candidate)
                break
    return sorted(streams, key=lambda name: (-len(name), name))


def namespace(key: str, streams: Sequence[str]) -> tuple[str, str]:
    """The namespace of `key`, as ``(kind, name)``.

    Parameters
    ----------
    key
        A full key name.
    streams
        Stream names, longest first (as :func:`find_streams` gives them).

    Returns
    -------
    tuple of str
        `kind` is ``'capture stream'``, ``'capture block'``, ``'stream'``,
        ``'antenna'`` or ``'global'``; `name` is e.g. ``'1556012345_sdp_l0'``,
        ``'1556012345'``, ``'sdp_l0'``, ``'m000'``, or ``''`` for global keys.
    """
    match = _CAPTURE_BLOCK_KEY.match(key)
    if match:
        cbid, rest = match.groups()
        for stream in streams:
            if rest.startswith(stream + "_"):
                return "capture stream", f"{cbid}_{stream}"
        return "capture block", cbid
    for stream in streams:
        if key.startswith(stream + "_"):
            return "stream", stream
    antenna = ANTENNA_KEY.match(key)
    if antenna:
        return "antenna", antenna.group(1)
    return "global", ""


def count_namespaces(keys: Iterable[str], config: Any = None) -> Counter[tuple[str, str]]:
    """How many of `keys` each namespace holds: ``{(kind, name): count}``.

    Parameters
    ----------
    keys
        Full key names of the whole state.
    config
        The value of ``sdp_config``, if any (see :func:`find_streams`).

    Returns
    -------
    collections.Counter
        Keyed by :func:`namespace`'s ``(kind, name)`` pairs.
    """
    names = list(keys)
    streams = find_streams(names, config)
    return Counter(namespace(key, streams) for key in names)
