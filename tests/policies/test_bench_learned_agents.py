"""bench/learned_agents.py: a learned-reward agent's held-out return beside its zoo series' references."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from procgen_common.cli import UserError
from procgen_common.evaluation import evaluate_checkpoint
from procgen_common.stats import verdict
from tests.conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("bench_learned_agents", REPO / "bench" / "learned_agents.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zoo_rows(series: str) -> dict:
    rows = json.loads((REPO / "zoo" / series / "evaluation.json").read_text())["checkpoints"]
    return {row["step"]: row for row in rows}


def test_an_agent_is_evaluated_and_set_beside_random_best_demonstrator_and_true_reward_ppo(tmp_path):
    run = tmp_path / "starpilot-seed0"
    run.mkdir()
    # A learned-reward run's stand-in: a zoo checkpoint (a real agent of the game), a log with both returns.
    shutil.copy(REPO / "zoo" / "starpilot" / "step_000507904.pt", run / "step_000507904.pt")
    (run / "progress.csv").write_text(
        "step,charts/episodic_return,charts/learned_return\n16384,1.0,0.5\n32768,0.5,2.0\n"
    )
    out = tmp_path / "out"
    games = _script().main(["--runs", str(run), "--best", "zoo:starpilot/step_001015808", "--episodes", "4",
                            "--out", str(out)])  # fmt: skip
    entry = games["starpilot"]
    [agent] = entry["agents"]
    evaluation = json.loads((run / "eval" / "step_000507904-test.json").read_text())
    assert agent["step"] == 507904 and agent["mean_return"] == evaluation["mean_return"]
    assert evaluation["episodes"] == 4 and evaluation["seed"] == 0
    rows = _zoo_rows("starpilot")
    random, demo, true = entry["references"].values()
    assert random["mean_return"] == rows[0]["mean_return"]
    # The best demonstrator plays the agent's 4 episodes here, so the two compare episode for episode.
    replay, _ = evaluate_checkpoint(REPO / "zoo" / "starpilot" / "step_001015808.pt", "test", 4, 0,
                                    out=tmp_path / "replay.json")  # fmt: skip
    assert demo["mean_return"] == replay["mean_return"] and demo["step"] == 1015808
    assert true["step"] == 507904  # the first series step at or after the agent's
    assert entry["beats_best_demonstrator"] == (agent["mean_return"] > demo["ci95_return"][1])
    assert entry["fraction_of_true_reward_ppo"] == pytest.approx(agent["mean_return"] / true["mean_return"])
    assert (out / "hacking-starpilot-seed0.png").stat().st_size > 0
    assert "| agent on the learned reward, starpilot-seed0 | 507,904 |" in (out / "summary.md").read_text()


def test_each_agent_and_the_pooled_seeds_get_a_verdict_by_the_ci_of_the_difference(tmp_path):
    runs = []
    for seed, step in ((0, "step_000000000"), (1, "step_002015232")):  # a random policy and the zoo's best agent
        run = tmp_path / f"starpilot-seed{seed}"
        run.mkdir()
        shutil.copy(REPO / "zoo" / "starpilot" / f"{step}.pt", run / f"{step}.pt")
        (run / "progress.csv").write_text("step,charts/episodic_return,charts/learned_return\n16384,1.0,0.5\n")
        runs.append(str(run))
    out = tmp_path / "out"
    entry = _script().main(["--runs", *runs, "--best", "zoo:starpilot/step_000000000", "--best-epsilon", "1",
                            "--episodes", "40", "--out", str(out)])["starpilot"]  # fmt: skip
    weak, strong = entry["agents"]
    best = _returns(out / "best-starpilot-step_000000000-eps1.csv")
    for agent, run in zip((weak, strong), runs, strict=True):
        mine = _returns(next((tmp_path / run / "eval").glob("*-test.csv")))
        word, ci = verdict(mine, best)
        assert agent["against_best"] == {"verdict": word, "ci95_difference": list(ci)}
    # The trained agent beats a uniform-random best demonstration; the untrained one (near-uniform) does not.
    assert strong["against_best"]["verdict"] == "beats" and weak["against_best"]["verdict"] != "beats"
    pooled = np.concatenate([_returns(next((tmp_path / r / "eval").glob("*-test.csv"))) for r in runs])
    word, ci = verdict(pooled, best)
    assert entry["pooled_against_best"]["learned"] == {"verdict": word, "ci95_difference": list(ci)}
    summary = (out / "summary.md").read_text()
    assert f"| {word} [{ci[0]:+.2f}, {ci[1]:+.2f}] (episodes of all seeds pooled) |" in summary


def _returns(csv_file) -> np.ndarray:
    with open(csv_file, newline="") as f:
        return np.array([float(row["return"]) for row in csv.DictReader(f)])


def test_a_length_reward_run_is_listed_beside_and_kept_out_of_the_goals(tmp_path):
    runs = []
    # Two folders of one name (the same seed), one per reward.
    for folder, step, source in (("learned", "step_000507904", None), ("length", "step_000000000", "length")):
        run = tmp_path / folder / "starpilot-seed0"
        run.mkdir(parents=True)
        checkpoint = torch.load(REPO / "zoo" / "starpilot" / f"{step}.pt", weights_only=True)
        if source:  # what policies.train records for reward.source=length
            checkpoint["config"]["reward"] = {"source": source}
        torch.save(checkpoint, run / f"{step}.pt")
        (run / "progress.csv").write_text("step,charts/episodic_return,charts/learned_return\n16384,1.0,0.5\n")
        runs.append(str(run))
    out = tmp_path / "out"
    games = _script().main(["--runs", *runs, "--best", "zoo:starpilot/step_001015808", "--episodes", "3",
                            "--out", str(out)])  # fmt: skip
    entry = games["starpilot"]
    learned, length = entry["agents"]
    assert (learned["reward"], length["reward"]) == ("learned", "length")
    assert entry["mean_of_seeds"] == learned["mean_return"] != length["mean_return"]
    assert entry["mean_of_seeds_by_reward"] == {"learned": learned["mean_return"], "length": length["mean_return"]}
    true = list(entry["references"].values())[2]
    assert entry["fraction_of_true_reward_ppo"] == pytest.approx(learned["mean_return"] / true["mean_return"])
    summary = (out / "summary.md").read_text()
    assert "| agent on the length reward, starpilot-seed0-length | 0 |" in summary
    assert {p.name for p in out.glob("*.png")} == {"hacking-starpilot-seed0.png", "hacking-starpilot-seed0-length.png"}
    assert "| agent on the learned reward, mean of 1 seeds | |" in summary


def test_step_picks_the_checkpoint_at_that_series_step_and_a_missing_one_is_one_line(tmp_path, capsys):
    run = tmp_path / "starpilot-seed0"
    run.mkdir()
    for name in ("step_000000000.pt", "step_000507904.pt"):
        shutil.copy(REPO / "zoo" / "starpilot" / name, run / name)
    (run / "progress.csv").write_text("step,charts/episodic_return,charts/learned_return\n16384,1.0,0.5\n")
    argv = [
        "--runs",
        str(run),
        "--best",
        "zoo:starpilot/step_001015808",
        "--episodes",
        "2",
        "--out",
        str(tmp_path / "o"),
    ]
    games = _script().main([*argv, "--step", "0"])
    [agent] = games["starpilot"]["agents"]
    assert agent["step"] == 0 and (run / "eval" / "step_000000000-test.json").is_file()
    assert not (run / "eval" / "step_000507904-test.json").exists()  # the newest was not played
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _script().main([*argv, "--step", "1000"])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: --step: {run} has no checkpoint at step 1000; it has 0, 507904"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--best", "runs/ppo/step_1.pt"], "--best: runs/ppo/step_1.pt is not a zoo checkpoint; name one as"),
        (["--best", "zoo:starpilot"], "--best: zoo:starpilot is not a zoo checkpoint"),
        (["--best", "zoo:nosuch/step_1"], "zoo:nosuch/step_1: the zoo has no 'nosuch' series"),
        (["--best", "zoo:starpilot/step_000000000", "--episodes", "0"], "--episodes: 0; give at least 1"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _script().main(["--runs", str(tmp_path), *argv, "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}")
    assert not (tmp_path / "o").exists()


def test_a_noisy_best_demonstration_is_played_with_its_noise_on_the_same_episodes(tmp_path):
    run = tmp_path / "starpilot-seed0"
    run.mkdir()
    shutil.copy(REPO / "zoo" / "starpilot" / "step_000507904.pt", run / "step_000507904.pt")
    (run / "progress.csv").write_text("step,charts/episodic_return,charts/learned_return\n16384,1.0,0.5\n")
    out = tmp_path / "out"
    games = _script().main(["--runs", str(run), "--best", "zoo:starpilot/step_001015808", "--best-epsilon", "0.5",
                            "--episodes", "3", "--out", str(out)])  # fmt: skip
    name, demo = list(games["starpilot"]["references"].items())[1]
    assert name == "best demonstrator (zoo:starpilot/step_001015808, epsilon 0.5)"
    replay, _ = evaluate_checkpoint(REPO / "zoo" / "starpilot" / "step_001015808.pt", "test", 3, 0, epsilon=0.5,
                                    out=tmp_path / "replay.json")  # fmt: skip
    assert demo["mean_return"] == replay["mean_return"] and replay["epsilon"] == 0.5
    assert json.loads((out / "best-starpilot-step_001015808-eps0.5.json").read_text())["epsilon"] == 0.5
    with pytest.raises(SystemExit) as info:
        _script().main(["--runs", str(run), "--best", "zoo:starpilot/step_001015808", "--best-epsilon", "2",
                        "--out", str(out)])  # fmt: skip
    assert info.value.code == 2


def test_fractions_of_true_reward_ppo_hold_only_where_they_mean_something():
    fractions = _script().fractions_of_true_reward_ppo
    # starpilot's headline: 3.40 against PPO's 4.79, random 1.45.
    assert fractions(3.40, 1.45, 4.79) == pytest.approx(
        {"fraction_of_true_reward_ppo": 3.40 / 4.79, "fraction_of_true_reward_ppo_gain": (3.40 - 1.45) / (4.79 - 1.45)}
    )
    # fruitbot's early returns are negative: no ratio of returns, but the share of PPO's gain over random.
    assert fractions(-1.9, -2.39, -1.42) == pytest.approx(
        {"fraction_of_true_reward_ppo": None, "fraction_of_true_reward_ppo_gain": (-1.9 + 2.39) / (-1.42 + 2.39)}
    )
    # PPO no better than random: no gain to share.
    assert fractions(1.0, 1.5, 1.2)["fraction_of_true_reward_ppo_gain"] is None


def test_runs_are_named_by_their_folders_with_parents_only_where_folders_share_a_name(tmp_path):
    names = _script().run_names
    assert names([tmp_path / "a" / "starpilot-seed0", tmp_path / "b" / "starpilot-seed1"], ["learned"] * 2) == [
        "starpilot-seed0",
        "starpilot-seed1",
    ]
    # A control on another reward keeps its folder's name, told apart by the reward.
    assert names([tmp_path / "a" / "s0", tmp_path / "b" / "s0"], ["learned", "length"]) == ["s0", "s0-length"]
    # A sweep's pipeline cells all call their agent agent-learned.
    cells = [tmp_path / "sweep" / "cell" / f"seed{s}" / "agent-learned" for s in (0, 1)]
    assert names(cells, ["learned"] * 2) == ["seed0-agent-learned", "seed1-agent-learned"]
    with pytest.raises(UserError, match="given twice"):
        names([cells[0], cells[0]], ["learned"] * 2)
