"""progress.csv logging: fixed columns, blank cells, and dropping redone rows on resume; progress bars."""

from __future__ import annotations

import csv

import pytest

from procgen_common.logger import LogConfig, RunLogger, close_bar, progress_bar
from tests.conftest import terminal_lines


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_columns_are_fixed_and_missing_values_blank(tmp_path):
    logger = RunLogger(tmp_path, ["a", "b"], LogConfig(tensorboard=False))
    logger.log(10, {"a": 1.5})
    logger.log(20, {"a": 0.123456789, "b": None})
    with pytest.raises(AssertionError, match="not columns"):
        logger.log(30, {"c": 1})
    logger.close()
    rows = _rows(tmp_path / "progress.csv")
    assert list(rows[0]) == ["step", "a", "b"]
    assert rows == [{"step": "10", "a": "1.5", "b": ""}, {"step": "20", "a": "0.123457", "b": ""}]


def test_resume_drops_rows_after_the_resumed_step(tmp_path):
    logger = RunLogger(tmp_path, ["a"], LogConfig(tensorboard=False))
    for step in (10, 20, 30, 40):
        logger.log(step, {"a": step / 10})
    logger.close()
    logger = RunLogger(tmp_path, ["a"], LogConfig(tensorboard=False), resume_step=20)
    logger.log(30, {"a": -3})
    logger.close()
    rows = _rows(tmp_path / "progress.csv")
    assert [(r["step"], r["a"]) for r in rows] == [("10", "1"), ("20", "2"), ("30", "-3")]
    header_lines = [line for line in (tmp_path / "progress.csv").read_text().splitlines() if line.startswith("step")]
    assert len(header_lines) == 1


def test_a_bar_stays_when_its_work_ends_and_is_wiped_when_an_error_ends_it(capsys):
    bar = progress_bar(total=4, desc="work")
    try:
        bar.update(2)
    finally:
        close_bar(bar)
    assert [line.split(":")[0] for line in terminal_lines(capsys.readouterr().err)] == ["work"]
    with pytest.raises(ValueError):
        bar = progress_bar(total=4, desc="work")
        try:
            bar.update(2)
            raise ValueError
        finally:
            close_bar(bar)
    assert terminal_lines(capsys.readouterr().err) == []
