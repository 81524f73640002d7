"""Short runs of every algorithm on the true and the learned reward: the foundation's run folder, true and
learned returns side by side, saved agents that act as the trained network, test_policy.py, resuming."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticCnnPolicy

import test_policy
from policies.ppo_gru import GRUConfig, RecurrentActorCritic
from policies.rainbow import QNetwork, RainbowConfig
from policies.train import Config, train
from procgen_common.agents import load_agent
from procgen_common.checkpoint import load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import from_dict, load_config
from procgen_common.env import NUM_ACTIONS, EnvConfig, ProcgenVecEnv
from procgen_common.networks import ActorCritic, ModelConfig
from tests.policies.conftest import ALGOS, NUM_ENVS, NUM_STEPS, policy_config, train_policy

RUN_STEPS = 8 * NUM_ENVS * NUM_STEPS  # 128 steps per env: random starpilot episodes end within that


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _rnn_stats(algo: str) -> list[str]:
    return ["gru.log_rnn_stats=true"] if algo == "ppo_gru" else []  # gru.* is refused under the other algorithms


def _reward_args(source: str, reward_model: Path) -> list[str]:
    return ["reward.source=learned", f"reward.model={reward_model}"] if source == "learned" else []


@pytest.fixture(scope="module")
def runs(tmp_path_factory, reward_model) -> dict[tuple[str, str], Path]:
    """A finished run of every algorithm on each reward source, 512 steps each (read-only)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for algo in ALGOS:
        for source in ("env", "learned"):
            out[algo, source] = train_policy(
                root / f"{algo}-{source}",
                algo,
                f"train.total_steps={RUN_STEPS}",
                "train.num_checkpoints=3",
                *_rnn_stats(algo),
                *_reward_args(source, reward_model),
            )
    return out


@pytest.mark.parametrize("source", ["env", "learned"])
@pytest.mark.parametrize("algo", ALGOS)
def test_short_run_writes_the_foundation_run_folder(runs, algo, source, reward_model):
    run_dir = runs[algo, source]
    saved = load_config(Config, run_dir / "config.yaml")
    assert saved == policy_config(
        run_dir,
        algo,
        f"train.total_steps={RUN_STEPS}",
        "train.num_checkpoints=3",
        *_rnn_stats(algo),
        *_reward_args(source, reward_model),
    )
    rows = read_progress(run_dir)
    assert [int(r["step"]) for r in rows] == [64 * k for k in range(1, 9)]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["latest.pt", "step_000000000.pt", "step_000000256.pt", "step_000000512.pt"]
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert latest["algo"] == algo and latest["step"] == RUN_STEPS
    assert latest["config"]["reward"]["source"] == source
    last = rows[-1]
    assert last["charts/episodic_return"] != "" and int(last["charts/episodes"]) > 0
    # The true return is always logged; the learned one beside it exactly when the reward is learned.
    assert (last["charts/learned_return"] != "") == (source == "learned")
    if source == "learned":
        assert float(last["charts/learned_return"]) != float(last["charts/episodic_return"])


def test_rnn_stats_are_logged(runs):
    last = read_progress(runs["ppo_gru", "env"])[-1]
    assert float(last["rnn/hidden_norm"]) > 0
    assert 0 <= float(last["rnn/update_gate_saturation"]) <= 1


def _frames(steps: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Real frames of 4 envs playing randomly, ``(steps, 4, 64, 64, 3)``, and the episode-start flags."""
    env = ProcgenVecEnv(EnvConfig(num_envs=4, num_levels=20, num_threads=0), num_envs=4, seed=5)
    rng = np.random.default_rng(0)
    frames, starts = [env.reset().copy()], [np.ones(4, dtype=bool)]
    try:
        for _ in range(steps - 1):
            obs, _, dones, _ = env.step(rng.integers(0, NUM_ACTIONS, 4))
            frames.append(obs.copy())
            starts.append(dones.copy())
    finally:
        env.close()
    return np.stack(frames), np.stack(starts)


def _reference_actions(algo: str, checkpoint: dict, frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Greedy actions of a network rebuilt by hand from the checkpoint's weights."""
    config = checkpoint["config"]
    model = from_dict(ModelConfig, config["model"], "test")
    x = torch.from_numpy(frames)
    with torch.no_grad():
        if algo == "ppo":
            net = ActorCritic(model, (64, 64, 3), NUM_ACTIONS)
            net.load_state_dict(checkpoint["model"])
            return net.eval()(x.flatten(0, 1))[0].argmax(-1).view(frames.shape[:2]).numpy()
        if algo == "ppo_gru":
            net = RecurrentActorCritic(model, from_dict(GRUConfig, config["gru"], "test"))
            net.load_state_dict(checkpoint["model"])
            hidden = torch.zeros(frames.shape[1], net.hidden_size)
            return net.eval()(x, hidden, torch.from_numpy(starts))[0].argmax(-1).numpy()
        if algo == "rainbow":
            net = QNetwork(model, from_dict(RainbowConfig, config["rainbow"], "test"))
            net.load_state_dict(checkpoint["model"])
            return net.eval().q_values(x.flatten(0, 1)).argmax(-1).view(frames.shape[:2]).numpy()
    policy = ActorCriticCnnPolicy(
        spaces.Box(0, 255, (3, 64, 64), dtype=np.uint8),
        spaces.Discrete(NUM_ACTIONS),
        lambda _: 0.0,
        features_extractor_kwargs={"features_dim": model.hidden_size},
    )
    policy.load_state_dict(checkpoint["model"])
    with torch.no_grad():
        logits = policy.eval().get_distribution(x.flatten(0, 1).permute(0, 3, 1, 2)).distribution.logits
    return logits.argmax(-1).view(frames.shape[:2]).numpy()


@pytest.mark.parametrize("algo", ALGOS)
def test_saved_agent_acts_like_the_saved_network(runs, algo):
    path = runs[algo, "learned"] / "checkpoints" / "latest.pt"
    agent, checkpoint, env_config = load_agent(path)
    assert env_config.game == "starpilot" and env_config.num_levels == 20
    frames, starts = _frames()
    state = agent.initial_state(4)
    actions = []
    for t in range(len(frames)):
        a, state = agent.act(frames[t], state, starts[t], deterministic=True)
        actions.append(a)
    np.testing.assert_array_equal(np.stack(actions), _reference_actions(algo, load_checkpoint(path), frames, starts))
    # Sampled actions are reproducible from the torch seed (noisy nets draw their noise from it too).
    sampled = []
    for _ in range(2):
        torch.manual_seed(7)
        sampled.append(agent.act(frames[0], agent.initial_state(4), starts[0], deterministic=False)[0])
    np.testing.assert_array_equal(sampled[0], sampled[1])


@pytest.mark.parametrize("algo", ALGOS)
def test_test_policy_evaluates_every_algorithm(runs, algo, tmp_path):
    out = tmp_path / "eval.json"
    summary = test_policy.main([str(runs[algo, "env"]), "--episodes", "2", "--num-envs", "2", "--out", str(out)])
    assert summary["algo"] == algo and summary["episodes"] == 2 and summary["held_out"]
    assert out.exists() and out.with_suffix(".csv").exists()


@pytest.mark.parametrize("algo", ["ppo_gru", "rainbow", "sb3_ppo"])
def test_resume_continues_from_latest(tmp_path, algo, reward_model):
    run_dir = tmp_path / "run"
    learned = ["reward.source=learned", f"reward.model={reward_model}"]
    extra = ["reward.scale=true"] if algo == "rainbow" else []
    train_policy(run_dir, algo, *learned, *extra)
    first = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    train_policy(run_dir, algo, *learned, *extra, "train.total_steps=256", "train.resume=true")
    assert [int(r["step"]) for r in read_progress(run_dir)] == [64, 128, 192, 256]
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert latest["step"] == 256 and latest["update"] == first["update"] + 2
    if algo == "rainbow":
        assert latest["num_updates"] > first["num_updates"]
        assert latest["reward_wrapper"]["scaler"]["count"] > first["reward_wrapper"]["scaler"]["count"]


def test_resume_with_another_reward_model_is_refused(tmp_path, reward_model):
    from tests.policies.conftest import save_reward_model

    run_dir = tmp_path / "run"
    train_policy(run_dir, "ppo", "reward.source=learned", f"reward.model={reward_model}")
    other = save_reward_model(tmp_path / "other.pt", seed=1)
    config = policy_config(run_dir, "ppo", "reward.source=learned", f"reward.model={other}", "train.resume=true")
    with pytest.raises(UserError, match="reward.model differ"):
        train(config)


@pytest.mark.parametrize("off", ["distributional", "dueling", "noisy", "double_q", "prioritized", "target_network"])
def test_rainbow_runs_with_each_component_switched_off(tmp_path, off):
    run_dir = train_policy(tmp_path / "run", "rainbow", f"rainbow.{off}=false")
    last = read_progress(run_dir)[-1]
    assert int(last["replay/updates"]) > 0 and np.isfinite(float(last["losses/loss"]))
    if off == "noisy":
        assert 0 < float(last["charts/epsilon"]) < 1  # epsilon-greedy exploration instead
    if off == "prioritized":
        assert last["replay/beta"] == ""
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ("target" in latest) == (off != "target_network")
