"""Shared fixtures: one torch thread, tiny training configs, a shared tiny run and a CLI runner.

Tiny settings keep every training run to a few seconds on two CPU cores: 4 environments x 32
steps = 128 environment steps per update, the Nature CNN with 32 hidden units, one epoch of two
minibatches, and Procgen stepping in the calling thread.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_MINIBATCHES = 4, 32, 1, 2
BATCH = NUM_ENVS * NUM_STEPS  # environment steps per PPO update


def tiny_overrides(run_dir: Path, *extra: str) -> list[str]:
    """``key=value`` overrides for a few-second training run into ``run_dir`` (``extra`` wins)."""
    return [
        "env.game=starpilot",
        f"env.num_envs={NUM_ENVS}",
        "env.num_levels=20",
        "env.num_threads=0",
        f"ppo.num_steps={NUM_STEPS}",
        f"ppo.num_epochs={NUM_EPOCHS}",
        f"ppo.num_minibatches={NUM_MINIBATCHES}",
        "model.arch=nature",
        "model.hidden_size=32",
        f"train.total_steps={2 * BATCH}",
        "train.num_checkpoints=2",
        "train.torch_threads=1",
        "train.device=cpu",
        "eval.every_steps=0",
        "eval.episodes=2",
        "log.tensorboard=false",
        f"run.dir={run_dir}",
        *extra,
    ]


def tiny_config(run_dir: Path, *extra: str):
    """A checked ``baseline_agent.train.Config`` for a tiny run (built through ``load_config``)."""
    from baseline_agent.train import Config
    from procgen_common.config import load_config

    return load_config(Config, None, tiny_overrides(run_dir, *extra))


def train_tiny(run_dir: Path, *extra: str) -> Path:
    from baseline_agent.train import train

    out = train(tiny_config(run_dir, *extra))
    torch.set_num_threads(1)  # train() sets the process-wide thread count; keep tests on one thread
    return out


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a subprocess (text output captured as written: a progress bar's carriage returns
    are kept, where ``text=True`` would turn them into newlines)."""
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, timeout=timeout, check=False)
    result.stdout, result.stderr = (out.decode(errors="replace") for out in (result.stdout, result.stderr))
    return result


def terminal_lines(stderr: str) -> list[str]:
    """The non-blank lines a terminal would show of ``stderr``: a carriage return (how a progress bar redraws
    itself) starts its line again, so each line shows only what was written after its last one."""
    return [shown for line in stderr.split("\n") if (shown := line.split("\r")[-1].strip())]


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """What a terminal shows of stderr is exactly one line, starting with 'error:', mentioning every needle, no
    traceback (a progress bar wiped before the error is allowed; one left standing is not)."""
    lines = terminal_lines(stderr)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


TINY_RUN_EXTRA = (
    f"train.total_steps={4 * BATCH}",
    "train.num_checkpoints=3",
    f"eval.every_steps={2 * BATCH}",
    "env.start_level=0",
    "env.num_levels=20",
    "env.test_start_level=100",
    "env.test_num_levels=50",
    "log.tensorboard=true",
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run shared by read-only tests: 4 updates of 128 steps, 3 series checkpoints
    (targets 0, 256, 512), evaluation every 256 steps, TensorBoard on. Tests must not modify it."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    return train_tiny(run_dir, *TINY_RUN_EXTRA)
