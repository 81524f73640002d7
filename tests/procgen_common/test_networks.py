"""The networks: input handling, output shapes, and the Gumbel-max action sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procgen_common.networks import ActorCritic, FeedForwardAgent, ModelConfig, frames_to_input, sample_actions


def test_frames_to_input_scales_and_permutes():
    frames = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    frames[1, 5, 7, 2] = 255
    frames[0, 0, 1, 0] = 51
    x = frames_to_input(frames)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert x[1, 2, 5, 7] == 1.0
    assert x[0, 0, 0, 1] == pytest.approx(0.2)
    assert x.sum() == pytest.approx(1.2)
    assert frames[1, 5, 7, 2] == 255  # the uint8 input is not modified


@pytest.mark.parametrize(
    "config",
    [ModelConfig(arch="nature", hidden_size=16), ModelConfig(arch="impala", impala_channels=[4, 8], hidden_size=16)],
)
def test_actor_critic_shapes_and_initial_policy(config):
    torch.manual_seed(0)
    net = ActorCritic(config, (64, 64, 3), 15)
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    logits, values = net(frames)
    assert logits.shape == (5, 15) and values.shape == (5,)
    # The 0.01-gain policy head starts close to uniform.
    probs = torch.softmax(logits, -1)
    assert (probs - 1 / 15).abs().max() < 0.01


def test_sample_actions_follows_the_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([0.7, 0.2, 0.1, 0.0])
    logits = torch.log(probs).expand(20000, 4)
    counts = torch.bincount(sample_actions(logits), minlength=4).double() / 20000
    torch.testing.assert_close(counts, probs.double(), atol=0.015, rtol=0)
    assert counts[3] == 0  # probability 0 is never drawn


def test_feed_forward_agent_greedy_actions_are_the_argmax():
    torch.manual_seed(1)
    net = ActorCritic(ModelConfig(arch="nature", hidden_size=16), (64, 64, 3), 15)
    agent = FeedForwardAgent(net)
    obs = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    actions, state = agent.act(obs, agent.initial_state(6), np.ones(6, bool), deterministic=True)
    with torch.no_grad():
        expected = net(torch.from_numpy(obs))[0].argmax(-1).numpy()
    np.testing.assert_array_equal(actions, expected)
    assert state is None and not net.training


def test_model_config_rejects_empty_impala_channels():
    with pytest.raises(ValueError, match="impala_channels"):
        ModelConfig(impala_channels=[]).validate()
    with pytest.raises(ValueError, match="impala_channels"):
        ModelConfig(impala_channels=[16, 0]).validate()
