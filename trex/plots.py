"""Small PNG plots drawn with OpenCV (already a dependency), so evaluation needs no plotting library.

``scatter_png``: panels of predicted vs true episode return; ``traces_png``: the learned per-step
reward of a few demos with the steps where the game paid a reward marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from procgen_common.checkpoint import atomic_write_bytes

FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, BLUE, RED = (0, 0, 0), (200, 200, 200), (180, 90, 20), (40, 40, 220)  # BGR


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
    """One demo's per-step rewards: learned ``predicted`` and true ``true``, float ``(T,)``."""

    predicted: np.ndarray
    true: np.ndarray
    title: str


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.array([low]) if np.isfinite(low) else np.array([0.0])
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)


def _limits(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.05 or max(abs(low) * 0.05, 0.5)
    return low - pad, high + pad


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, color=BLACK, center: bool = False) -> None:
    if center:
        (w, _), _ = cv2.getTextSize(text, FONT, scale, 1)
        x -= w // 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)


def _axes(img, rect, xlim, ylim, title, xlabel):
    """Draw a frame with ticks and labels inside ``rect = (left, top, right, bottom)``; return data -> pixels."""
    left, top, right, bottom = rect

    def to_px(x, y):
        px = left + (np.asarray(x, float) - xlim[0]) / (xlim[1] - xlim[0]) * (right - left)
        py = bottom - (np.asarray(y, float) - ylim[0]) / (ylim[1] - ylim[0]) * (bottom - top)
        return px, py

    for tick in nice_ticks(*xlim):
        px, _ = to_px(tick, ylim[0])
        cv2.line(img, (int(px), top), (int(px), bottom), GREY, 1)
        _text(img, f"{tick:g}", px, bottom + 14, 0.35, center=True)
    for tick in nice_ticks(*ylim):
        _, py = to_px(xlim[0], tick)
        cv2.line(img, (left, int(py)), (right, int(py)), GREY, 1)
        _text(img, f"{tick:g}", left - 42, py + 4, 0.35)
    cv2.rectangle(img, (left, top), (right, bottom), BLACK, 1)
    _text(img, title, (left + right) // 2, top - 8, 0.45, center=True)
    _text(img, xlabel, (left + right) // 2, bottom + 30, 0.4, center=True)
    return to_px


def _write_png(path: str | Path, img: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", img)
    assert ok, "OpenCV could not encode the plot"
    atomic_write_bytes(path, data.tobytes())


def scatter_png(path: str | Path, panels: list[ScatterPanel], size: int = 320) -> None:
    """Side-by-side scatter plots written as one PNG."""
    margin_left, margin_top, margin_bottom = 55, 30, 45
    img = np.full((size + margin_top + margin_bottom, len(panels) * (size + margin_left + 15), 3), 255, np.uint8)
    for k, panel in enumerate(panels):
        left = k * (size + margin_left + 15) + margin_left
        rect = (left, margin_top, left + size, margin_top + size)
        to_px = _axes(img, rect, _limits(panel.x), _limits(panel.y), panel.title, panel.xlabel)
        _text(img, panel.ylabel, left + 4, margin_top + 14, 0.35, BLUE)
        px, py = to_px(panel.x, panel.y)
        for x, y in zip(px, py, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(img, (int(round(x)), int(round(y))), 3, BLUE, -1, cv2.LINE_AA)
    _write_png(path, img)


def traces_png(path: str | Path, traces: list[Trace], width: int = 720, height: int = 150) -> None:
    """One row per demo: the learned per-step reward (blue line) and red ticks where the true reward was non-zero."""
    margin_left, margin_top, margin_bottom = 55, 28, 40
    row = height + margin_top + margin_bottom
    img = np.full((row * len(traces), width + margin_left + 20, 3), 255, np.uint8)
    for k, trace in enumerate(traces):
        top = k * row + margin_top
        rect = (margin_left, top, margin_left + width, top + height)
        steps = np.arange(len(trace.predicted))
        xlim = (0.0, max(len(steps) - 1, 1))
        to_px = _axes(img, rect, xlim, _limits(trace.predicted), trace.title, "step")
        px, py = to_px(steps, trace.predicted)
        points = np.stack([px, py], 1).round().astype(np.int32)
        cv2.polylines(img, [points], False, BLUE, 1, cv2.LINE_AA)
        for step in np.flatnonzero(trace.true):
            x = int(round(float(to_px(step, 0)[0])))
            cv2.line(img, (x, top + height - 10), (x, top + height), RED, 1)
        _text(img, "learned r", margin_left + 4, top + 14, 0.35, BLUE)
        _text(img, "true r != 0", margin_left + 80, top + 14, 0.35, RED)
    _write_png(path, img)
