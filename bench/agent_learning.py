"""Learning check for the agents (issue 4): each algorithm, on the true or a learned reward, against a random
policy and the best demonstrator, on held-out levels.

    python bench/agent_learning.py --methods ppo=configs/policy-ppo-env.yaml gru=configs/policy-gru-env.yaml
        rainbow=configs/policy-rainbow-env.yaml learned=configs/policy-ppo-learned.yaml
        [--option learned:reward.model=PATH ...] [--demos DEMO_FOLDER] [--seeds 0] [--episodes 100]
        [--out bench/results/agents] [key=value ...]

Each method is NAME=CONFIG, a ``policies.train`` preset; ``key=value`` overrides apply to every method and
``--option NAME:key=value`` to one. For each method and seed it trains ``<out>/<NAME>-seed<S>`` (an interrupted
or finished run resumes, so rerunning continues), then plays ``--episodes`` episodes of the final policy on the
held-out levels (``<run>/eval/latest-test.json``). Beside them, a uniform random policy and, with ``--demos``
(a ``trex.generate_demos`` folder), the best demonstrator: the checkpoint whose training-level demos have the
highest mean return, played on the same held-out episodes. Writes ``<out>/summary.json`` and
``<out>/summary.md``.

The same methods as pipeline cells on Ray: ``python -m experiments.sweep -c configs/sweep-agent-learning.yaml`` (one
cell per method, each training its own demonstrator and reward model and the method's agent on the learned and on
the true reward; its returns.png draws every policy's held-out return). This script stays for what a pipeline cell
cannot be: any ``policies.train`` preset, on the game's reward alone or on a reward model trained elsewhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from experiments.pipeline import best_demonstrator
from policies.train import Config, train
from procgen_common.agents import RandomAgent
from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import UserError, main_guard
from procgen_common.config import load_config
from procgen_common.evaluation import evaluate_agent, evaluate_checkpoint, write_evaluation
from procgen_common.stats import bootstrap_ci


def parse_pairs(entries: list[str], sep: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for entry in entries:
        name, found, value = entry.partition(sep)
        if not found or not name or not value:
            raise UserError(f"{what}: {entry!r} must look like NAME{sep}VALUE")
        pairs.append((name, value))
    return pairs


def train_seconds(run_dir: Path) -> float:
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["time/elapsed_s"]) if rows else 0.0


def main_table(summary: dict) -> list[str]:
    lines = [
        "| method | config | held-out return per seed | mean (95% CI over seeds) | train minutes |",
        "|---|---|---|---|---|",
    ]
    for name, row in summary["methods"].items():
        per_seed = ", ".join(f"{r['mean_return']:.2f}" for r in row["runs"])
        minutes = ", ".join(f"{r['train_seconds'] / 60:.0f}" for r in row["runs"] if r.get("train_seconds"))
        lines.append(
            f"| {name} | {row['config']} | {per_seed} | {row['mean']:.2f} ({row['ci95'][0]:.2f} to "
            f"{row['ci95'][1]:.2f}) | {minutes or '-'} |"
        )
    return lines


def aggregate(runs: list[dict]) -> dict:
    means = np.array([r["mean_return"] for r in runs])
    return {"runs": runs, "mean": float(means.mean()), "ci95": list(bootstrap_ci(means))}


@main_guard
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", required=True, metavar="NAME=CONFIG", help="methods to train")
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME:key=value", help="override for one method"
    )
    parser.add_argument("--demos", help="demo folder whose best demonstrator is evaluated beside the agents")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes per policy (default 100)")
    parser.add_argument("--out", default="bench/results/agents", help="output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every method")
    args = parser.parse_args(argv)
    out = Path(args.out)
    methods = parse_pairs(args.methods, "=", "--methods")
    options = parse_pairs(args.option, ":", "--option")
    unknown = {name for name, _ in options} - {name for name, _ in methods}
    if unknown:
        raise UserError(f"--option: no method named {', '.join(sorted(unknown))}")

    summary: dict = {
        "command": " ".join(["python bench/agent_learning.py", *(sys.argv[1:] if argv is None else argv)]),
        "episodes": args.episodes,
        "seeds": args.seeds,
        "methods": {},
    }
    env_config = None
    for name, preset in methods:
        runs = []
        for seed in args.seeds:
            run_dir = out / f"{name}-seed{seed}"
            overrides = [
                *args.overrides,
                *(value for method, value in options if method == name),
                f"train.seed={seed}",
                f"run.dir={run_dir}",
                "train.resume=true",
            ]
            config = load_config(Config, preset, overrides)
            env_config = config.env
            print(f"{name}, seed {seed}: training {run_dir}", file=sys.stderr)
            train(config)
            result, _ = evaluate_checkpoint(run_dir, "test", args.episodes, seed)
            runs.append(result | {"seed": seed, "run": str(run_dir), "train_seconds": train_seconds(run_dir)})
            print(f"{name}, seed {seed}: held-out return {result['mean_return']:.2f}", file=sys.stderr)
        summary["methods"][name] = {"config": preset, **aggregate(runs)}

    baselines = {}
    random_runs = []
    for seed in args.seeds:
        result, episodes = evaluate_agent(RandomAgent(seed), env_config, "test", args.episodes, seed)
        write_evaluation(result, episodes, out / f"random-seed{seed}.json")
        random_runs.append(result | {"seed": seed})
    baselines["random"] = {"config": "uniform random actions", **aggregate(random_runs)}
    if args.demos:
        checkpoint, train_mean, count = best_demonstrator(Path(args.demos))
        demo_runs = []
        for seed in args.seeds:
            result, _ = evaluate_checkpoint(
                checkpoint, "test", args.episodes, seed, out=out / f"best-demo-seed{seed}.json"
            )
            demo_runs.append(
                result | {"seed": seed, "demo_train_mean_return": train_mean, "demo_train_episodes": count}
            )
        baselines["best demonstrator"] = {"config": f"{checkpoint} of {args.demos}", **aggregate(demo_runs)}
    summary["methods"] = baselines | summary["methods"]
    lines = main_table(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
