"""The pure pieces of PPO against hand computations: GAE, the loss, reward scaling, running stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baseline_agent.ppo import PPOConfig, RewardScaler, RunningMeanStd, compute_gae, ppo_loss

# ---------------------------------------------------------------------------------------------
# compute_gae
# ---------------------------------------------------------------------------------------------


def test_gae_matches_hand_computation_with_episode_boundary_and_bootstrap():
    gamma, lam = 0.9, 0.8
    gl = gamma * lam
    # Two environments, four steps; columns are environments.
    # env 0: step 1 ends an episode (no bootstrap from step 2 into step 1); the last step
    #        bootstraps from last_value = 2.0.
    # env 1: the last step ends an episode, so last_value = 10.0 must not be used at all.
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 1.0], [1.0, 2.0], [0.2, 3.0], [0.4, 4.0]], dtype=torch.float64)
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    last_value = torch.tensor([2.0, 10.0], dtype=torch.float64)

    # env 0, backwards in time
    d3 = 1.0 + gamma * 2.0 - 0.4  # bootstraps from last_value
    a3 = d3
    d2 = 2.0 + gamma * 0.4 - 0.2
    a2 = d2 + gl * a3
    d1 = 0.0 + 0.0 - 1.0  # episode ended at step 1: no next value, no carried advantage
    a1 = d1
    d0 = 1.0 + gamma * 1.0 - 0.5
    a0 = d0 + gl * a1
    env0 = [a0, a1, a2, a3]
    # env 1
    e3 = 3.0 - 4.0  # episode ended at the last step: last_value ignored
    b3 = e3
    e2 = 0.0 + gamma * 4.0 - 3.0
    b2 = e2 + gl * b3
    e1 = 1.0 + gamma * 3.0 - 2.0
    b1 = e1 + gl * b2
    e0 = 0.0 + gamma * 2.0 - 1.0
    b0 = e0 + gl * b1
    env1 = [b0, b1, b2, b3]
    expected = torch.tensor([env0, env1], dtype=torch.float64).T

    advantages, returns = compute_gae(rewards, values, dones, last_value, gamma, lam)
    assert advantages.shape == returns.shape == (4, 2)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)
    # Spot-check the arithmetic itself, so a typo above cannot hide a wrong expectation.
    assert a0 == pytest.approx(0.68) and a2 == pytest.approx(3.888)


def test_gae_lambda_one_gamma_one_is_monte_carlo_return_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [0.25], [4.0]])
    dones = torch.zeros(3, 1)
    last_value = torch.tensor([10.0])
    advantages, returns = compute_gae(rewards, values, dones, last_value, 1.0, 1.0)
    # Undiscounted reward-to-go plus the bootstrap value.
    torch.testing.assert_close(returns, torch.tensor([[1.0 + 2 + 3 + 10], [2.0 + 3 + 10], [3.0 + 10]]))
    torch.testing.assert_close(advantages, returns - values)


def test_gae_lambda_zero_is_one_step_td_error():
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [0.25, 2.0]])
    dones = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    last_value = torch.tensor([3.0, 5.0])
    g = 0.5
    advantages, _ = compute_gae(rewards, values, dones, last_value, g, 0.0)
    expected = torch.tensor(
        [
            [1.0 + g * 0.25 - 0.5, 0.0 - 1.0],
            [2.0 + g * 3.0 - 0.25, 1.0 + g * 5.0 - 2.0],
        ]
    )
    torch.testing.assert_close(advantages, expected)


# ---------------------------------------------------------------------------------------------
# ppo_loss
# ---------------------------------------------------------------------------------------------


def _config(**kw) -> PPOConfig:
    base = {"norm_adv": False, "ent_coef": 0.0, "vf_coef": 0.0, "clip_coef": 0.2, "clip_value": True}
    base.update(kw)
    return PPOConfig(**base)


def test_identical_policies_give_ratio_one_no_clipping_and_zero_kl():
    torch.manual_seed(0)
    logits = torch.randn(6, 15)
    actions = torch.tensor([0, 3, 14, 7, 7, 1])
    old_logprobs = torch.log_softmax(logits, -1)[torch.arange(6), actions]
    advantages = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.0])
    values = torch.zeros(6)
    loss, stats = ppo_loss(logits, values, actions, old_logprobs, values, advantages, values, _config())
    assert stats["losses/clipfrac"].item() == 0.0
    assert stats["losses/approx_kl"].item() == pytest.approx(0.0, abs=1e-7)
    # ratio 1: the surrogate is -mean(advantages)
    assert stats["losses/policy_loss"].item() == pytest.approx(-advantages.mean().item(), abs=1e-6)
    assert loss.item() == pytest.approx(-advantages.mean().item(), abs=1e-6)


def test_policy_ratio_is_clipped_in_the_pessimistic_direction():
    # Two actions with equal logits: new log-prob = log(1/2); old log-probs chosen so ratio = 1.5.
    logits = torch.zeros(2, 2)
    actions = torch.tensor([0, 1])
    old_logprobs = torch.full((2,), math.log(0.5) - math.log(1.5))
    advantages = torch.tensor([1.0, -1.0])
    zeros = torch.zeros(2)
    cfg = _config(clip_coef=0.2)
    _, stats = ppo_loss(logits, zeros, actions, old_logprobs, zeros, advantages, zeros, cfg)
    # A > 0: max(-1.5, -1.2) = -1.2 (clipped); A < 0: max(1.5, 1.2) = 1.5 (unclipped).
    assert stats["losses/policy_loss"].item() == pytest.approx((-1.2 + 1.5) / 2, abs=1e-6)
    assert stats["losses/clipfrac"].item() == 1.0
    assert stats["losses/approx_kl"].item() == pytest.approx((1.5 - 1) - math.log(1.5), abs=1e-6)
    # Entropy of a uniform distribution over two actions.
    assert stats["losses/entropy"].item() == pytest.approx(math.log(2), abs=1e-6)


def test_value_clipping_takes_the_larger_squared_error():
    logits = torch.zeros(2, 3)
    actions = torch.tensor([0, 0])
    old_logprobs = torch.log_softmax(logits, -1)[:, 0]
    advantages = torch.zeros(2)
    values = torch.tensor([1.0, 0.0])
    old_values = torch.tensor([0.5, 0.5])
    returns = torch.tensor([0.8, -0.1])
    # sample 0: unclipped (1.0 - 0.8)^2 = 0.04; clipped value 0.5 + 0.2 = 0.7 -> (0.7 - 0.8)^2 = 0.01
    # sample 1: unclipped (0.0 + 0.1)^2 = 0.01; clipped value 0.5 - 0.2 = 0.3 -> (0.3 + 0.1)^2 = 0.16
    clipped_expected = 0.5 * (0.04 + 0.16) / 2
    unclipped_expected = 0.5 * (0.04 + 0.01) / 2
    _, stats = ppo_loss(logits, values, actions, old_logprobs, old_values, advantages, returns, _config())
    assert stats["losses/value_loss"].item() == pytest.approx(clipped_expected, abs=1e-6)
    _, stats = ppo_loss(
        logits, values, actions, old_logprobs, old_values, advantages, returns, _config(clip_value=False)
    )
    assert stats["losses/value_loss"].item() == pytest.approx(unclipped_expected, abs=1e-6)


def test_total_loss_combines_terms_with_coefficients():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # probabilities 1/4, 3/4
    actions = torch.tensor([1])
    old_logprobs = torch.tensor([math.log(0.75)])  # ratio 1
    advantages = torch.tensor([2.0])
    values, old_values, returns = torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([3.0])
    cfg = _config(ent_coef=0.1, vf_coef=0.5)
    loss, _ = ppo_loss(logits, values, actions, old_logprobs, old_values, advantages, returns, cfg)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    policy = -2.0
    value = 0.5 * (1.0 - 3.0) ** 2  # clipping cannot move a value equal to the old one
    assert loss.item() == pytest.approx(policy - 0.1 * entropy + 0.5 * value, abs=1e-5)


def test_advantage_normalisation_makes_the_surrogate_scale_free():
    logits = torch.zeros(4, 3)
    actions = torch.zeros(4, dtype=torch.long)
    old = torch.log_softmax(logits, -1)[:, 0]
    zeros = torch.zeros(4)
    adv = torch.tensor([1.0, 2.0, 3.0, 4.0])
    _, s1 = ppo_loss(logits, zeros, actions, old, zeros, adv, zeros, _config(norm_adv=True))
    _, s2 = ppo_loss(logits, zeros, actions, old, zeros, 100 * adv + 7, zeros, _config(norm_adv=True))
    # ratio 1 and normalised advantages of mean 0: the surrogate is 0 whatever the scale.
    assert s1["losses/policy_loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert s2["losses/policy_loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_ppo_loss_gradient_flows_to_logits_and_values():
    logits = torch.randn(4, 15, requires_grad=True)
    values = torch.randn(4, requires_grad=True)
    actions = torch.tensor([1, 2, 3, 4])
    old = torch.log_softmax(logits.detach(), -1)[torch.arange(4), actions] - 0.05
    loss, stats = ppo_loss(
        logits, values, actions, old, values.detach() + 0.01, torch.randn(4), torch.randn(4), PPOConfig()
    )
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert values.grad is not None and values.grad.abs().sum() > 0
    assert all(not v.requires_grad for v in stats.values())


# ---------------------------------------------------------------------------------------------
# RewardScaler and RunningMeanStd
# ---------------------------------------------------------------------------------------------


def test_reward_scaler_divides_by_std_of_discounted_returns_and_resets_on_done():
    gamma = 0.5
    scaler = RewardScaler(num_envs=2, gamma=gamma, clip=10.0)
    # Step 1: discounted returns are the rewards themselves; env 1's episode ends here.
    r1 = np.array([1.0, 3.0], dtype=np.float32)
    out1 = scaler(r1, np.array([False, True]))
    returns_so_far = [1.0, 3.0]
    np.testing.assert_allclose(out1, r1 / 1.0, rtol=1e-3)  # std of [1, 3] is 1
    assert out1.dtype == np.float32
    # Step 2: env 0 continues (0.5 * 1 + 1); env 1 was reset, so its return restarts (0 * 0.5 + 1).
    r2 = np.array([1.0, 1.0], dtype=np.float32)
    out2 = scaler(r2, np.array([False, False]))
    returns_so_far += [gamma * 1.0 + 1.0, 0.0 * gamma + 1.0]
    np.testing.assert_allclose(out2, r2 / np.std(returns_so_far), rtol=1e-3)
    # Without the reset env 1's return would be 0.5 * 3 + 1 = 2.5 and the std different.
    assert not np.allclose(out2, r2 / np.std([1.0, 3.0, 1.5, 2.5]), rtol=1e-3)


def test_reward_scaler_clips_scaled_rewards():
    scaler = RewardScaler(num_envs=2, gamma=0.9, clip=3.0)
    for _ in range(200):
        scaler(np.array([0.01, -0.01], dtype=np.float32), np.array([True, True]))
    # 400 returns of +-0.01 and two of +-100: std ~ sqrt(2 * 100**2 / 402) ~ 7, so 100 / 7 > 3.
    out = scaler(np.array([100.0, -100.0], dtype=np.float32), np.array([False, False]))
    np.testing.assert_array_equal(out, [3.0, -3.0])
    small = scaler(np.array([0.5, -0.5], dtype=np.float32), np.array([False, False]))
    assert np.all(np.abs(small) < 3.0)  # unclipped below the limit


def test_reward_scaler_state_round_trip():
    a = RewardScaler(num_envs=3, gamma=0.99)
    rng = np.random.default_rng(0)
    for _ in range(4):
        a(rng.normal(size=3).astype(np.float32), np.array([False, True, False]))
    b = RewardScaler(num_envs=3, gamma=0.99)
    b.load_state_dict(a.state_dict())
    rewards = rng.normal(size=3).astype(np.float32)
    np.testing.assert_array_equal(a(rewards, np.zeros(3, bool)), b(rewards, np.zeros(3, bool)))


def test_running_mean_std_matches_numpy_over_concatenated_batches():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=n) for n in (5, 1, 17, 64, 2)]
    rms = RunningMeanStd()
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    # The initial (mean 0, var 1) prior weighs 1e-4 samples, so agreement is to ~1e-5.
    assert rms.mean == pytest.approx(data.mean(), rel=1e-4)
    assert rms.var == pytest.approx(data.var(), rel=1e-4)
    assert rms.count == pytest.approx(data.size, abs=1e-3)
