"""The Bradley-Terry loss by hand and its gradient, preference accuracy, and the reward network's options."""

from __future__ import annotations

import math

import pytest
import torch

from procgen_common.checkpoint import load_checkpoint, save_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import check
from procgen_common.networks import ImpalaCNN
from trex.reward_net import (
    InverseDynamics,
    RewardNet,
    RewardNetConfig,
    load_reward_net,
    save_untrained_reward_net,
    stack_reward_nets,
)
from trex.train_reward import bradley_terry_loss, mean_reward_penalty, preference_accuracy


def test_loss_is_below_log2_on_a_correctly_ordered_pair_and_matches_the_formula():
    returns_a, returns_b = torch.tensor([1.0]), torch.tensor([3.0])
    loss = bradley_terry_loss(returns_a, returns_b, torch.tensor([1]))  # b is the better snippet
    assert loss.item() < math.log(2)
    assert loss.item() == pytest.approx(-math.log(math.exp(3) / (math.exp(1) + math.exp(3))), abs=1e-6)
    # The same pair labelled the other way round costs more than log 2; equal returns cost exactly log 2.
    assert bradley_terry_loss(returns_a, returns_b, torch.tensor([0])).item() > math.log(2)
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([2.0]), torch.tensor([1])).item() == pytest.approx(
        math.log(2)
    )


def test_loss_gradient_raises_the_better_snippet_and_lowers_the_worse():
    returns_a = torch.tensor([0.5, 2.0], requires_grad=True)
    returns_b = torch.tensor([0.5, 1.0], requires_grad=True)
    labels = torch.tensor([1, 0])  # pair 0: b better; pair 1: a better
    bradley_terry_loss(returns_a, returns_b, labels).backward()
    # Gradient descent moves against the gradient: the better snippet's return must have a negative one.
    assert returns_b.grad[0] < 0 < returns_a.grad[0]
    assert returns_a.grad[1] < 0 < returns_b.grad[1]
    # d loss / d R_better = -(1 - P(better)) / n: here P = 1/2 for pair 0.
    assert returns_b.grad[0].item() == pytest.approx(-0.5 / 2)


def test_loss_averages_over_ensemble_members_sharing_labels():
    returns_a = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # 2 members x 2 pairs
    returns_b = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([1, 0])
    per_member = [bradley_terry_loss(returns_a[k], returns_b[k], labels) for k in range(2)]
    assert bradley_terry_loss(returns_a, returns_b, labels).item() == pytest.approx(sum(per_member).item() / 2)


def test_a_constant_reward_offset_is_invisible_to_the_loss_but_not_to_the_center_penalty():
    # The gauge freedom train.center_coef fixes: on equal-length snippets, adding c to every frame's reward adds
    # c * length to both returns, which the Bradley-Terry loss cannot see.
    rewards_a, rewards_b = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)).chunk(2)  # 2 pairs x 6
    labels = torch.tensor([1, 0])
    offset = torch.tensor(3.0, requires_grad=True)
    shifted = bradley_terry_loss((rewards_a + offset).sum(-1), (rewards_b + offset).sum(-1), labels)
    shifted.backward()
    assert shifted.item() == pytest.approx(bradley_terry_loss(rewards_a.sum(-1), rewards_b.sum(-1), labels).item())
    assert abs(offset.grad.item()) < 1e-6
    # The penalty: each member's squared mean reward (from the output's centre), averaged over members.
    frames = torch.cat([rewards_a, rewards_b]).reshape(1, -1)
    offset.grad = None
    mean_reward_penalty(frames + offset).backward()
    assert offset.grad.item() == pytest.approx(2 * (frames.mean().item() + 3.0))
    assert mean_reward_penalty(torch.tensor([[1.0, 3.0], [0.0, 0.0]])).item() == pytest.approx((2.0**2 + 0.0) / 2)
    assert mean_reward_penalty(torch.full((1, 5), 0.5), center=0.5).item() == 0.0
    assert RewardNetConfig(output="sigmoid").output_center == 0.5 and RewardNetConfig(output="tanh").output_center == 0


def test_preference_accuracy_counts_ties_as_half():
    returns_a = torch.tensor([0.0, 2.0, 1.0, 5.0])
    returns_b = torch.tensor([1.0, 1.0, 1.0, 0.0])
    labels = torch.tensor([1, 1, 0, 1])  # right, wrong, tie, wrong
    assert preference_accuracy(returns_a, returns_b, labels).item() == pytest.approx(1.5 / 4)


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_default_net_is_the_original_trex_architecture():
    net = RewardNet(RewardNetConfig())
    convs = [m for m in net.members[0].trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (16, 7, 3),
        (16, 5, 2),
        (16, 3, 1),
        (16, 3, 1),
    ]
    linears = [m for m in net.members[0].head if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linears] == [64, 1]
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net.modules())
    rewards = net(_frames(5))
    assert rewards.shape == (1, 5) and rewards.dtype == torch.float32


def test_inputs_are_scaled_to_unit_range_inside_the_net():
    net = RewardNet(RewardNetConfig())
    trunk = net.members[0].trunk
    frames = _frames(2)
    expected = trunk.convs(frames.permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(trunk(frames), expected)


def test_bounded_outputs_actions_and_ensembles():
    frames = _frames(6)
    torch.manual_seed(0)
    sigmoid = RewardNet(RewardNetConfig(output="sigmoid", ensemble_size=3))(frames)
    assert sigmoid.shape == (3, 6) and sigmoid.min() > 0 and sigmoid.max() < 1
    assert sigmoid.std(0).min() > 0  # members start from different initialisations
    tanh = RewardNet(RewardNetConfig(output="tanh"))(frames)
    assert tanh.abs().max() < 1

    net = RewardNet(RewardNetConfig(use_action=True, ensemble_size=2))
    with pytest.raises(ValueError, match="pass the actions"):
        net(frames)
    zeros, sevens = torch.zeros(6, dtype=torch.long), torch.full((6,), 7)
    assert not torch.allclose(net(frames, zeros), net(frames, sevens))  # r(s, a) depends on a
    torch.testing.assert_close(net.reward(frames, zeros), net(frames, zeros).mean(0))


def test_dropout_is_random_while_training_off_in_eval_mode_and_leaves_saved_weights_alike():
    frames = _frames(6)
    torch.manual_seed(0)
    net = RewardNet(RewardNetConfig(dropout=0.5))
    plain = RewardNet(RewardNetConfig())
    # The same parameter names as without dropout, so a model trained with it loads anywhere a plain one does.
    assert net.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(net.state_dict())
    net.train()
    first, second = net(frames), net(frames)
    assert not torch.allclose(first, second)  # each pass zeroes other features
    net.eval()
    torch.testing.assert_close(net(frames), net(frames))
    torch.testing.assert_close(net(frames), plain.eval()(frames))  # eval mode: no dropout at all
    # Training mode keeps the expectation (inverted dropout): the mean of many passes nears the eval output.
    net.train()
    with torch.no_grad():
        mean = torch.stack([net(frames) for _ in range(400)]).mean(0)
    assert (mean - plain(frames)).abs().max() < 0.1 * plain(frames).abs().max() + 0.01


def test_dropout_of_one_or_more_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="dropout"):
        check(RewardNetConfig(dropout=1.0))
    with pytest.raises(ValueError, match="dropout"):
        check(RewardNetConfig(dropout=-0.1))
    check(RewardNetConfig(dropout=0.9))


def test_impala_option_reuses_the_suite_encoder():
    net = RewardNet(RewardNetConfig(arch="impala", impala_channels=[8, 8], hidden_size=16))
    assert isinstance(net.members[0].trunk, ImpalaCNN)
    assert net(_frames(3)).shape == (1, 3)


def test_inverse_dynamics_heads_read_each_members_trunk_on_both_frames():
    torch.manual_seed(0)
    net = RewardNet(RewardNetConfig(ensemble_size=2))
    head = InverseDynamics(net)
    now, after = _frames(5), _frames(5).flip(0)
    logits = head(net, now, after)
    assert logits.shape == (2, 5, 15)
    # The order of the two frames matters (it is the transition's direction), and the loss trains the trunks.
    assert not torch.allclose(logits, head(net, after, now))
    logits.square().sum().backward()
    assert all(member.trunk.convs[0].weight.grad.abs().sum() > 0 for member in net.members)
    assert all(member.head[0].weight.grad is None for member in net.members)  # the reward head is untouched
    assert not any(key.startswith("heads") for key in net.state_dict())  # not part of the reward model


def test_stacked_models_reward_the_mean_of_theirs_and_refuse_a_foreign_one(tmp_path):
    paths = [
        save_untrained_reward_net(tmp_path / f"m{seed}.pt", RewardNetConfig(), "starpilot", seed=seed)
        for seed in (0, 1)
    ]
    for seed, path in enumerate(paths):  # the recorded per-frame means that reward.center subtracts
        checkpoint = load_checkpoint(path)
        demo_ids = [["a", "b", "c"], ["c", "d"]][seed]  # the demos each member learned from, overlapping in one
        save_checkpoint(path, {**checkpoint, "reward_per_frame": {"mean": 0.1 + 0.2 * seed}, "demo_ids": demo_ids})
    stacked, checkpoint = load_reward_net(stack_reward_nets(paths, tmp_path / "stack.pt"))
    assert checkpoint["demo_ids"] == ["a", "b", "c", "d"]  # the ensemble learned from every member's demos
    frames = torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        singles = [load_reward_net(path)[0].reward(frames) for path in paths]
        torch.testing.assert_close(stacked.reward(frames), (singles[0] + singles[1]) / 2)
    assert stacked.config.ensemble_size == 2 and checkpoint["reward_per_frame"]["mean"] == pytest.approx(0.2)
    other_game = save_untrained_reward_net(tmp_path / "fruitbot.pt", RewardNetConfig(), "fruitbot")
    with pytest.raises(UserError, match="another game"):
        stack_reward_nets([paths[0], other_game], tmp_path / "bad.pt")
    other_net = save_untrained_reward_net(tmp_path / "wide.pt", RewardNetConfig(hidden_size=32), "starpilot")
    with pytest.raises(UserError, match="reward_net settings differ"):
        stack_reward_nets([paths[0], other_net], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    before = paths[0].read_bytes()
    with pytest.raises(UserError, match="exists"):  # e.g. the ensemble written over one of its members
        stack_reward_nets(paths, paths[0])
    assert paths[0].read_bytes() == before
