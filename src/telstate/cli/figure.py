"""The figure of ``telstate plot``: sensors against a UTC time axis, drawn with matplotlib's Agg.

Layout: one column of subplots sharing the time axis.

* Numeric sensors are lines, one subplot per quantity: keys that differ only by
  their antenna or capture-block part (``m000_pos_actual_scan_azim`` and
  ``m001_pos_actual_scan_azim``) share a subplot, told apart by the legend.
  Integer sensors are drawn as steps (a sensor holds its value until the next
  sample).  The y label is the quantity, with a unit guessed from the key's
  last word (``azim`` → deg, ``wind_speed`` → m/s).
* Categorical sensors (strings and bools, like ``m000_activity``, or numbers
  mixed with them) share one subplot: one row of coloured bands per key, each
  band lasting from a sample to the next (the last to the end of the plot),
  labelled inside when it is wide enough; a legend maps colours to values (one
  colour per value across all rows).

The time axis shows UTC dates when the window lies within matplotlib's dates
(the years 1 to 9999) and spans at least a millisecond.  A sensor timestamp may
be any finite double from 0 up, so otherwise the axis counts seconds after the
window's start (in units of a power of ten when the span nears the largest
double, where matplotlib's tickers overflow); values of that size are scaled
alike.  Every text drawn (key names, values, the title) is escaped first: a
``$`` would start matplotlib's math mode, and control characters and
non-UTF-8 bytes of key names have no glyph.

The figure is built without pyplot (a bare :class:`~matplotlib.figure.Figure`
on an Agg canvas), so nothing global changes and no display is needed; the
warnings matplotlib and numpy give on the way (missing glyphs, overflow in the
tickers) are silenced, as the command's output is the image and one line.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import _text as text
from .._namespaces import ANTENNA_KEY
from .._text import CommandError

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
#: Unix times of matplotlib's first and last dates: 0001-01-01 and 9999-12-31T23:59:59.
_FIRST_DATE: Final = -62135596800.0
_LAST_DATE: Final = 253402300799.0
#: A window shorter than this is drawn in seconds: dates are floats of days, too coarse.
_SHORTEST_DATES: Final = 1e-3
#: Numbers from this size up are drawn scaled by a power of ten (tickers overflow near 1e308).
_HUGE: Final = 1e300


def unit(key: str) -> str | None:
    """A unit guessed from the last word of the key, or None."""
    last = key.rsplit("_", 1)[-1].lower()
    return next((name for words, name in _UNITS if last in words), None)


def quantity(key: str) -> str:
    """The key without a leading antenna or capture-block part."""
    if ANTENNA_KEY.match(key):
        return key.split("_", 1)[1]
    head, sep, rest = key.partition("_")
    return rest if sep and head.isdigit() and rest else key


def _is_number(value: Any) -> bool:
    # numpy's timedelta64 is registered as an Integral, but float() refuses it
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.timedelta64)


def _is_category(value: Any) -> bool:
    return isinstance(value, str | bytes | bool | np.bool_ | np.str_)


def drawable(shown: str) -> str:
    """`shown` as matplotlib draws it literally: ``$`` escaped (it starts math mode),
    control characters and lone surrogates as escapes (see :func:`text.printable`)."""
    return text.printable(shown).replace("$", r"\$")


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


def _power_of_ten(largest: float) -> float:
    """1, or the power of ten that brings `largest` below 10 if it is huge."""
    return 10.0 ** math.floor(math.log10(largest)) if largest >= _HUGE else 1.0


@dataclass(frozen=True)
class TimeAxis:
    """How Unix times map to x: matplotlib dates, or seconds after `origin` in `unit` s."""

    dates: bool
    origin: float = 0.0
    unit: float = 1.0

    @classmethod
    def fitting(cls, x0: float, x1: float) -> TimeAxis:
        """Dates if the window `x0`..`x1` has room for them, else seconds after `x0`."""
        if x0 >= _FIRST_DATE and x1 <= _LAST_DATE and x1 - x0 >= _SHORTEST_DATES:
            return cls(dates=True)
        return cls(dates=False, origin=x0, unit=_power_of_ten(x1 - x0))

    def __call__(self, times: Sequence[float] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.dates:
            return _days(times)
        shifted: np.ndarray[Any, Any] = (np.asarray(times, dtype=float) - self.origin) / self.unit
        return shifted

    def label(self) -> str:
        if self.dates:
            return "time (UTC)"
        unit = "seconds" if self.unit == 1.0 else f"units of {self.unit:g} s"
        return drawable(f"{unit} after {text.utc(self.origin)}")


def _title_time(timestamp: float) -> str:
    """``2019-04-23 09:39:05`` (milliseconds only when there are some)."""
    shown = text.utc(timestamp).replace("T", " ").rstrip("Z")
    return shown[:-4] if shown.endswith(".000") else shown


def _window(x0: float, x1: float, axis: TimeAxis) -> str:
    """The window for the title: ``2019-04-23 09:39:05 to 09:49:04 UTC (9 min 59 s)``."""
    if not axis.dates:
        return f"{text.utc(x0)} to {text.utc(x1)} ({text.duration(x1 - x0)})"
    start, end = _title_time(x0), _title_time(x1)
    if start[:10] == end[:10]:
        end = end[11:]
    return f"{start} to {end} UTC ({text.duration(x1 - x0)})"


def _classify(key: str, samples: Samples) -> str:
    values = [value for value, _ in samples]
    if all(_is_number(v) or v is None for v in values) and any(v is not None for v in values):
        return "numeric"
    if all(_is_category(v) or _is_number(v) or v is None for v in values):
        return "category"  # strings and bools, or numbers among them: bands of states
    odd = next(v for v in values if not (_is_number(v) or _is_category(v) or v is None))
    raise CommandError(
        f"cannot plot {key}: its values include {type(odd).__name__}s "
        "(numbers, strings and bools can be plotted)"
    )


def _draw_numeric(
    ax: Axes, group: list[tuple[str, Samples]], axis: TimeAxis, x1: float, colours: Iterator[Any]
) -> None:
    lines = []
    for key, samples in group:
        values = np.array([np.nan if v is None else float(v) for v, _ in samples])
        values[~np.isfinite(values)] = np.nan  # NaN and infinities: gaps
        lines.append((key, samples, values))
    largest = max((np.nanmax(np.abs(v)) for _, _, v in lines if not np.isnan(v).all()), default=0)
    scale = _power_of_ten(float(largest))
    for key, samples, values in lines:
        values /= scale
        times = axis([t for _, t in samples])
        integral = all(isinstance(v, numbers.Integral) for v, _ in samples)
        if integral:  # a held value: extend the last step to the end of the plot
            times = np.append(times, axis([x1]))
            values = np.append(values, values[-1])
        ax.plot(
            times,
            values,
            label=drawable(key),
            color=next(colours),
            linewidth=1.3,
            drawstyle="steps-post" if integral else "default",
            marker="." if len(samples) <= 60 else None,
        )
    name = quantity(group[0][0])
    found = unit(group[0][0])
    label = f"{name} [{found}]" if found else name
    if scale != 1.0:
        label += f" (in units of {scale:g})"
    ax.set_ylabel(drawable(label), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def _draw_categories(
    ax: Axes,
    group: list[tuple[str, Samples]],
    axis: TimeAxis,
    x0: float,
    x1: float,
    fig_width_px: float,
) -> None:
    colours: dict[str, Any] = {}
    palette = _STATE_PALETTE
    left_x, right_x = axis([x0, x1])
    span_x = float(right_x - left_x)
    axis_px = 0.78 * fig_width_px  # the axes' share of the figure width, roughly
    for row, (_, samples) in enumerate(group):
        y = len(group) - 1 - row
        for i, (value, start) in enumerate(samples):
            end = samples[i + 1][1] if i + 1 < len(samples) else x1
            start, end = max(start, x0), min(end, x1)
            if end <= start:
                continue
            label = drawable(_label(value))
            colour = colours.setdefault(label, palette[len(colours) % len(palette)])
            left, right = axis([start, end])
            ax.broken_barh(
                [(left, right - left)],
                (y - 0.35, 0.7),
                facecolors=colour,
                edgecolor="white",
                linewidth=0.5,
            )
            room = (right - left) / span_x * axis_px / _CHAR_PIXELS if span_x > 0 else 0
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
    ax.set_yticks(range(len(group)), [drawable(key) for key, _ in reversed(group)], fontsize=8)
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
    if x1 <= x0:  # a single instant (or samples all before --st): a minute around it
        x0, x1 = x0 - 30.0, x0 + 30.0
    axis = TimeAxis.fitting(x0, x1)

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
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        axes = fig.subplots(len(order), 1, sharex=True, height_ratios=heights, squeeze=False)
        axes = axes[:, 0]
        line_colours = itertools.cycle(_PALETTE)
        for ax, item in zip(axes, order, strict=True):
            if item is None:
                _draw_categories(ax, categories, axis, x0, x1, _WIDTH * _DPI)
            else:
                _draw_numeric(ax, numeric_groups[item], axis, x1, line_colours)

        last = axes[-1]
        left, right = (float(x) for x in axis([x0, x1]))
        if right <= left:  # an instant at a time so big that 30 s are lost in rounding
            left, right = -30.0, 30.0
        if axis.dates:
            locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
            formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
            last.xaxis.set_major_locator(locator)
            last.xaxis.set_major_formatter(formatter)
        last.set_xlim(left, right)
        last.set_xlabel(axis.label(), fontsize=9)
        for ax in axes:
            ax.tick_params(labelsize=8)
        fig.suptitle(f"{drawable(title)}\n{drawable(_window(x0, x1, axis))}", fontsize=11)
        try:
            fig.savefig(output)
        except ValueError as exc:  # an unknown image format, say
            raise CommandError(f"cannot write {output}: {text.first_line(exc)}") from None
