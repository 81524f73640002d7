"""Ray's overhead on a sweep: the same cells run by ``experiments.sweep`` on local Ray and one after another by hand.

    python bench/sweep_overhead.py [--agent-steps 20000] [--out bench/results/sweep_overhead.json]

Four cells (``demos.num_train_levels`` 5 and 6 x seeds 0 and 1) of a small pipeline on the zoo's starpilot
checkpoint: demos, a one-epoch reward model, a short PPO agent on it and the evaluation, about a minute each on 2 cores.
Each cell declares 2 CPUs, so on a 2-core machine Ray runs them one at a time, as the hand loop does: the wall-time
ratio (sweep / by hand) is the sweep's own cost (starting Ray, the workers, the planning and the summary). The hand
loop runs first, then the sweep, in one process; both start from empty folders.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from procgen_common.checkpoint import atomic_write_text

REPO = Path(__file__).resolve().parent.parent
GRID = {"demos.num_train_levels": [5, 6]}
SEEDS = [0, 1]


def cell_overrides(agent_steps: int) -> list[str]:
    ppo = ["model.arch=nature", "model.hidden_size=64", "ppo.num_steps=64", "ppo.num_epochs=1", "train.device=cpu"]
    return [
        "zoo=zoo:starpilot/step_000507904",
        "demos.epsilon=[1.0,0.0]",
        "demos.episodes_per_level=2",
        "demos.num_test_levels=3",
        "demos.max_length=200",
        # the quickstart's reward comparisons as they were when this was measured (commit 6271a1a)
        "reward.data.comparison=episode",
        "reward.data.stride=4",
        "reward.data.start_prior=false",
        "reward.data.num_demos=null",
        "reward.train.epochs=1",
        "reward.log.tensorboard=false",
        *(f"agent.{o}" for o in ppo),
        f"agent.train.total_steps={agent_steps}",
        "agent.train.num_checkpoints=1",
        "agent.eval.every_steps=0",
        "agent.log.tensorboard=false",
        "evaluation.episodes=8",
    ]


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent-steps", type=int, default=20_000, help="PPO steps per cell (default 20000)")
    parser.add_argument("--out", default="bench/results/sweep_overhead.json", help="JSON results file")
    args = parser.parse_args()
    overrides = cell_overrides(args.agent_steps)
    with tempfile.TemporaryDirectory() as tmp:
        by_hand = 0.0
        for (key, values), seed in itertools.product(GRID.items(), SEEDS):
            for value in values:
                folder = Path(tmp) / "hand" / f"{key}={value}" / f"seed{seed}"
                by_hand += run([sys.executable, "-m", "experiments.pipeline", "-c", "configs/quickstart.yaml",
                                *overrides, f"{key}={value}", f"seed={seed}", f"dir={folder}"])  # fmt: skip
                print(f"by hand: {folder.parent.name} seed {seed} done ({by_hand:.0f} s so far)", flush=True)
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"experiment": "configs/quickstart.yaml", "overrides": overrides, "grid": GRID,
                                         "seeds": SEEDS, "out": str(Path(tmp) / "sweep"),
                                         "ray": {"cpus_per_cell": 2}}))  # fmt: skip
        on_ray = run([sys.executable, "-m", "experiments.sweep", "-c", str(sweep)])
    results = {
        "cells": 4,
        "agent_steps": args.agent_steps,
        "by_hand_s": by_hand,
        "sweep_s": on_ray,
        "ratio_sweep_over_hand": on_ray / by_hand,
    }
    print(json.dumps(results, indent=2))
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
