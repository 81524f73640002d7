"""Rainbow's pure pieces: the C51 projection and the TD loss against hand-computed examples, noisy layers, and
the Q-network with each component switched off on its own."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from policies.rainbow import (
    NoisyLinear,
    QAgent,
    QNetwork,
    RainbowConfig,
    linear_schedule,
    project_distribution,
    td_loss,
)
from procgen_common.networks import ModelConfig

SUPPORT = torch.tensor([-1.0, 0.0, 1.0])  # three atoms one apart


def test_c51_projection_by_hand():
    next_probs = torch.tensor([[0.2, 0.5, 0.3]] * 4)
    returns = torch.tensor([0.5, 2.0, -0.25, 0.0])
    discounts = torch.tensor([0.5, 1.0, 0.0, 1.0])
    target = project_distribution(next_probs, returns, discounts, SUPPORT)
    expected = torch.tensor(
        [
            # 0.5 + 0.5 z = (0, 0.5, 1): atom -1's 0.2 lands on 0; atom 0's 0.5 splits between 0 and 1; 0.3 on 1
            [0.0, 0.2 + 0.25, 0.25 + 0.3],
            # 2 + z = (1, 2, 3), clipped to v_max = 1: everything on the top atom
            [0.0, 0.0, 1.0],
            # terminal (discount 0): all mass at -0.25, a quarter of the way from 0 down to -1
            [0.25, 0.75, 0.0],
            # the identity: r = 0, discount 1 keeps the distribution
            [0.2, 0.5, 0.3],
        ]
    )
    torch.testing.assert_close(target, expected)


def test_c51_projection_keeps_probability_mass():
    gen = torch.Generator().manual_seed(0)
    support = torch.linspace(-10, 10, 51)
    probs = torch.softmax(torch.randn(64, 51, generator=gen), -1)
    returns = torch.randn(64, generator=gen) * 5
    discounts = torch.rand(64, generator=gen)
    target = project_distribution(probs, returns, discounts, support)
    torch.testing.assert_close(target.sum(-1), torch.ones(64))
    assert (target >= 0).all()
    # The mean moves as r + discount * mean, wherever nothing was clipped.
    inside = ((returns[:, None] + discounts[:, None] * support).abs() <= 10).all(1)
    mean = (target * support).sum(-1)
    torch.testing.assert_close(mean[inside], (returns + discounts * (probs * support).sum(-1))[inside])


def _outputs(chosen: torch.Tensor, picks: list[int], decoy: torch.Tensor) -> torch.Tensor:
    """Network outputs ``(B, 2, K)``: ``chosen[i]`` at action ``picks[i]``, ``decoy`` at the other action."""
    out = decoy.expand(len(picks), 2, decoy.shape[-1]).clone()
    out[torch.arange(len(picks)), picks] = chosen
    return out


def test_c51_loss_by_hand():
    # The taken actions' distributions, as logits; the next state's distribution at the chosen next action is
    # (0.2, 0.5, 0.3) for all three. Decoys sit at the actions not taken or chosen.
    taken = torch.tensor([[0.25, 0.5, 0.25], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25]])
    out = _outputs(taken.log(), [1, 0, 1], torch.tensor([0.1, 0.1, 0.8]).log()).requires_grad_()
    next_out = _outputs(
        torch.tensor([0.2, 0.5, 0.3]).log().expand(3, 3), [0, 1, 0], torch.tensor([0.6, 0.2, 0.2]).log()
    )
    returns, discounts = torch.tensor([0.25, -3.0, -0.25]), torch.tensor([1.0, 0.9, 0.0])
    weights = torch.tensor([1.0, 0.5, 2.0])
    loss, priority, q_taken = td_loss(
        out, next_out, torch.tensor([1, 0, 1]), torch.tensor([0, 1, 0]), returns, discounts, weights, SUPPORT
    )
    # The targets, projected by hand:
    # 1. 0.25 + z = (-0.75, 0.25, 1.25): -0.75 is a quarter of the way from -1 to 0, so atom -1 gets 0.75 x 0.2 and
    #    atom 0 0.25 x 0.2; 0.25 gives 0.75 x 0.5 to atom 0 and 0.25 x 0.5 to atom 1; 1.25 is clipped to atom 1.
    # 2. -3 + 0.9 z = (-3.9, -3, -2.1): all below v_min, clipped to atom -1.
    # 3. an episode's end (discount 0): all mass at -0.25, a quarter of the way from 0 down to -1.
    target = torch.tensor([[0.15, 0.05 + 0.375, 0.125 + 0.3], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])
    cross_entropy = [
        -(0.15 * math.log(0.25) + 0.425 * math.log(0.5) + 0.425 * math.log(0.25)),
        -math.log(0.6),
        -(0.25 * math.log(0.5) + 0.75 * math.log(0.25)),
    ]
    entropy = [
        -(0.15 * math.log(0.15) + 2 * 0.425 * math.log(0.425)),
        0.0,
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)),
    ]
    assert loss.item() == pytest.approx((cross_entropy[0] + 0.5 * cross_entropy[1] + 2.0 * cross_entropy[2]) / 3)
    # Priority: the KL divergence, the cross-entropy less the target's entropy.
    torch.testing.assert_close(priority, torch.tensor(cross_entropy) - torch.tensor(entropy))
    torch.testing.assert_close(q_taken, torch.tensor([0.0, -0.5, -0.25]))  # sum of p z
    # The gradient reaches the taken actions' logits only: weight / B x (p - target).
    loss.backward()
    expected = _outputs((weights[:, None] / 3) * (taken - target), [1, 0, 1], torch.zeros(3))
    torch.testing.assert_close(out.grad, expected)


def test_huber_td_loss_by_hand():
    out = _outputs(torch.tensor([[1.0], [0.0]]), [0, 1], torch.tensor([5.0]))
    next_out = _outputs(torch.tensor([[1.0], [2.0]]), [1, 0], torch.tensor([-7.0]))
    returns, discounts, weights = torch.tensor([0.5, 2.0]), torch.tensor([0.9, 0.5]), torch.tensor([1.0, 0.5])
    loss, priority, q_taken = td_loss(
        out, next_out, torch.tensor([0, 1]), torch.tensor([1, 0]), returns, discounts, weights, None
    )
    # TD targets 0.5 + 0.9 x 1 = 1.4 and 2 + 0.5 x 2 = 3; errors -0.4 (quadratic: 0.4^2 / 2) and -3 (linear: 3 - 1/2).
    assert loss.item() == pytest.approx((0.08 + 0.5 * 2.5) / 2)
    torch.testing.assert_close(priority, torch.tensor([0.4, 3.0]))
    torch.testing.assert_close(q_taken, torch.tensor([1.0, 0.0]))


def test_noisy_linear_resamples_in_training_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    layer = NoisyLinear(16, 4, std_init=0.5)
    assert torch.allclose(layer.weight_sigma, torch.full((4, 16), 0.5 / 4.0))  # sigma_0 / sqrt(in)
    x = torch.randn(3, 16)
    first, again = layer(x), layer(x)
    torch.testing.assert_close(first, again)  # the same noise until it is redrawn
    layer.reset_noise()
    assert not torch.allclose(layer(x), first)
    layer.eval()
    mean = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x), mean)
    layer.reset_noise()
    torch.testing.assert_close(layer(x), mean)
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}  # noise is not saved


COMPONENTS = ["distributional", "dueling", "noisy", "double_q", "prioritized", "target_network"]


def _small(**changes) -> tuple[ModelConfig, RainbowConfig]:
    model = ModelConfig(arch="nature", hidden_size=16)
    return model, dataclasses.replace(RainbowConfig(num_atoms=11, head_hidden=8), **changes)


@pytest.mark.parametrize("off", [None, *COMPONENTS])
def test_q_network_with_each_component_switched_off(off):
    torch.manual_seed(0)
    model, config = _small(**({off: False} if off else {}))
    net = QNetwork(model, config)
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    out = net(frames)
    atoms = 11 if config.distributional else 1
    assert out.shape == (5, 15, atoms) and out.dtype == torch.float32
    q = net.q_values(frames)
    assert q.shape == (5, 15)
    if config.distributional:
        torch.testing.assert_close(q, (torch.softmax(out, -1) * net.support).sum(-1))
    has_noise = any(isinstance(m, NoisyLinear) for m in net.modules())
    assert has_noise == config.noisy
    assert (net.value is not None) == config.dueling


def test_dueling_advantages_are_mean_centred():
    torch.manual_seed(0)
    model, config = _small(distributional=False, noisy=False)
    net = QNetwork(model, config)
    frames = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    features = net.encoder(frames)
    value = net.value(features)  # (4, 1)
    torch.testing.assert_close(net.q_values(frames).mean(1), value[:, 0], rtol=1e-5, atol=1e-5)


def test_q_agent_is_greedy_when_deterministic_and_explores_otherwise():
    torch.manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    model, config = _small()
    noisy = QAgent(QNetwork(model, config))
    greedy = noisy.net.q_values(torch.from_numpy(frames)).argmax(-1).numpy()
    np.testing.assert_array_equal(noisy.act(frames, None, None, deterministic=True)[0], greedy)
    assert not noisy.net.training  # acting with noise leaves the network in eval mode
    model, config = _small(noisy=False)
    epsilon_greedy = QAgent(QNetwork(model, config), epsilon=1.0)
    greedy = epsilon_greedy.act(frames, None, None, deterministic=True)[0]
    assert (epsilon_greedy.act(frames, None, None, deterministic=False)[0] != greedy).any()


def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 500) == pytest.approx(0.1)
