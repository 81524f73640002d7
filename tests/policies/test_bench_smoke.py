"""bench/agent_learning.py end to end on tiny runs: trains each method, evaluates it beside the baselines."""

from __future__ import annotations

import importlib.util
import json

import torch

from tests.conftest import REPO
from tests.policies.conftest import policy_overrides


def _script(name: str):
    """Import ``bench/<name>.py`` (bench is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_learning_trains_evaluates_and_summarises(tmp_path, reward_model):
    # The tiny settings without run.dir (the benchmark names each run folder) and without the algorithm.
    tiny = [o for o in policy_overrides(tmp_path, "ppo") if not o.startswith(("run.dir=", "agent.algo="))]
    out = tmp_path / "agents"
    args = [
        "--methods",
        f"ppo={REPO / 'configs' / 'policy-ppo-env.yaml'}",
        f"learned={REPO / 'configs' / 'policy-ppo-learned.yaml'}",
        "--option",
        f"learned:reward.model={reward_model}",
        "--episodes=2",
        f"--out={out}",
        *tiny,
        "train.num_checkpoints=1",
    ]
    summary = _script("agent_learning").main(args)
    torch.set_num_threads(1)
    assert list(summary["methods"]) == ["random", "ppo", "learned"]
    for name in ("ppo", "learned"):
        (run,) = summary["methods"][name]["runs"]
        saved = json.loads((out / f"{name}-seed0" / "eval" / "latest-test.json").read_text())
        assert run["mean_return"] == saved["mean_return"] and saved["episodes"] == 2
    assert "source: learned" in (out / "learned-seed0" / "config.yaml").read_text()
    assert json.loads((out / "summary.json").read_text()) == summary
    table = (out / "summary.md").read_text()
    assert f"{summary['methods']['ppo']['mean']:.2f}" in table

    # A second run resumes the finished runs instead of training again.
    before = (out / "ppo-seed0" / "checkpoints" / "latest.pt").stat().st_mtime_ns
    _script("agent_learning").main(args)
    torch.set_num_threads(1)
    assert (out / "ppo-seed0" / "checkpoints" / "latest.pt").stat().st_mtime_ns == before
