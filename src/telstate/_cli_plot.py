"""``telstate plot``: sensors against a UTC time axis, drawn with matplotlib's Agg.

Layout: one column of subplots sharing the time axis.

* Numeric sensors are lines, one subplot per quantity: keys that differ only by
  their antenna or capture-block part (``m000_pos_actual_scan_azim`` and
  ``m001_pos_actual_scan_azim``) share a subplot, told apart by the legend.
  Integer sensors are drawn as steps (a sensor holds its value until the next
  sample).  The y label is the quantity, with a unit guessed from the key's
  last word (``azim`` → deg, ``wind_speed`` → m/s).
* Categorical sensors (strings and bools, like ``m000_activity``) share one
  subplot: one row of coloured bands per key, each band lasting from a sample
  to the next (the last to the end of the plot), labelled inside when it is
  wide enough; a legend maps colours to values (one colour per value across
  all rows).

The figure is built without pyplot (a bare :class:`~matplotlib.figure.Figure`
on an Agg canvas), so nothing global changes and no display is needed.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from . import _cli_text as text
from ._cli_text import CommandError

__all__ = ["plot"]

Samples = list[tuple[Any, float]]

_UNITS = (
    ({"azim", "elev", "az", "el", "azimuth", "elevation", "direction", "angle", "parangle"}, "deg"),
    ({"speed"}, "m/s"),
    ({"temperature", "temp"}, "°C"),
    ({"pressure"}, "hPa"),
    ({"humidity"}, "%"),
    ({"freq", "frequency", "bandwidth"}, "Hz"),
    ({"timestamp", "time", "duration"}, "s"),
)
# Line colours: matplotlib's tab10, then a few more.
_PALETTE = [
    *(f"tab:{name}" for name in ("blue", "orange", "green", "red", "purple", "brown", "pink")),
    *(f"tab:{name}" for name in ("gray", "olive", "cyan")),
    *("gold", "navy", "lime", "teal", "salmon", "orchid", "khaki", "darkgreen", "sienna"),
]
# State colours: ColorBrewer's light Set2 and Set3 (black text stays readable on them),
# so that bands do not look like lines.
_STATE_PALETTE = [
    *("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3"),
    *("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5"),
    *("#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f"),
]
_WIDTH = 11.0  # inches
_NUMERIC_HEIGHT = 2.3  # inches per line subplot
_ROW_HEIGHT = 0.5  # inches per categorical row
_DPI = 110
_LABEL_WIDTH = 24  # characters of a value shown in a band or the legend
_CHAR_PIXELS = 6.5  # width of a character of the band labels, roughly


def unit(key: str) -> str | None:
    """A unit guessed from the last word of the key, or None."""
    last = key.rsplit("_", 1)[-1].lower()
    return next((name for words, name in _UNITS if last in words), None)


def quantity(key: str) -> str:
    """The key without a leading antenna or capture-block part."""
    if text.ANTENNA_KEY.match(key):
        return key.split("_", 1)[1]
    head, sep, rest = key.partition("_")
    return rest if sep and head.isdigit() and rest else key


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_category(value: Any) -> bool:
    return isinstance(value, str | bytes | bool | np.bool_ | np.str_)


def _label(value: Any) -> str:
    """A short label: katpoint targets by name, long text cut."""
    shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(shown) > _LABEL_WIDTH and ", " in shown:
        shown = shown.split(", ", 1)[0]
    return shown if len(shown) <= _LABEL_WIDTH else shown[: _LABEL_WIDTH - 1] + "…"


def _days(times: Sequence[float] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Unix times as matplotlib date numbers (days since its epoch)."""
    epoch = float(mdates.date2num(datetime.fromtimestamp(0, UTC)))  # type: ignore[no-untyped-call]
    days: np.ndarray[Any, Any] = np.asarray(times, dtype=float) / 86400.0 + epoch
    return days


def _title_time(timestamp: float) -> str:
    """``2019-04-23 09:39:05`` (milliseconds only when there are some)."""
    shown = text.utc(timestamp).replace("T", " ").rstrip("Z")
    return shown[:-4] if shown.endswith(".000") else shown


def _classify(key: str, samples: Samples) -> str:
    values = [value for value, _ in samples]
    if all(_is_number(v) or v is None for v in values) and any(v is not None for v in values):
        return "numeric"
    if all(_is_category(v) or v is None for v in values):
        return "category"
    odd = next(v for v in values if not (_is_number(v) or _is_category(v) or v is None))
    raise CommandError(
        f"cannot plot {key}: its values include {type(odd).__name__}s "
        "(numbers, strings and bools can be plotted)"
    )


def _draw_numeric(
    ax: Axes, group: list[tuple[str, Samples]], x1: float, colours: Iterator[Any]
) -> None:
    for key, samples in group:
        values = np.array([np.nan if v is None else float(v) for v, _ in samples])
        times = _days([t for _, t in samples])
        integral = all(isinstance(v, numbers.Integral) for v, _ in samples)
        if integral:  # a held value: extend the last step to the end of the plot
            times = np.append(times, _days([x1]))
            values = np.append(values, values[-1])
        ax.plot(
            times,
            values,
            label=key,
            color=next(colours),
            linewidth=1.3,
            drawstyle="steps-post" if integral else "default",
            marker="." if len(samples) <= 60 else None,
        )
    name = quantity(group[0][0])
    found = unit(group[0][0])
    ax.set_ylabel(f"{name} [{found}]" if found else name, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _draw_categories(
    ax: Axes, group: list[tuple[str, Samples]], x0: float, x1: float, fig_width_px: float
) -> None:
    colours: dict[str, Any] = {}
    palette = _STATE_PALETTE
    span_days = max(float(_days([x1])[0] - _days([x0])[0]), 1e-12)
    axis_px = 0.78 * fig_width_px  # the axes' share of the figure width, roughly
    for row, (_, samples) in enumerate(group):
        y = len(group) - 1 - row
        for i, (value, start) in enumerate(samples):
            end = samples[i + 1][1] if i + 1 < len(samples) else x1
            start, end = max(start, x0), min(end, x1)
            if end <= start:
                continue
            label = _label(value)
            colour = colours.setdefault(label, palette[len(colours) % len(palette)])
            left, right = _days([start, end])
            ax.broken_barh(
                [(left, right - left)],
                (y - 0.35, 0.7),
                facecolors=colour,
                edgecolor="white",
                linewidth=0.5,
            )
            room = (right - left) / span_days * axis_px / _CHAR_PIXELS
            if room >= len(label) + 1:
                ax.text(
                    (left + right) / 2,
                    y,
                    label,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    clip_on=True,
                )
    ax.set_yticks(range(len(group)), [key for key, _ in reversed(group)], fontsize=8)
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(facecolor=colour, label=label) for label, colour in colours.items()]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        fontsize=8,
        frameon=False,
        ncols=1 if len(handles) <= 2 * len(group) + 3 else 2,
    )


def plot(
    series: Sequence[tuple[str, Samples]],
    output: str,
    title: str,
    st: float | None = None,
    et: float | None = None,
) -> None:
    """Draw `series` (key and its (value, timestamp) samples) into the image file `output`.

    Samples may start before `st` (the value held at `st`); the time axis runs
    from `st` (default: the first sample) to `et` (default: the last sample).

    Raises
    ------
    CommandError
        If a sensor has no samples in the range or values that cannot be plotted.
    """
    for key, samples in series:
        if not samples:
            raise CommandError(f"{key} has no samples in that time range")
    kinds = {key: _classify(key, samples) for key, samples in series}
    starts = [s[0][1] if st is None else st for _, s in series]
    x0 = st if st is not None else min(starts)
    x1 = et if et is not None else max(s[-1][1] for _, s in series)
    if x1 <= x0:  # a single instant: show a minute around it
        x0, x1 = x0 - 30.0, x1 + 30.0

    numeric_groups: dict[tuple[str, str | None], list[tuple[str, Samples]]] = {}
    categories: list[tuple[str, Samples]] = []
    order: list[tuple[str, str | None] | None] = []
    for key, samples in series:
        if kinds[key] == "numeric":
            group = (quantity(key), unit(key))
            if group not in numeric_groups:
                numeric_groups[group] = []
                order.append(group)
            numeric_groups[group].append((key, samples))
        else:
            if not categories:
                order.append(None)
            categories.append((key, samples))

    heights = [
        _NUMERIC_HEIGHT if item is not None else 0.5 + _ROW_HEIGHT * len(categories)
        for item in order
    ]
    fig = Figure(figsize=(_WIDTH, sum(heights) + 1.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(order), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    line_colours = itertools.cycle(_PALETTE)
    for ax, item in zip(axes, order, strict=True):
        if item is None:
            _draw_categories(ax, categories, x0, x1, _WIDTH * _DPI)
        else:
            _draw_numeric(ax, numeric_groups[item], x1, line_colours)

    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    last = axes[-1]
    last.xaxis.set_major_locator(locator)
    last.xaxis.set_major_formatter(formatter)
    last.set_xlim(*_days([x0, x1]))
    last.set_xlabel("time (UTC)", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=8)
    start, end = _title_time(x0), _title_time(x1)
    if start[:10] == end[:10]:
        end = end[11:]
    when = f"{start} to {end} UTC ({text.duration(x1 - x0)})"
    fig.suptitle(f"{title}\n{when}", fontsize=11)
    try:
        fig.savefig(output)
    except ValueError as exc:  # an unknown image format, say
        raise CommandError(f"cannot write {output}: {exc}") from None
