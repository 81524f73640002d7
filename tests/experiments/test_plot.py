"""experiments.plot: figures, plot_data.json and results.md built from synthetic run folders whose values are known (the
statistics themselves: tests/procgen_common/test_stats.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import plot
from experiments.plot import aggregate_curve, make_plots, method_name
from procgen_common.checkpoint import save_checkpoint
from procgen_common.env import normalized_score
from procgen_common.stats import Stats
from tests.conftest import assert_one_line_error

PNG = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["step", "time/sps", "charts/episodic_return", "charts/episodic_length", "eval/test_return"]


# ---- aggregating curves -------------------------------------------------------------------------------


def test_curves_logged_at_different_steps_are_interpolated():
    curves = [(np.array([0, 100, 200]), np.array([0.0, 10, 20])), (np.array([0, 50, 100, 150, 200]), np.zeros(5))]
    curve = aggregate_curve(curves, Stats(reps=200))
    assert curve["step"] == [0, 50, 100, 150, 200]
    np.testing.assert_allclose(curve["value"], [0, 2.5, 5, 7.5, 10])
    # Only the range every run covers is aggregated.
    short = [(np.array([0, 100]), np.array([1.0, 1.0])), (np.array([50, 300]), np.array([3.0, 3.0]))]
    assert aggregate_curve(short, Stats(reps=200))["step"] == [50, 100]


def test_method_names_drop_the_seed():
    assert method_name(Path("runs/ppo-starpilot-nature-seed12")) == "ppo-starpilot-nature"
    assert method_name(Path("runs/seed3_ppo")) == "ppo"
    assert method_name(Path("exp/ppo-true/seed0")) == "ppo-true"
    assert method_name(Path("runs/trex-demos20-seed1"), r"[-_.]?demos\d+") == "trex"


# ---- synthetic run folders ----------------------------------------------------------------------------


def write_policy_run(folder: Path, train: list[float], test: list[float | None], game: str = "starpilot") -> Path:
    """A run folder logged at steps 0, 100, 200, ...: ``train`` every row, ``test`` where not None."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"env:\n  game: {game}\n  distribution_mode: easy\n")
    with (folder / "progress.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for k, (r, t) in enumerate(zip(train, test, strict=True)):
            writer.writerow([100 * k, 1000, r, 50, "" if t is None else t])
    return folder


def write_reward_run(folder: Path, num_demos: int, pearson: float, length_pearson: float, seed: int) -> Path:
    (folder / "eval").mkdir(parents=True)
    (folder / "config.yaml").write_text(f"data:\n  num_demos: {num_demos}\n")
    true = np.arange(6, dtype=float) + seed
    predicted = 2 * true + 1
    scores = {"pair_accuracy": 0.9, "pearson": pearson, "spearman": pearson - 0.1}
    metrics = {
        "game": "starpilot",
        "distribution_mode": "easy",
        "num_demos": 6,
        "learned": scores,
        "episode_length": {"pair_accuracy": 0.8, "pearson": length_pearson, "spearman": length_pearson},
        "untrained_net": {"pair_accuracy": 0.5, "pearson": 0.1, "spearman": None},
    }
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))
    with (folder / "eval" / "predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["demo_id", "true_return", "predicted_return"])
        writer.writerows([f"d{k}", t, p] for k, (t, p) in enumerate(zip(true, predicted, strict=True)))
    return folder


@pytest.fixture
def experiment(tmp_path) -> Path:
    """Three seeds of 'ppo-true' and four of 'ppo-learned' on starpilot; four reward runs."""
    runs = tmp_path / "exp"
    for s in range(3):  # train return s, 10+s, 20+s; held-out 5+s at step 100 and 30+3s at step 200
        write_policy_run(runs / f"ppo-true-seed{s}", [s, 10 + s, 20 + s], [None, 5 + s, 30 + 3 * s])
    for s, final in enumerate([1, 2, 3, 100]):  # an outlier seed: IQM 2.5, mean 26.5
        write_policy_run(runs / f"ppo-learned-seed{s}", [0, 1, 2], [None, 0, final])
    for n, (p, q) in {10: (0.5, 0.7), 20: (0.9, 0.7)}.items():
        for s in range(2):
            write_reward_run(runs / f"trex-demos{n}-seed{s}", n, p + 0.02 * s, q, s)
    return runs


def test_plots_show_the_known_values(experiment, tmp_path):
    data = make_plots([str(experiment)], tmp_path / "out", Stats(reps=500))
    out = tmp_path / "out"
    assert json.loads((out / "plot_data.json").read_text()) == json.loads(json.dumps(data))

    true_train = data["learning_curves"]["starpilot"]["charts/episodic_return"]["ppo-true"]
    assert true_train["step"] == [0, 100, 200] and true_train["runs"] == 3
    np.testing.assert_allclose(true_train["value"], [1, 11, 21])  # means over seeds 0, 1, 2
    assert np.all(np.array(true_train["low"]) <= true_train["value"])
    assert np.all(np.array(true_train["value"]) <= true_train["high"])
    true_test = data["learning_curves"]["starpilot"]["eval/test_return"]["ppo-true"]
    assert true_test["step"] == [100, 200]  # only where the evaluation ran
    np.testing.assert_allclose(true_test["value"], [6, 33])
    assert 30 <= true_test["low"][1] < 33 < true_test["high"][1] <= 36

    final = {row["method"]: row for row in data["final"]}
    assert final["ppo-true"]["test_return"]["value"] == pytest.approx(33)
    assert final["ppo-true"]["train_return"]["value"] == pytest.approx(21)
    score = normalized_score(33, "starpilot", "easy")
    assert final["ppo-true"]["normalized_score"]["value"] == pytest.approx(score)
    assert final["ppo-learned"]["test_return"]["value"] == pytest.approx(26.5)

    results = (out / "results.md").read_text()
    assert "| ppo-true | starpilot (easy) | 3 | 21.00 [" in results
    assert f"| 33.00 [{final['ppo-true']['test_return']['low']:.2f}, " in results
    assert f"| {score:.2f} [" in results and "| ppo-learned | starpilot (easy) | 4 | 2.00 [" in results

    trex = data["trex"]
    assert len(trex["runs"]) == 4 and {r["method"] for r in trex["runs"]} == {"trex"}
    scatter = next(r for r in trex["runs"] if r["run"].endswith("trex-demos10-seed1"))
    np.testing.assert_allclose(scatter["true_return"], np.arange(6) + 1)
    np.testing.assert_allclose(scatter["predicted_return"], 2 * (np.arange(6) + 1) + 1)
    series = trex["correlation_vs_demos"]["trex"]
    assert series["num_demos"] == [10, 20]
    assert [p["value"] for p in series["learned/pearson"]] == pytest.approx([0.51, 0.91])
    assert [p["value"] for p in series["episode_length/pearson"]] == pytest.approx([0.7, 0.7])  # the baseline
    assert series["untrained_net/spearman"] == [None, None]
    assert "| trex-demos20-seed1 | 20 | 6 | 0.900 | 0.920 / 0.700 / 0.100 | 0.820 / 0.700 / n/a |" in results

    for name in ("learning_curves-starpilot.png", "trex_scatter.png", "trex_correlation.png"):
        assert name in data["figures"] and (out / name).read_bytes().startswith(PNG)
        assert f"]({name})" in results


def test_iqm_aggregate_resists_an_outlier_seed(experiment, tmp_path):
    data = make_plots([str(experiment)], tmp_path / "out", Stats(agg="iqm", reps=500))
    final = {row["method"]: row for row in data["final"]}
    assert final["ppo-learned"]["test_return"]["value"] == pytest.approx(2.5)  # middle two of 1, 2, 3, 100
    assert "IQM" in (tmp_path / "out" / "results.md").read_text()


def test_labels_group_runs_and_test_policy_summaries_win(tmp_path):
    a = write_policy_run(tmp_path / "a", [1, 2], [None, 4])
    b = write_policy_run(tmp_path / "b", [3, 4], [None, 8])
    c = write_policy_run(tmp_path / "c", [0, 0], [None, 0], game="coinrun")
    (b / "eval").mkdir()
    (b / "eval" / "latest-test.json").write_text(json.dumps({"mean_return": 20.0}))
    data = make_plots([str(a), str(b), str(c)], tmp_path / "out", Stats(reps=200), labels=["x", "x", "x"])
    rows = {row["game"]: row for row in data["final"]}
    assert rows["starpilot"]["test_return"]["value"] == pytest.approx(12)  # 4 from progress.csv, 20 from the JSON
    assert {r["source"] for r in rows["starpilot"]["per_run"]} == {"progress.csv", "eval/latest-test.json"}
    # Two games: an 'all games' row of normalised scores, resampled within each game.
    assert rows["all games"]["normalized_score"]["runs"] == 3
    assert set(data["learning_curves"]) == {"coinrun", "starpilot"}


def test_reward_model_file_gives_the_demo_count(tmp_path):
    run = write_reward_run(tmp_path / "r", 99, 0.5, 0.5, 0)
    save_checkpoint(run / "reward_net.pt", {"algo": "reward_net", "demos": {"num_train": 8, "num_val": 2}})
    assert plot.training_demo_count(run) == 10


def test_cli_writes_beside_the_runs(experiment, capsys):
    plot.main([str(experiment / "ppo-true-seed0"), str(experiment / "ppo-true-seed1"), "--reps", "200"])
    assert (experiment / "plots" / "results.md").is_file()
    assert "ppo-true (starpilot): held-out return 31.50" in capsys.readouterr().out


def test_runs_without_a_finite_return_are_left_out_with_a_warning_or_refused_alone(tmp_path, capsys):
    good = write_policy_run(tmp_path / "good", [1, 3], [None, 5])
    diverged = write_policy_run(tmp_path / "diverged", [float("nan"), float("inf")], [None, float("nan")])
    data = make_plots([str(good), str(diverged)], tmp_path / "out", Stats(reps=200))
    assert [row["test_return"]["value"] for row in data["final"]] == [5]
    assert [r["run"] for r in data["final"][0]["per_run"]] == [str(good)]
    assert "warning: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        plot.main([str(diverged), "--out", str(tmp_path / "alone")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "diverged/progress.csv has no finite", "nothing to plot")
    assert not (tmp_path / "alone").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "labels", "agg", "reps"])
def test_bad_input_exits_2_with_one_line(experiment, tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    argv, needle = {
        "missing": ([str(tmp_path / "nope")], "is not a folder"),
        "empty": ([str(tmp_path / "empty")], "holds no run"),
        "labels": ([str(experiment), "--labels", "a", "b"], "2 labels for 1 RUN_DIRs"),
        "agg": ([str(experiment), "--agg", "median"], "invalid choice: 'median'"),
        "reps": ([str(experiment), "--reps", "5"], "--reps must be at least 100"),
    }[case]
    with pytest.raises(SystemExit) as info:
        plot.main([*argv, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "out").exists()


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        plot.parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--agg", "--labels", "--reps", "--seed", "RUN_DIR"):
        assert option in text
