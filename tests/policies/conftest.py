"""Fixtures for the policies tests: tiny settings for every algorithm and a tiny saved reward model.

Tiny settings keep a run to a second or two on two CPU cores: 4 environments, 16-step rollouts, the
Nature CNN with 32 hidden units, 128 environment steps in all; Rainbow with a 256-transition buffer,
batches of 16 and one update per vector step once 32 transitions are in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from procgen_common.config import load_config
from trex.reward_net import RewardNetConfig, save_untrained_reward_net

NUM_ENVS, NUM_STEPS = 4, 16
TOTAL_STEPS = 2 * NUM_ENVS * NUM_STEPS  # two PPO updates, or two Rainbow log rows
ALGOS = ("ppo", "ppo_gru", "rainbow", "sb3_ppo")


def policy_overrides(run_dir: Path, algo: str, *extra: str) -> list[str]:
    """``key=value`` overrides for a run of ``algo`` of a second or two into ``run_dir`` (``extra`` wins), setting
    only the sections that algorithm reads (an ``agent.algo=`` in ``extra`` picks it): policies.train refuses a key
    the algorithm never reads."""
    from policies.registry import ALGORITHMS
    from policies.train import ALGORITHM_SECTIONS

    algo = next((e.removeprefix("agent.algo=") for e in reversed(extra) if e.startswith("agent.algo=")), algo)
    unread = ALGORITHM_SECTIONS - set(ALGORITHMS[algo].resume_sections)
    tiny = [
        f"agent.algo={algo}",
        "env.game=starpilot",
        f"env.num_envs={NUM_ENVS}",
        "env.num_levels=20",
        "env.num_threads=0",
        "model.arch=nature",
        "model.hidden_size=32",
        f"ppo.num_steps={NUM_STEPS}",
        "ppo.num_epochs=1",
        "ppo.num_minibatches=2",
        "gru.hidden_size=32",
        "rainbow.buffer_size=256",
        "rainbow.batch_size=16",
        "rainbow.learning_starts=32",
        "rainbow.replay_ratio=4",
        f"rainbow.log_every={NUM_STEPS}",
        "rainbow.target_update_steps=32",
        "rainbow.head_hidden=16",
        "rainbow.num_atoms=11",
        f"train.total_steps={TOTAL_STEPS}",
        "train.num_checkpoints=2",
        "train.torch_threads=1",
        "train.device=cpu",
        "eval.every_steps=0",
        "eval.episodes=2",
        "log.tensorboard=false",
        f"run.dir={run_dir}",
    ]
    return [o for o in tiny if o.split(".")[0] not in unread] + list(extra)


def policy_config(run_dir: Path, algo: str, *extra: str):
    """A checked ``policies.train.Config`` for a tiny run."""
    from policies.train import Config

    return load_config(Config, None, policy_overrides(run_dir, algo, *extra))


def train_policy(run_dir: Path, algo: str, *extra: str) -> Path:
    from policies.train import train

    out = train(policy_config(run_dir, algo, *extra))
    torch.set_num_threads(1)  # train() sets the process-wide thread count; keep tests on one thread
    return out


def save_reward_model(path: Path, game: str = "starpilot", ensemble_size: int = 2, seed: int = 0) -> Path:
    """An untrained T-REX reward model (small ensemble) saved as trex.train_reward saves its reward_net.pt."""
    return save_untrained_reward_net(path, RewardNetConfig(hidden_size=8, ensemble_size=ensemble_size), game, seed=seed)


@pytest.fixture(scope="session")
def reward_model(tmp_path_factory) -> Path:
    """A tiny saved reward model for starpilot (read-only)."""
    return save_reward_model(tmp_path_factory.mktemp("reward") / "reward_net.pt")
