"""One agent over several games (env.games): each game's recent episodes, evaluation returns and the mean
normalised score in progress.csv; checkpoints that keep both games, resume, load and play each game; every
algorithm (PPO, recurrent PPO, Rainbow) trains on two games; single-game runs log exactly as before."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from baseline_agent.train import PPO_COLUMNS
from policies.train import main as policies_main
from procgen_common.agents import load_agent
from procgen_common.checkpoint import load_checkpoint
from procgen_common.env import normalized_score
from procgen_common.evaluation import run_episodes
from procgen_common.training_run import COMMON_COLUMNS, EVAL_COLUMNS, EpisodeStats
from tests.conftest import assert_one_line_error, tiny_config, train_tiny
from tests.policies.conftest import policy_config, policy_overrides, save_reward_model, train_policy

# Two games whose random-play episodes end within ~150 steps (a random coinrun agent rarely finishes one in 400),
# so a tiny run has finished episodes of each game to log.
GAMES = ["bigfish", "starpilot"]
STEPS = 1024  # 256 steps per env, 2 envs per game
MULTI = (
    f"env.games=[{','.join(GAMES)}]",
    f"train.total_steps={STEPS}",
    f"eval.every_steps={STEPS}",  # one evaluation, at the end
    "eval.episodes=2",
    "env.test_start_level=100",
)
PER_GAME = [f"charts/{g}/{stat}" for g in GAMES for stat in ("episodic_return", "episodic_length")]


def read_progress(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A finished two-game run of each algorithm, 1024 steps (read-only)."""
    root = tmp_path_factory.mktemp("multigame")
    return {
        "ppo": train_tiny(root / "ppo", *MULTI),
        "ppo_gru": train_policy(root / "ppo_gru", "ppo_gru", *MULTI),
        "rainbow": train_policy(root / "rainbow", "rainbow", *MULTI),
    }


@pytest.mark.parametrize("algo", ["ppo", "ppo_gru", "rainbow"])
def test_a_two_game_run_logs_each_game_and_the_mean_normalized_score(runs, algo):
    header, rows = read_progress(runs[algo])
    for column in [*PER_GAME, "charts/normalized_score", "eval/test_normalized_score"]:
        assert column in header
    assert [f"eval/{g}/test_return" for g in GAMES] == [c for c in header if c.count("/") == 2 and "test" in c]
    last = rows[-1]
    assert all(last[c] != "" for c in PER_GAME), last
    # The mean over the games of each game's recent mean return, normalised.
    scores = [normalized_score(float(last[f"charts/{g}/episodic_return"]), g, "easy") for g in GAMES]
    assert float(last["charts/normalized_score"]) == pytest.approx(np.mean(scores), rel=1e-5)
    # The evaluation at the end: each game's return, their mean, and the mean normalised score.
    eval_returns = [float(last[f"eval/{g}/test_return"]) for g in GAMES]
    assert float(last["eval/test_return"]) == pytest.approx(np.mean(eval_returns), rel=1e-5)
    scores = [normalized_score(r, g, "easy") for g, r in zip(GAMES, eval_returns, strict=True)]
    assert float(last["eval/test_normalized_score"]) == pytest.approx(np.mean(scores), rel=1e-5)
    assert last["eval/train_normalized_score"] == ""  # splits not evaluated stay empty


@pytest.mark.parametrize("algo", ["ppo", "ppo_gru", "rainbow"])
def test_a_two_game_checkpoint_loads_and_plays_both_games(runs, algo):
    path = runs[algo] / "checkpoints" / "latest.pt"
    checkpoint = load_checkpoint(path)
    assert sorted(checkpoint["recent_game_returns"]) == GAMES  # resume keeps each game's recent episodes
    assert all(checkpoint["recent_game_returns"][g] for g in GAMES)
    agent, _, env_config = load_agent(path)
    assert env_config.game_list == GAMES
    results = run_episodes(agent, env_config, "test", episodes=2, seed=1)
    assert results.games.tolist() == [GAMES[0]] * 2 + [GAMES[1]] * 2


def _finished(game: str, ret: float, length: int) -> tuple[np.ndarray, list[dict]]:
    return np.array([True]), [{"episode": {"r": ret, "l": length, "game": game}}]


def test_episode_stats_keep_each_game_and_resume_them():
    stats = EpisodeStats(GAMES, "easy")
    stats.record(*_finished("bigfish", 10.0, 50))
    assert stats.metrics()["charts/normalized_score"] is None  # until every game has an episode
    assert stats.metrics()["charts/starpilot/episodic_return"] is None
    stats.record(*_finished("starpilot", 20.0, 70))
    stats.record(*_finished("starpilot", 30.0, 90))
    metrics = stats.metrics()
    assert metrics["charts/starpilot/episodic_return"] == 25.0 and metrics["charts/starpilot/episodic_length"] == 80
    assert metrics["charts/episodic_return"] == 20.0
    expected = np.mean([normalized_score(10.0, "bigfish", "easy"), normalized_score(25.0, "starpilot", "easy")])
    assert metrics["charts/normalized_score"] == pytest.approx(expected)

    resumed = EpisodeStats(GAMES, "easy")
    resumed.load_state_dict(stats.state_dict())
    assert resumed.metrics() == metrics
    # A checkpoint from before multi-game runs (no per-game entries) still loads; the games start empty.
    old = {k: v for k, v in stats.state_dict().items() if not k.startswith("recent_game_")}
    resumed = EpisodeStats(GAMES, "easy")
    resumed.load_state_dict(old)
    assert resumed.metrics()["charts/episodic_return"] == 20.0
    assert resumed.metrics()["charts/bigfish/episodic_return"] is None


def test_a_single_game_run_logs_the_same_columns_as_before(tiny_run):
    header, rows = read_progress(tiny_run)
    assert header == ["step", *COMMON_COLUMNS, *PPO_COLUMNS, *EVAL_COLUMNS]
    assert "charts/normalized_score" not in header
    assert "recent_game_returns" not in load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    assert EpisodeStats(["starpilot"]).metrics().keys() == EpisodeStats().metrics().keys()


def test_the_default_run_folder_names_every_game(tmp_path):
    games = f"env.games=[{','.join(GAMES)}]"
    assert tiny_config(tmp_path, "run.dir=null", games).run_dir == Path("runs/ppo-bigfish+starpilot-nature-seed0")
    config = policy_config(tmp_path, "rainbow", "run.dir=null", games)
    assert config.run_dir == Path("runs/rainbow-bigfish+starpilot-env-seed0")


def test_a_one_game_reward_model_is_refused_on_several_games(tmp_path, capsys):
    # A starpilot reward model would otherwise silently reward bigfish too (env.game stays starpilot).
    run_dir, model = tmp_path / "run", save_reward_model(tmp_path / "starpilot.pt", game="starpilot")
    args = policy_overrides(run_dir, "ppo", f"env.games=[{','.join(GAMES)}]", "reward.source=learned")
    with pytest.raises(SystemExit) as info:
        policies_main([*args, f"reward.model={model}"])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "starpilot demos", "env.games is bigfish+starpilot")
    assert not run_dir.exists()
