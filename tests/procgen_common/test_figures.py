"""procgen_common.figures: every figure writes a PNG of the size its panels ask for; step and legend labels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from procgen_common import figures
from procgen_common.figures import DPI, Curve, CurvePanel, ScatterPanel, Trace, format_steps, runs_label


def png_shape(path) -> tuple[int, int]:
    """Height and width in pixels of a PNG that OpenCV reads back, with something drawn on it."""
    image = cv2.imread(str(path))
    assert path.read_bytes().startswith(b"\x89PNG") and image is not None and image.std() > 0
    return image.shape[:2]


@pytest.mark.parametrize(("steps", "label"), [(0, "0"), (500, "500"), (250_000, "250k"), (1e6, "1M"), (1.5e6, "1.5M")])
def test_step_labels_are_short(steps, label):
    assert format_steps(steps) == label and format_steps(-steps) == ("-" if steps else "") + label


def test_legend_says_how_many_runs():
    assert runs_label("ppo-learned", 3) == "ppo-learned (3 runs)" and runs_label("ppo-true", 1) == "ppo-true (1 run)"


def test_curves_one_panel_each_with_step_ticks(tmp_path):
    steps = np.linspace(0, 2_000_000, 50)
    line = Curve(steps, np.sqrt(steps), runs_label("a", 3), np.sqrt(steps) - 50, np.sqrt(steps) + 50, "C0")
    demos = Curve([10, 20], [0.5, 0.9], "b", style="-o")
    panels = [CurvePanel("return", [line]), CurvePanel("correlation", [demos], "demos", steps=False, ylim=(-1, 1))]
    fig = figures.curves(tmp_path / "c.png", panels, width=5.0, height=3.6)
    assert png_shape(tmp_path / "c.png") == (round(3.6 * DPI), round(2 * 5.0 * DPI))
    # Step ticks read 0, 500k, 1M, ... (not 1000000 2000000 running together); the demo axis keeps plain numbers.
    step_ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "1M" in step_ticks and "500k" in step_ticks and all(len(t) <= 5 for t in step_ticks)
    assert "10" in [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a (3 runs)"]


def test_twin_curves_scatter_and_traces_have_the_size_asked_for(tmp_path):
    steps = np.arange(0, 1_000_000, 100_000)
    figures.twin_curves(tmp_path / "t.png", Curve(steps, steps * 2.0, "learned"), Curve(steps, -steps, "true"), "x")
    assert png_shape(tmp_path / "t.png") == (round(3.6 * DPI), round(6.0 * DPI))
    x = np.arange(6.0)
    panels = [ScatterPanel(x, 2 * x + k, f"run {k}", "predicted return", "true return") for k in range(5)]
    figures.scatter(tmp_path / "s.png", panels, columns=4, size=4.0)  # 5 panels: 2 rows of 4
    assert png_shape(tmp_path / "s.png") == (round(2 * 3.6 * DPI), round(4 * 4.0 * DPI))
    true = np.zeros(200)
    true[[50, 120]] = 1.0
    traces = [Trace(np.sin(np.arange(200) / 10), true, "demo 0"), Trace(np.ones(3), np.zeros(3), "no reward")]
    figures.reward_traces(tmp_path / "r.png", traces, width=8.0, height=2.2)  # one row per episode
    assert png_shape(tmp_path / "r.png") == (round(2 * 2.2 * DPI), round(8.0 * DPI))
