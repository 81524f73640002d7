"""Rainbow's pure pieces: the C51 projection against hand-computed examples, noisy layers, and the
Q-network with each component switched off on its own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from policies.rainbow import NoisyLinear, QAgent, QNetwork, RainbowConfig, linear_schedule, project_distribution
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
