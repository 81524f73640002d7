"""The networks: input handling, output shapes, and the Gumbel-max action sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procgen_common.networks import ActorCritic, ModelConfig, PolicyAgent, frames_to_input, sample_actions


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


def test_policy_agent_over_a_feed_forward_net_acts_from_its_forward_pass():
    torch.manual_seed(1)
    net = ActorCritic(ModelConfig(arch="nature", hidden_size=16), (64, 64, 3), 15)
    with torch.no_grad():
        net.policy_head.weight.normal_(std=20.0)  # logits a unit or so apart: a wrong temperature changes draws
    agent = PolicyAgent(net)
    obs = np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        logits = net(torch.from_numpy(obs))[0]
    actions, state = agent.act(obs, agent.initial_state(64), np.ones(64, bool), deterministic=True)
    np.testing.assert_array_equal(actions, logits.argmax(-1).numpy())
    assert state is None and not net.training
    # Sampled actions: the same draws from the same distribution as sampling the forward pass's logits.
    torch.manual_seed(5)
    sampled, _ = agent.act(obs, None, np.zeros(64, bool))
    torch.manual_seed(5)
    np.testing.assert_array_equal(sampled, sample_actions(logits).numpy())
    assert (sampled != actions).any()


def test_model_config_rejects_empty_impala_channels():
    with pytest.raises(ValueError, match="impala_channels"):
        ModelConfig(impala_channels=[]).validate()
    with pytest.raises(ValueError, match="impala_channels"):
        ModelConfig(impala_channels=[16, 0]).validate()


def test_space_to_depth_conv_equals_the_strided_convolution():
    """The block-rearranged first layer computes the same values and weight gradients as the plain conv."""
    from procgen_common.networks import NatureCNN, space_to_depth_conv

    torch.manual_seed(0)
    net = NatureCNN((64, 64, 3), 32)
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    direct = net.conv1(frames_to_input(frames))
    blocks = space_to_depth_conv(frames, net.conv1)
    assert blocks.shape == direct.shape == (5, 32, 15, 15)
    torch.testing.assert_close(blocks, direct, rtol=1e-5, atol=1e-5)
    grad_direct = torch.autograd.grad(direct.square().sum(), net.conv1.weight)[0]
    grad_blocks = torch.autograd.grad(blocks.square().sum(), net.conv1.weight)[0]
    torch.testing.assert_close(grad_blocks, grad_direct, rtol=1e-4, atol=1e-3)


def test_nature_cnn_under_bf16_autocast_matches_fp32():
    """bf16 autocast (which takes the block path) stays within bf16 precision of the fp32 network."""
    from procgen_common.networks import NatureCNN

    torch.manual_seed(0)
    net = NatureCNN((64, 64, 3), 64)
    frames = torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8)
    full = net(frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = net(frames).float()
    assert (half - full).abs().max() < 0.05 * full.abs().max()


def test_an_agent_with_its_own_generator_samples_apart_from_torchs_global_one():
    """Demo players in several threads each draw from their own generator: the global one's state is irrelevant."""
    torch.manual_seed(2)
    net = ActorCritic(ModelConfig(arch="nature", hidden_size=16), (64, 64, 3), 15)
    obs = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    draws = []
    for global_seed in (0, 1):
        agent = PolicyAgent(net)
        agent.generator = torch.Generator().manual_seed(7)
        torch.manual_seed(global_seed)
        draws.append(np.concatenate([agent.act(obs, None, np.ones(32, bool))[0] for _ in range(3)]))
    np.testing.assert_array_equal(draws[0], draws[1])
    agent = PolicyAgent(net)  # no generator: torch's global one, so another global seed draws otherwise
    torch.manual_seed(1)
    assert not np.array_equal(np.concatenate([agent.act(obs, None, np.ones(32, bool))[0] for _ in range(3)]), draws[0])
