"""bench/multigame.py end to end on tiny runs: speed side by side, and held-out return per game and split."""

from __future__ import annotations

import importlib.util
import json

import torch

from tests.conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("bench_multigame", REPO / "bench" / "multigame.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_times_every_game_alone_and_together(tmp_path):
    out = tmp_path / "mg"
    result = _script().main(["speed", "--games", "bigfish", "starpilot", "--num-envs", "4", "--updates", "1",
                             "--repeats", "1", "--out", str(out)])  # fmt: skip
    torch.set_num_threads(1)
    assert len(result["single_game_sps"]) == 2 and len(result["multi_game_sps"]) == 1
    saved = json.loads((out / "speed.json").read_text())
    assert saved["ratio_multi_to_single"] == result["multi_game_sps"][0] / (sum(result["single_game_sps"]) / 2)


def test_learn_evaluates_one_agent_over_the_games_and_one_per_game_on_every_held_out_split(tmp_path):
    out = tmp_path / "mg"
    argv = ["learn", "--games", "bigfish", "starpilot", "--num-envs", "4", "--steps", "2048", "--episodes", "1",
            "--test-num-levels", "50", "--test-splits", "400", "--out", str(out)]  # fmt: skip
    results = _script().main(argv)
    torch.set_num_threads(1)
    assert set(results) == {"multi", "bigfish", "starpilot"}
    assert results["multi"]["steps"] == 2048 and results["bigfish"]["steps"] == 1024
    assert list(results["multi"]["splits"]) == ["test", "test@400"]
    assert set(results["multi"]["splits"]["test@400"]) == {"bigfish", "starpilot"}
    assert set(results["starpilot"]["splits"]["test"]) == {"starpilot"}
    summary = (out / "summary.md").read_text()
    assert "**test@400**" in summary and "one agent per game" in summary and "one agent, 2 games" in summary
    # A rerun trains and evaluates nothing again: its checkpoints and evaluations stay as they were.
    multi = out / "learn" / "multi"
    files = [multi / "checkpoints" / "latest.pt", multi / "eval" / "final-test.json"]
    before = [f.stat().st_mtime_ns for f in files]
    assert _script().main(argv) == results
    torch.set_num_threads(1)
    assert [f.stat().st_mtime_ns for f in files] == before


def test_an_unknown_game_is_one_line_and_writes_nothing(tmp_path, capsys):
    import pytest

    from tests.conftest import assert_one_line_error

    with pytest.raises(SystemExit) as info:
        _script().main(["speed", "--games", "coinrn", "starpilot", "--num-envs", "4", "--out", str(tmp_path / "mg")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "coinrn", "did you mean 'coinrun'")
    assert not (tmp_path / "mg").exists()
