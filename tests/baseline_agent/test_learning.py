"""Learning check (slow, not in the default run): `python -m pytest -m slow`.

The CPU preset on coinrun (the game that learns fastest on a CPU budget) must beat a uniform
random policy on held-out levels after 300k steps. About five minutes on 2 cores.
"""

from __future__ import annotations

import pytest

from procgen_common.agents import RandomAgent, load_agent
from procgen_common.evaluation import run_episodes
from tests.conftest import REPO


@pytest.mark.slow
def test_cpu_preset_beats_random_on_held_out_coinrun(tmp_path):
    from baseline_agent.train import Config, train
    from procgen_common.config import load_config

    config = load_config(
        Config,
        REPO / "configs" / "cpu.yaml",
        ["env.game=coinrun", "train.total_steps=300000", "eval.every_steps=0", f"run.dir={tmp_path / 'run'}"],
    )
    agent, _, env_config = load_agent(train(config))
    trained = run_episodes(agent, env_config, "test", 200, seed=1).returns.mean()
    random = run_episodes(RandomAgent(0), env_config, "test", 200, seed=1).returns.mean()
    # Coinrun pays 10 per solved level: a random policy solves ~25-30% of easy levels.
    assert trained > random + 1.0, (trained, random)
