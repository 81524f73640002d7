"""Recurrent PPO's pure pieces: the GRU over a sequence with resets equals stepping it, gate statistics,
and the agent carrying its hidden state from step to step and resetting it at episode starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from policies.ppo_gru import GRUConfig, RecurrentActorCritic, gru_gate_stats, gru_gates, gru_sequence
from procgen_common.networks import ModelConfig, PolicyAgent


def step_by_step(gru: nn.GRU, features: torch.Tensor, hidden: torch.Tensor, starts: torch.Tensor):
    """The reference: one GRU step at a time, zeroing the hidden state of envs whose episode starts."""
    outputs = []
    for t in range(features.shape[0]):
        hidden = hidden * (~starts[t]).float()[:, None]
        out, h = gru(features[t : t + 1], hidden[None])
        hidden = h[0]
        outputs.append(out[0])
    return torch.stack(outputs), hidden


@pytest.mark.parametrize(
    "pattern",
    ["random", "none", "all", "first-step-only"],
)
def test_gru_sequence_equals_the_step_by_step_loop_with_resets(pattern):
    gen = torch.Generator().manual_seed(0)
    T, N, F, H = 12, 5, 7, 6
    gru = nn.GRU(F, H)
    features = torch.randn(T, N, F, generator=gen)
    hidden = torch.randn(N, H, generator=gen)
    starts = {
        "random": torch.rand(T, N, generator=gen) < 0.25,
        "none": torch.zeros(T, N, dtype=torch.bool),
        "all": torch.ones(T, N, dtype=torch.bool),
        "first-step-only": torch.zeros(T, N, dtype=torch.bool).index_fill(0, torch.tensor([0]), True),
    }[pattern]
    if pattern == "random":
        starts[0, 0] = starts[5, 1] = starts[5, 2] = True  # several envs resetting on the same step
    out, last = gru_sequence(gru, features, hidden, starts)
    expected_out, expected_last = step_by_step(gru, features, hidden, starts)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)


def test_gru_sequence_gradients_equal_the_loops_and_stop_at_resets():
    gen = torch.Generator().manual_seed(1)
    T, N, F, H = 10, 3, 4, 5
    gru = nn.GRU(F, H)
    features = torch.randn(T, N, F, generator=gen, requires_grad=True)
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[4, 0] = True
    hidden = torch.randn(N, H, generator=gen)
    gru_sequence(gru, features, hidden, starts)[0][-1].sum().backward()
    grad_sequence = features.grad.clone()
    features.grad = None
    step_by_step(gru, features, hidden, starts)[0][-1].sum().backward()
    torch.testing.assert_close(grad_sequence, features.grad, rtol=1e-5, atol=1e-7)
    # Env 0's episode restarted at step 4: its last output does not depend on its earlier inputs.
    assert grad_sequence[:4, 0].abs().max() == 0
    assert grad_sequence[:4, 1].abs().max() > 0


def test_gru_gates_reproduce_the_gru_step_and_stats_are_in_range():
    gen = torch.Generator().manual_seed(2)
    gru = nn.GRU(4, 6)
    x, h = torch.randn(9, 4, generator=gen), torch.randn(9, 6, generator=gen)
    reset, update, candidate = gru_gates(gru, x, h)
    expected = gru(x[None], h[None])[1][0]
    torch.testing.assert_close((1 - update) * candidate + update * h, expected, rtol=1e-5, atol=1e-6)
    stats = gru_gate_stats(gru, x, h)
    assert stats["rnn/hidden_norm"] == pytest.approx(h.norm(dim=1).mean().item())
    for key in ("rnn/update_gate_mean", "rnn/update_gate_saturation", "rnn/reset_gate_saturation"):
        assert 0.0 <= stats[key] <= 1.0
    # Huge input weights saturate every gate.
    with torch.no_grad():
        gru.weight_ih_l0.mul_(1000.0)
    saturated = gru_gate_stats(gru, x, h)
    assert saturated["rnn/update_gate_saturation"] > 0.9 and saturated["rnn/reset_gate_saturation"] > 0.9


def test_agent_carries_the_hidden_state_and_resets_it_at_episode_starts():
    torch.manual_seed(0)
    net = RecurrentActorCritic(ModelConfig(arch="nature", hidden_size=16), GRUConfig(hidden_size=8))
    agent = PolicyAgent(net)
    frames = np.random.default_rng(0).integers(0, 256, (5, 3, 64, 64, 3), dtype=np.uint8)
    starts = np.zeros((5, 3), dtype=bool)
    starts[0] = starts[4, 0] = starts[4, 2] = True  # envs 0 and 2 start a new episode at the last step
    state = agent.initial_state(3)
    assert state.shape == (3, 8) and not state.any()
    actions = []
    for t in range(5):
        a, state = agent.act(frames[t], state, starts[t], deterministic=True)
        actions.append(a)
    # Stepping equals one unroll of the whole sequence: the state went from each step to the next.
    with torch.no_grad():
        logits, _, last = net.unroll(torch.from_numpy(frames), net.initial_state(3, "cpu"), torch.from_numpy(starts))
    np.testing.assert_array_equal(np.stack(actions), logits.argmax(-1).numpy())
    torch.testing.assert_close(state, last)
    # The restarted envs forgot their first four steps; env 1 kept its memory.
    _, fresh = agent.act(frames[4], agent.initial_state(3), np.ones(3, dtype=bool), deterministic=True)
    torch.testing.assert_close(state[[0, 2]], fresh[[0, 2]])
    assert not torch.allclose(state[1], fresh[1])
