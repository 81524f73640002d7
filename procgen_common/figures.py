"""Every figure of the project, drawn with matplotlib's Agg renderer (no display) to PNG: ``curves`` (lines with
confidence bands, e.g. learning curves against environment steps written as 250k / 1M), ``twin_curves`` (two lines,
one y-axis each), ``scatter`` (e.g. predicted against true return), ``reward_traces`` (learned and true reward
of every step of an episode) and ``bars`` (grouped bars with confidence intervals, e.g. held-out return per method and
sweep cell). Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from procgen_common.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110  # a figure of W x H inches is W * DPI x H * DPI pixels


def format_steps(steps: float, pos: int | None = None) -> str:
    """A step count as a short tick label: 250000 -> '250k', 1500000 -> '1.5M' (``pos``: matplotlib's tick index)."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(steps) >= scale:
            return f"{steps / scale:.4g}{unit}"
    return f"{steps:.4g}"


def runs_label(name: str, runs: int) -> str:
    """A legend entry saying how many runs a line averages: 'ppo (3 runs)', 'ppo (1 run)'."""
    return f"{name} ({runs} run{'' if runs == 1 else 's'})"


@dataclass(frozen=True)
class Curve:
    """One line: ``value`` at ``x`` (float ``(n,)``), with a band from ``low`` to ``high`` where given."""

    x: Sequence[float]
    value: Sequence[float]
    label: str
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    color: str | None = None
    style: str = "-"
    """Matplotlib format string: '-' a line, '-o' a line with markers, '--s' dashed with squares."""


@dataclass(frozen=True)
class CurvePanel:
    """One panel of ``curves``; ``steps`` formats the x-axis as environment steps (250k, 1M)."""

    title: str
    curves: list[Curve]
    xlabel: str = "environment steps"
    ylabel: str = ""
    steps: bool = True
    ylim: tuple[float, float] | None = None


@dataclass(frozen=True)
class ScatterPanel:
    """One scatter plot: points ``(x[i], y[i])``, float ``(n,)``."""

    x: np.ndarray
    y: np.ndarray
    title: str
    xlabel: str
    ylabel: str


@dataclass(frozen=True)
class Trace:
    """One episode's per-step rewards: learned ``predicted`` and true ``true``, float ``(T,)``."""

    predicted: np.ndarray
    true: np.ndarray
    title: str


@dataclass(frozen=True)
class Bars:
    """One series of a grouped bar chart: a bar per group of height ``value`` (float ``(groups,)``; NaN: no bar),
    with an error bar from ``low`` to ``high`` where given."""

    value: Sequence[float]
    label: str
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None


@dataclass(frozen=True)
class BarPanel:
    """One panel of ``bars``: a group of bars per entry of ``groups`` (the x tick labels), one bar per series."""

    title: str
    groups: Sequence[str]
    bars: Sequence[Bars]
    ylabel: str = ""


def _figure(rows: int, columns: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``rows`` x ``columns`` panels of ``width`` x ``height`` inches, and its axes in reading order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # the object API, without pyplot's global state or a display

    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, columns, k + 1) for k in range(rows * columns)]


def _label(ax, title: str, xlabel: str, ylabel: str = "", steps: bool = False, size: int = 10) -> None:
    """Title, axis labels and a light grid; ``steps`` writes the x ticks as 250k, 1M."""
    from matplotlib.ticker import FuncFormatter

    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_fontsize(size)
    ax.grid(alpha=0.3)
    if steps:
        ax.xaxis.set_major_formatter(FuncFormatter(format_steps))


def _save(fig: Figure, path: str | Path) -> Figure:
    """Write ``fig`` as a PNG (atomically) and return it, its ticks laid out, for a caller to inspect."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return fig


def curves(path: str | Path, panels: Sequence[CurvePanel], width: float = 5.0, height: float = 3.6) -> Figure:
    """Panels side by side, each a set of lines with their confidence bands and a legend."""
    fig, axes = _figure(1, len(panels), width, height)
    for ax, panel in zip(axes, panels, strict=True):
        for curve in panel.curves:
            ax.plot(curve.x, curve.value, curve.style, color=curve.color, label=curve.label, ms=4)
            if curve.low is not None and curve.high is not None:
                ax.fill_between(curve.x, curve.low, curve.high, color=ax.lines[-1].get_color(), alpha=0.2, lw=0)
        _label(ax, panel.title, panel.xlabel, panel.ylabel, panel.steps)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        if panel.curves:
            ax.legend(fontsize=8)
    return _save(fig, path)


def twin_curves(path: str | Path, left: Curve, right: Curve, title: str, width: float = 6.0) -> Figure:
    """Two lines against environment steps on one panel, each on its own y-axis, labelled in its colour."""
    fig, (ax,) = _figure(1, 1, width, 3.6)
    _label(ax, title, "environment steps", steps=True)
    for axis, curve, color in ((ax, left, left.color or "C1"), (ax.twinx(), right, right.color or "C0")):
        axis.plot(curve.x, curve.value, curve.style, color=color, label=curve.label)
        axis.set_ylabel(curve.label, color=color)
    return _save(fig, path)


def scatter(path: str | Path, panels: Sequence[ScatterPanel], columns: int = 4, size: float = 4.0) -> Figure:
    """Scatter panels in a grid of at most ``columns`` per row."""
    columns = min(len(panels), columns)
    rows = math.ceil(len(panels) / columns)
    fig, axes = _figure(rows, columns, size, 0.9 * size)
    for ax, panel in zip(axes, panels, strict=False):
        ax.scatter(panel.x, panel.y, s=14, alpha=0.75)
        _label(ax, panel.title, panel.xlabel, panel.ylabel, size=9)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return _save(fig, path)


def reward_traces(path: str | Path, traces: Sequence[Trace], width: float = 8.0, height: float = 2.2) -> Figure:
    """One row per episode: the learned reward of every step (line, left axis) and the true reward where the game
    paid one (stems, right axis)."""
    fig, axes = _figure(len(traces), 1, width, height)
    for ax, trace in zip(axes, traces, strict=True):
        _label(ax, trace.title, "step", size=9)
        ax.plot(trace.predicted, color="C0", lw=0.9)
        ax.set_ylabel("learned r", color="C0")
        ax.set_xlim(0, max(len(trace.predicted) - 1, 1))
        paid = np.flatnonzero(trace.true)
        twin = ax.twinx()
        twin.vlines(paid, 0, trace.true[paid], color="C3", lw=1.2)
        twin.set_ylabel("true r", color="C3")
    return _save(fig, path)


def bars(path: str | Path, panels: Sequence[BarPanel], height: float = 3.8) -> Figure:
    """Panels side by side, each a grouped bar chart: one group per entry of ``groups``, one bar per series with
    its confidence interval as an error bar, and a legend; the panels are as wide as their groups need."""

    def needs(panel: BarPanel) -> float:  # inches: the bars of a group, or its label's longest line at 7 points
        longest = max((len(line) for g in panel.groups for line in g.splitlines()), default=0)
        return len(panel.groups) * max(0.3 * len(panel.bars), 0.065 * longest) + 1.5

    width = max(4.5, *(needs(p) for p in panels))
    fig, axes = _figure(1, len(panels), width, height)
    for ax, panel in zip(axes, panels, strict=True):
        x = np.arange(len(panel.groups))
        step = 0.8 / max(len(panel.bars), 1)
        for k, series in enumerate(panel.bars):
            value = np.asarray(series.value, dtype=float)
            error = None
            if series.low is not None and series.high is not None:
                below = value - np.asarray(series.low, dtype=float)
                above = np.asarray(series.high, dtype=float) - value
                # a percentile interval need not hold the estimate; no interval (NaN) draws no error bar
                error = np.nan_to_num(np.clip(np.stack([below, above]), 0, None))
            offset = (k - (len(panel.bars) - 1) / 2) * step
            ax.bar(x + offset, value, step, yerr=error, capsize=2, label=series.label)
        _label(ax, panel.title, "", panel.ylabel)
        tilt = len(panel.groups) > 8  # else level: a label may hold several lines
        ax.set_xticks(x, list(panel.groups), rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=7)
        ax.axhline(0, color="grey", lw=0.5)
        if panel.bars:
            ax.legend(fontsize=7)
    return _save(fig, path)
