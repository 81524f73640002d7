"""Held-out evaluation: the ranking scores by hand, and the stand-alone command on a trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trex.evaluate_reward import (
    UNTRAINED_SEED_OFFSET,
    average_ranks,
    main,
    pair_accuracy,
    pearson,
    ranking_scores,
    spearman,
    trace_demos,
)


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([10.0, 30.0, 20.0, 20.0])), [0.0, 3.0, 1.5, 1.5])


def test_correlations_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, x**3) < 1.0
    # Ties: ranks [0, 1.5, 1.5, 3] against [0, 1, 2, 3] -> 4.5 / sqrt(4.5 * 5) (scipy.stats.spearmanr agrees)
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), x) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert pearson(x, np.ones(4)) is None and pearson(x[:1], x[:1]) is None


def test_pair_accuracy_skips_true_ties_and_halves_predicted_ties():
    true = np.array([1.0, 2.0, 3.0, 3.0])
    predicted = np.array([0.0, 5.0, 5.0, 9.0])
    # Pairs with different true return: (0,1) right, (0,2) right, (0,3) right, (1,2) tie, (1,3) right.
    assert pair_accuracy(predicted, true) == pytest.approx(4.5 / 5)
    assert pair_accuracy(predicted, np.ones(4)) is None
    scores = ranking_scores(-true, true)
    assert scores.pair_accuracy == 0.0 and scores.pearson == pytest.approx(-1.0)


def test_trace_demos_spread_over_the_returns():
    class Info:
        def __init__(self, r):
            self.episode_return = r

    infos = [Info(r) for r in (5.0, 1.0, 9.0, 3.0, 7.0)]
    assert [infos[k].episode_return for k in trace_demos(infos, 3)] == [1.0, 5.0, 9.0]
    assert trace_demos(infos, 0) == []


def test_command_scores_any_model_on_any_demo_folder(reward_run, synthetic_demos, tmp_path, capsys):
    metrics = main(
        [
            str(reward_run / "reward_net.pt"),
            str(synthetic_demos),
            "--out",
            str(tmp_path),
            "--traces",
            "1",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "learned" in out and "episode_length" in out and "untrained_net" in out
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    # The stand-alone run reproduces the trainer's own held-out evaluation of the same model, the untrained
    # baseline included: both take the training seed from the model and initialise it from seed + 1_000_003.
    trainer = json.loads((reward_run / "eval" / "metrics.json").read_text())
    assert saved["learned"] == trainer["learned"] and saved["untrained_net"] == trainer["untrained_net"]
    assert saved["untrained_seed"] == trainer["untrained_seed"] == 0 + UNTRAINED_SEED_OFFSET == 1_000_003
    assert (tmp_path / "scatter.png").is_file() and (tmp_path / "traces.png").is_file()
