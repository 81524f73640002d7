"""Held-out evaluation: the ranking scores by hand, and the stand-alone command on a trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trex.evaluate_reward import (
    UNTRAINED_SEED_OFFSET,
    main,
    ranking_scores,
    trace_demos,
)


def test_ranking_scores_of_a_reversed_order():
    true = np.array([1.0, 2.0, 3.0, 3.0])
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
