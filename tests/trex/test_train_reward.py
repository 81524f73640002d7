"""The reward trainer end to end on synthetic demos: learning a pixel reward, outputs, resuming, early stopping."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from procgen_common.cli import UserError
from procgen_common.config import load_config
from tests.trex.conftest import reward_config, synthetic_frame, write_synthetic_demos
from trex.demos import DemoSet, load_demo, save_demo, write_index
from trex.reward_net import load_reward_net
from trex.train_reward import PROGRESS_COLUMNS, Config, select_training_demos, train


def _progress(run_dir) -> list[dict]:
    with (run_dir / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def _train(*args):
    out = train(reward_config(*args))
    torch.set_num_threads(1)
    return out


def test_a_small_net_learns_a_known_pixel_reward_on_held_out_demos(reward_run):
    metrics = json.loads((reward_run / "eval" / "metrics.json").read_text())
    assert metrics["num_demos"] == 30 and metrics["split"] == "test"
    assert metrics["learned"]["pair_accuracy"] >= 0.95
    assert metrics["learned"]["spearman"] > 0.9
    # Both baselines are scored on the same demos; the untrained net of the same shape ranks them far worse.
    assert metrics["untrained_net"]["pair_accuracy"] < 0.8
    assert set(metrics["episode_length"]) == {"pair_accuracy", "pearson", "spearman"}
    for name in ("predictions.csv", "scatter.png", "traces.png"):
        assert (reward_run / "eval" / name).stat().st_size > 0


def test_run_folder_outputs_and_a_model_that_loads_without_code(reward_run, synthetic_demos):
    rows = _progress(reward_run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert set(PROGRESS_COLUMNS) <= set(rows[0])
    assert float(rows[-1]["val/best_accuracy"]) == max(float(r["val/accuracy"]) for r in rows)
    assert (reward_run / "config.yaml").is_file() and any((reward_run / "tb").iterdir())

    raw = torch.load(reward_run / "reward_net.pt", weights_only=True)
    assert raw["algo"] == "reward_net" and raw["demos"]["game"] == "starpilot"
    assert raw["val_accuracy"] == pytest.approx(float(rows[-1]["val/best_accuracy"]), abs=1e-5)
    net, _ = load_reward_net(reward_run)  # a run folder means its reward_net.pt
    demo = load_demo(synthetic_demos / DemoSet.open(synthetic_demos).infos[0].file)
    rewards = net.reward(torch.from_numpy(demo.obs[:4]))
    assert rewards.shape == (4,) and torch.isfinite(rewards).all()


def test_the_model_file_records_its_mean_reward_per_frame_over_the_demos_it_learned_from(reward_run, synthetic_demos):
    raw = torch.load(reward_run / "reward_net.pt", weights_only=True)
    config = load_config(Config, str(reward_run / "config.yaml"), [])
    demos = select_training_demos(DemoSet.open(synthetic_demos), config.data, config.train.seed)
    net, _ = load_reward_net(reward_run)
    rewards = [
        net.reward(torch.from_numpy(load_demo(synthetic_demos / f"{demos.demo_ids[k]}.npz.zst").obs))
        for k in demos.train
    ]
    rewards = torch.cat(rewards).double()
    assert raw["reward_per_frame"]["frames"] == len(rewards) == demos.frames.lengths[demos.train].sum()
    assert raw["reward_per_frame"]["mean"] == pytest.approx(rewards.mean().item(), rel=1e-4)
    assert raw["reward_per_frame"]["std"] == pytest.approx(rewards.std(correction=0).item(), rel=1e-3)


def test_resume_continues_to_the_same_model(synthetic_demos, tmp_path):
    fast = ("data.pairs_per_epoch=64", "data.val_pairs=32", "eval.at_end=false")
    straight = _train(synthetic_demos, tmp_path / "straight", "train.epochs=2", *fast)
    _train(synthetic_demos, tmp_path / "resumed", "train.epochs=1", *fast)
    resumed = _train(synthetic_demos, tmp_path / "resumed", "train.epochs=2", "train.resume=true", *fast)
    assert [r["step"] for r in _progress(resumed)] == ["1", "2"]
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0)
    with pytest.raises(UserError, match="already holds a run"):
        _train(synthetic_demos, tmp_path / "straight", *fast)
    with pytest.raises(UserError, match="data.min_len differ"):
        _train(synthetic_demos, tmp_path / "straight", "train.resume=true", "data.min_len=5", *fast)
    # A run saved before a setting existed (data.min_gap) resumes where today's value is its default, not otherwise.
    for file in (straight / "checkpoints").glob("*.pt"):
        saved = torch.load(file, weights_only=True)
        if "config" in saved:
            del saved["config"]["data"]["min_gap"]
            torch.save(saved, file)
    with pytest.raises(UserError, match="data.min_gap differ"):
        _train(synthetic_demos, tmp_path / "straight", "train.resume=true", "data.min_gap=1", *fast)
    again = _train(synthetic_demos, tmp_path / "straight", "train.epochs=3", "train.resume=true", *fast)
    assert [r["step"] for r in _progress(again)] == ["1", "2", "3"]


def _reward_on_training_frames(run_dir, demos, data) -> torch.Tensor:
    """The kept model's per-frame reward on the frames of the run's training demos (validation demos left out)."""
    net, _ = load_reward_net(run_dir)
    chosen = select_training_demos(DemoSet.open(demos), data, seed=0)
    offsets = chosen.frames.offsets
    rows = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in chosen.train])
    with torch.no_grad():
        return net.reward(torch.from_numpy(chosen.frames.frames[rows]))


def test_the_center_penalty_pins_the_mean_reward_the_pairwise_loss_leaves_free(synthetic_demos, tmp_path):
    fast = ("train.epochs=5", "data.val_pairs=32", "eval.at_end=false")
    free = _train(synthetic_demos, tmp_path / "free", "train.center_coef=0", *fast)
    pinned = _train(synthetic_demos, tmp_path / "pinned", *fast)  # the default train.center_coef
    data = reward_config(synthetic_demos, tmp_path).data
    free_rewards = _reward_on_training_frames(free, synthetic_demos, data)
    pinned_rewards = _reward_on_training_frames(pinned, synthetic_demos, data)
    # Without the penalty the offset is whatever training left it at (here ~1.9 std above 0); with it, near 0
    # (~0.1 std: each minibatch's mean is a noisy estimate). Both rank the demos alike: the offset is invisible
    # on equal-length snippets.
    assert abs(free_rewards.mean()) > 1.0 * free_rewards.std()
    assert abs(pinned_rewards.mean()) < 0.25 * pinned_rewards.std()
    assert [float(_progress(run)[-1]["val/best_accuracy"]) for run in (free, pinned)] == [1.0, 1.0]


def test_early_stopping_keeps_the_best_model(synthetic_demos, tmp_path, capsys):
    # A learning rate too small to change the validation accuracy: only epoch 1 improves on "nothing yet".
    run = _train(
        synthetic_demos,
        tmp_path / "run",
        "train.learning_rate=1.0e-12",
        "train.patience=2",
        "train.epochs=10",
        "data.pairs_per_epoch=32",
        "data.val_pairs=32",
        "eval.at_end=false",
    )
    assert len(_progress(run)) == 3
    assert "stopped early after epoch 3" in capsys.readouterr().err
    assert torch.load(run / "reward_net.pt", weights_only=True)["step"] == 1


def test_every_network_option_trains(synthetic_demos, tmp_path):
    run = _train(
        synthetic_demos,
        tmp_path / "run",
        "train.epochs=1",
        "data.pairs_per_epoch=16",
        "data.val_pairs=16",
        "reward_net.arch=impala",
        "reward_net.impala_channels=[4,4]",
        "reward_net.hidden_size=8",
        "reward_net.use_action=true",
        "reward_net.output=tanh",
        "reward_net.ensemble_size=2",
        "reward_net.dropout=0.3",
        "train.l1_coef=0.1",
        "train.weight_decay=0.01",
        "data.stride=2",
        "data.start_prior=true",
        "data.rank_by=checkpoint",
    )
    net, _ = load_reward_net(run)
    assert len(net.members) == 2 and net.config.use_action and net.config.dropout == 0.3
    assert not net.training  # a loaded model scores without dropout, the same every time
    assert json.loads((run / "eval" / "metrics.json").read_text())["num_demos"] == 30


def test_demo_subset_and_split_are_seeded_and_disjoint(synthetic_demos, tmp_path):
    demo_set = DemoSet.open(synthetic_demos)
    data = reward_config(synthetic_demos, tmp_path, "data.num_demos=10", "data.val_fraction=0.3").data
    demos = select_training_demos(demo_set, data, seed=0)
    assert len(demos.demo_ids) == 10 and len(demos.val) == 3 and len(demos.train) == 7
    assert set(demos.train).isdisjoint(demos.val)
    assert all(i.startswith("train-") for i in demos.demo_ids)  # never a held-out demo
    assert demos.demo_ids == select_training_demos(demo_set, data, seed=0).demo_ids
    assert demos.frames.frames.dtype == np.uint8
    with pytest.raises(UserError, match="data.num_demos: 41 asked for"):
        select_training_demos(demo_set, reward_config(synthetic_demos, tmp_path, "data.num_demos=41").data, 0)


def test_held_out_demos_of_another_game_are_refused(synthetic_demos, tmp_path):
    other = write_synthetic_demos(tmp_path / "fruit", 0, 4, game="fruitbot")
    with pytest.raises(UserError, match="holds fruitbot .* starpilot"):
        _train(synthetic_demos, tmp_path / "run", f"data.test_demos={other}")


def test_bf16_training_learns_the_known_pixel_reward_too(synthetic_demos, tmp_path):
    run = _train(synthetic_demos, tmp_path / "run", "train.precision=bf16")
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["learned"]["pair_accuracy"] >= 0.95
    net, _ = load_reward_net(run)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast leaves the weights in fp32


def test_snippet_returns_sum_each_snippets_own_frames_whatever_the_padding():
    from trex.demos import DemoFrames
    from trex.pairs import sample_snippet_pairs
    from trex.train_reward import FRAME_BUCKET, snippet_returns

    class MeanPixel(torch.nn.Module):  # a "reward net" whose per-frame reward is known: the frame's mean pixel
        def forward(self, obs, actions):
            return obs.float().mean((1, 2, 3))[None]

    rng = np.random.default_rng(0)
    lengths = np.array([30, 41, 57, 64])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = DemoFrames(
        rng.integers(0, 256, (offsets[-1], 64, 64, 3), dtype=np.uint8), np.zeros(offsets[-1], np.int64), offsets
    )
    pairs = sample_snippet_pairs(np.arange(4.0), lengths, np.arange(4), 7, min_len=5, max_len=13, seed=1)
    assert (2 * pairs.length_a.sum()) % FRAME_BUCKET != 0  # the batch is padded
    returns_a, returns_b, rewards = snippet_returns(MeanPixel(), frames, pairs, torch.device("cpu"))
    assert rewards.shape == (1, 2 * pairs.length_a.sum())  # the padding is dropped
    for k in range(len(pairs)):
        for demo, start, got in ((pairs.demo_a, pairs.start_a, returns_a), (pairs.demo_b, pairs.start_b, returns_b)):
            first = offsets[demo[k]] + start[k]
            expected = frames.frames[first : first + pairs.length_a[k]].astype(np.float64).mean((1, 2, 3)).sum()
            assert got[0, k].item() == pytest.approx(expected, rel=1e-5)


class LinearReward(torch.nn.Module):
    """A per-frame reward ``w x + b`` of the frame's mean pixel ``x`` in [0, 1]."""

    def __init__(self, w: float, b: float):
        super().__init__()
        self.w, self.b = torch.nn.Parameter(torch.tensor(w)), torch.nn.Parameter(torch.tensor(b))

    def forward(self, obs, actions):
        return (self.w * obs.float().mean((1, 2, 3)) / 255 + self.b)[None]


def test_one_epoch_step_against_a_hand_computed_bradley_terry_gradient():
    import contextlib
    import math
    from unittest import mock

    from trex.demos import DemoFrames
    from trex.pairs import SnippetPairs
    from trex.train_reward import DataConfig, TrainConfig, train_epoch

    # Three demos of two frames each, every frame one grey level: x = (0.2, 0.4), (0.6, 0.8) and (1.0, 0.0).
    grey = np.array([51, 102, 153, 204, 255, 0], dtype=np.uint8)
    obs = np.broadcast_to(grey[:, None, None, None], (6, 64, 64, 3)).copy()
    frames = DemoFrames(obs, np.zeros(6, np.int64), offsets=np.array([0, 2, 4, 6]))
    # Demo 1 (x sum 1.4) beats demo 2 (1.0), which beats demo 0 (0.6). The second pair's label is the wrong way
    # round, so the model's ranking agrees with two labels of three.
    two, zero = np.full(3, 2), np.zeros(3, np.int64)
    pairs = SnippetPairs(np.array([0, 2, 1]), zero, two, np.array([1, 0, 2]), zero, two, label=np.array([1, 1, 0]))
    net = LinearReward(w=1.0, b=-0.45)
    for p in net.parameters():
        p.grad = torch.full_like(p, 100.0)  # a stale gradient, which the step must not add in
    data = DataConfig(demos="demos")  # required; train_epoch reads no demos from it
    config = Config(data, train=TrainConfig(batch_size=3, l1_coef=0.1, center_coef=0.5))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    metrics = train_epoch(net, optimizer, frames, pairs, config, 0, torch.device("cpu"), contextlib.nullcontext())

    # By hand. Both clips of a pair hold 2 frames, so b cancels in R_a - R_b = w (sum x_a - sum x_b): -0.8, 0.4, 0.4.
    # A pair's loss is log(1 + exp(R_loser - R_winner)), its d/dw sigmoid(R_loser - R_winner) (x_loser - x_winner).
    bt_loss = (math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(0.4)) + math.log(1 + math.exp(-0.4))) / 3
    bt_grad_w = (-0.8 / (1 + math.exp(0.8)) + 0.4 / (1 + math.exp(-0.4)) - 0.4 / (1 + math.exp(0.4))) / 3
    # The 12 frames are every demo frame twice; their rewards x - 0.45 are -0.25 -0.05 0.15 0.35 0.55 -0.45 twice.
    # L1: mean |r| = 0.3; d/dw = mean(sign(r) x) = 1.8 / 6 = 0.3, d/db = mean(sign(r)) = 0.
    # Centring: (mean r)^2 = 0.05^2; d/dw = 2 (mean r) (mean x) = 2 0.05 0.5, d/db = 2 0.05.
    grad_w = bt_grad_w + 0.1 * 0.3 + 0.5 * 2 * 0.05 * 0.5
    grad_b = 0.0 + 0.1 * 0.0 + 0.5 * 2 * 0.05
    assert net.w.item() == pytest.approx(1.0 - 0.1 * grad_w, rel=1e-6)
    assert net.b.item() == pytest.approx(-0.45 - 0.1 * grad_b, rel=1e-6)
    assert metrics["train/loss"] == pytest.approx(bt_loss + 0.1 * 0.3 + 0.5 * 0.05**2, rel=1e-6)
    assert metrics["train/accuracy"] == pytest.approx(2 / 3)
    assert metrics["train/reward_abs"] == pytest.approx(0.3, rel=1e-6)
    assert metrics["train/reward_mean"] == pytest.approx(0.05, rel=1e-5)
    assert metrics["time/frames_per_s"] > 0

    # Minibatches of 2 and 1 pairs (at a rate of 0, the model stays): each weighs by its pairs, (2 x 1/2 + 1) / 3.
    bar = mock.Mock()
    config = Config(data, train=TrainConfig(batch_size=2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    metrics = train_epoch(net, optimizer, frames, pairs, config, 0, torch.device("cpu"), contextlib.nullcontext(), bar)
    assert metrics["train/accuracy"] == pytest.approx(2 / 3) and bar.update.call_count == 2


class OffsetNet(torch.nn.Module):
    """A per-frame reward of the mean pixel plus a learnable constant ``offset`` added to every frame."""

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def forward(self, obs, actions=None):
        return (obs.float().mean((1, 2, 3)) / 255 + self.offset)[None]


@pytest.mark.parametrize("comparison", ["snippet", "episode"])
def test_only_whole_episode_pairs_let_the_loss_see_a_per_frame_offset(comparison):
    from trex.demos import DemoFrames
    from trex.pairs import sample_episode_pairs, sample_snippet_pairs
    from trex.train_reward import bradley_terry_loss, snippet_returns

    # Longer episodes are the better ones here (as when a good agent survives longer).
    rng = np.random.default_rng(0)
    lengths = np.array([20, 35, 50, 65, 80])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = DemoFrames(
        rng.integers(0, 256, (offsets[-1], 64, 64, 3), dtype=np.uint8), np.zeros(offsets[-1], np.int64), offsets
    )
    scores, demos = np.arange(5.0), np.arange(5)
    if comparison == "episode":
        pairs = sample_episode_pairs(scores, lengths, demos, 64, stride=2, seed=0)
    else:
        pairs = sample_snippet_pairs(scores, lengths, demos, 64, min_len=5, max_len=15, seed=0)
    net = OffsetNet()
    returns_a, returns_b, _ = snippet_returns(net, frames, pairs, torch.device("cpu"))
    loss = bradley_terry_loss(returns_a, returns_b, torch.from_numpy(pairs.label))
    loss.backward()
    # A constant per-frame reward adds offset x length to each side's sum: it cancels between equal-length snippets,
    # so their loss gives it no gradient; between whole episodes of different lengths it does not cancel, and a
    # positive offset (rewarding long episodes, which are the better ones here) lowers the loss.
    if comparison == "snippet":
        assert abs(net.offset.grad.item()) < 1e-6
    else:
        assert net.offset.grad.item() < -0.01


def test_noise_ranked_level_matched_episode_pairs_train_and_report_the_generalisation_gap(synthetic_demos, tmp_path):
    from tests.trex.conftest import synthetic_demo
    from trex.demos import Demo, save_demo, write_index

    # A noise ladder on 6 training levels (3 rungs each: the red-square count rises with the rung) and 6 held-out ones.
    rng, infos = np.random.default_rng(0), []
    for split, levels in (("train", range(6)), ("test", range(100, 106))):
        for level in levels:
            for epsilon in (1.0, 0.5, 0.0):
                demo = synthetic_demo(rng, f"{split}-{level}-{epsilon}", split, level, step=0)
                red = {1.0: 0, 0.5: 2, 0.0: 4}[epsilon]
                obs = np.stack([synthetic_frame(rng, red) for _ in range(demo.info.length)])
                info = dataclasses.replace(demo.info, epsilon=epsilon, episode_return=30.0 * red)
                demo = Demo(info, obs, demo.actions, np.full(demo.info.length, red, np.float32))
                save_demo(tmp_path / "demos" / info.file, demo)
                infos.append(info)
    write_index(tmp_path / "demos", infos)
    run = _train(
        tmp_path / "demos",
        tmp_path / "run",
        "data.rank_by=noise",
        "data.comparison=episode",
        "data.stride=3",
        "data.same_level=true",
        "train.epochs=4",
    )
    summary = json.loads((run / "generalization.json").read_text())
    assert summary["in_distribution"]["num_demos"] >= 2 and summary["held_out"]["num_demos"] == 18
    assert summary["held_out"]["learned"]["spearman"] > 0.8
    assert summary["spearman_gap"]["learned"] == pytest.approx(
        summary["held_out"]["learned"]["spearman"] - summary["in_distribution"]["learned"]["spearman"]
    )
    assert (run / "eval-train-levels" / "metrics.json").is_file() and (run / "eval" / "metrics.json").is_file()
    # A folder with one demo per level cannot give level-matched pairs: one line naming the key.
    with pytest.raises(UserError, match="data.same_level: no two demos of one level"):
        _train(synthetic_demos, tmp_path / "bad", "data.same_level=true")
    with pytest.raises(UserError, match=r"data.min_gap: no two demos of different rank at least 1e\+06 apart"):
        _train(synthetic_demos, tmp_path / "bad-gap", "data.min_gap=1e6")


@pytest.fixture(scope="module")
def action_marked_demos(synthetic_demos, tmp_path_factory):
    """The synthetic demos with actions 0 and 1 only, and each step's action written on the next frame (its bottom
    quarter green after action 1), so the action between two frames can be read off them."""
    folder = tmp_path_factory.mktemp("marked")
    demo_set = DemoSet.open(synthetic_demos)
    for info in demo_set.infos:
        demo = demo_set.load(info)
        obs, actions = demo.obs.copy(), demo.actions % 2
        obs[1:, 48:][actions[:-1] == 1] = (0, 255, 0)
        save_demo(folder / info.file, dataclasses.replace(demo, obs=obs, actions=actions))
    write_index(folder, demo_set.infos)
    return folder


def test_the_inverse_dynamics_loss_learns_the_actions_beside_the_reward(action_marked_demos, tmp_path):
    fast = ("data.pairs_per_epoch=128", "data.val_pairs=32", "train.inverse_dynamics_batch=128")
    run = _train(action_marked_demos, tmp_path / "aux", "train.inverse_dynamics_coef=1", "train.epochs=6", *fast)
    rows = _progress(run)
    accuracy = [float(r["train/inverse_dynamics_accuracy"]) for r in rows]
    assert accuracy[0] < 0.6 and accuracy[-1] > 0.9  # from about chance to reading the mark
    assert float(rows[-1]["train/inverse_dynamics_loss"]) < float(rows[0]["train/inverse_dynamics_loss"])
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["learned"]["spearman"] > 0.8  # the reward is still learned
    saved = torch.load(run / "reward_net.pt", weights_only=True)
    assert not any("heads" in key for key in saved["model"])  # the reward model holds no auxiliary head
    assert "inverse_dynamics" in torch.load(run / "checkpoints" / "latest.pt", weights_only=True)

    plain = _train(action_marked_demos, tmp_path / "plain", "train.epochs=1", "eval.at_end=false", *fast)
    assert "train/inverse_dynamics_accuracy" not in _progress(plain)[0]
    with pytest.raises(UserError, match="started without the inverse-dynamics loss"):
        _train(action_marked_demos, plain, "train.resume=true", "train.inverse_dynamics_coef=1", *fast)


def test_resume_with_the_inverse_dynamics_loss_continues_to_the_same_model(synthetic_demos, tmp_path):
    fast = ("data.pairs_per_epoch=64", "data.val_pairs=32", "eval.at_end=false", "train.inverse_dynamics_coef=0.5")
    straight = _train(synthetic_demos, tmp_path / "straight", "train.epochs=2", *fast)
    _train(synthetic_demos, tmp_path / "resumed", "train.epochs=1", *fast)
    resumed = _train(synthetic_demos, tmp_path / "resumed", "train.epochs=2", "train.resume=true", *fast)
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=True)
    for part in ("model", "inverse_dynamics"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0)
    with pytest.raises(UserError, match="started with the inverse-dynamics loss"):
        _train(synthetic_demos, resumed, "train.resume=true", "train.epochs=3", *fast[:-1])
