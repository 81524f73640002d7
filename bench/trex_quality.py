"""T-REX quality: does the learned reward rank held-out episodes better than episode length? (issue 3)

    python bench/trex_quality.py --runs starpilot=runs/ppo-starpilot-nature-seed0
        fruitbot=runs/ppo-fruitbot-nature-seed0
        [--num-demos 20 50 100] [--seeds 0 1 2] [--train-levels 10] [--test-levels 100] [--test-episodes 1]
        [--start-prior off|on|both] [-c configs/trex-reward-cpu.yaml] [--demo-config configs/trex-cpu.yaml]
        [--demo-option key=value ...] [--out bench/results/trex_quality] [--summary-only] [key=value ...]

For each game, from its demonstrator run (the checkpoint series of a PPO run):

1. Demos (``trex.generate_demos``), played once: every checkpoint on ``--train-levels`` training levels
   with enough episodes per level to give at least max(--num-demos) training demos (``<game>/demos-train``),
   and every checkpoint on ``--test-levels`` held-out levels, ``--test-episodes`` each (``<game>/demos-test``).
2. Reward models (``trex.train_reward``), one per start prior, number of demos and seed
   (``<game>/prior-<off|on>/n<N>-seed<S>``): ``data.num_demos=N`` drawn from the training demos (validation
   included), ``train.seed=S``, and the ``key=value`` overrides. Its end-of-training evaluation scores the
   best model on the held-out demos beside two baselines, the episode length and an untrained network of
   the same shape (``eval/metrics.json``).

Every stage whose outputs exist is skipped (an interrupted reward run resumes from its latest epoch), so
rerunning the command continues. Then ``<out>/summary.json`` and ``<out>/summary.md`` give, per game, prior
and number of demos, the mean and std over seeds of held-out Spearman and Pearson correlation with the
true return and pair accuracy, for the learned reward and both baselines, and whether the learned reward
beats episode length (on mean Spearman; also counted seed by seed).

The same grid as pipeline cells on Ray: ``python -m experiments.sweep -c configs/sweep-trex-quality.yaml`` (the
zoo's series as demonstrators, each cell playing its own demos and going on to train and evaluate an agent; its
spearman_vs_demos.png draws the result per game). This script stays for its own protocol: one demo set per game shared
by every reward model, reward models only, Pearson beside Spearman; the pipeline cannot yet stop after its reward
stage, which is what a reward-only sweep cell needs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import UserError, main_guard
from procgen_common.config import load_config
from procgen_common.env import GAMES
from procgen_common.stats import mean_std
from trex.demos import DemoSet, read_index
from trex.generate_demos import Config as DemoConfig
from trex.generate_demos import checkpoint_files, generate, summary_lines
from trex.train_reward import Config as RewardConfig
from trex.train_reward import train

PREDICTORS = ("learned", "episode_length", "untrained_net")
STATS = ("spearman", "pearson", "pair_accuracy")


def parse_runs(entries: list[str]) -> dict[str, str]:
    """``['starpilot=runs/x', ...]`` -> ``{'starpilot': 'runs/x'}``."""
    runs = {}
    for entry in entries:
        game, sep, folder = entry.partition("=")
        if not sep or not game or not folder:
            raise UserError(f"--runs: {entry!r} must look like GAME=RUN_FOLDER, e.g. starpilot=runs/ppo-starpilot")
        if game not in GAMES:
            raise UserError(
                f"--runs: {game!r} is not a Procgen game; put key=value overrides before --runs or after another option"
            )
        runs[game] = folder
    return runs


def generate_demos(args: argparse.Namespace, game: str, run: str, split: str, episodes: int) -> Path:
    """Play (or complete) one demo folder of ``game``: every checkpoint of ``run`` on one split's levels."""
    out = Path(args.out) / game / f"demos-{split}"
    levels = args.train_levels if split == "train" else args.test_levels
    other = "test" if split == "train" else "train"
    overrides = [
        *args.demo_option,
        f"checkpoints={run}",
        f"game={game}",
        f"num_{split}_levels={levels}",
        f"{other}_levels=[]",
        f"episodes_per_level={episodes}",
        f"out_dir={out}",
    ]
    return generate(load_config(DemoConfig, args.demo_config, overrides))


def train_reward(args: argparse.Namespace, game: str, prior: str, num_demos: int, seed: int) -> Path:
    """Train and evaluate one reward model, unless its evaluation exists; resumes an interrupted run."""
    run_dir = Path(args.out) / game / f"prior-{prior}" / f"n{num_demos}-seed{seed}"
    if (run_dir / "eval" / "metrics.json").is_file():
        return run_dir
    demos = Path(args.out) / game
    overrides = [
        *args.overrides,
        f"data.demos={demos / 'demos-train'}",
        f"data.test_demos={demos / 'demos-test'}",
        f"data.num_demos={num_demos}",
        f"data.start_prior={prior == 'on'}",
        f"train.seed={seed}",
        f"train.resume={run_dir.exists()}",
        "eval.at_end=true",
        f"run.dir={run_dir}",
    ]
    print(f"reward model: {game}, start prior {prior}, {num_demos} demos, seed {seed}", file=sys.stderr)
    return train(load_config(RewardConfig, args.config, overrides))


def run_record(run_dir: Path) -> dict:
    """The held-out scores and training figures of one finished reward run."""
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    with (run_dir / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {
        "run": str(run_dir),
        **{name: metrics[name] for name in PREDICTORS},
        "held_out_demos": metrics["num_demos"],
        "held_out_levels": metrics["num_levels"],
        "epochs": len(rows),
        "best_val_accuracy": float(rows[-1]["val/best_accuracy"]),
        "train_seconds": float(rows[-1]["time/elapsed_s"]),
        "frames_per_s": float(np.mean([float(r["time/frames_per_s"]) for r in rows])),
    }


def aggregate(records: list[dict]) -> dict:
    """Seeds of one (game, prior, num_demos) cell: mean and std of every predictor's scores, and the verdict."""
    cell = {name: {stat: mean_std([r[name][stat] for r in records]) for stat in STATS} for name in PREDICTORS}
    learned, length = cell["learned"]["spearman"]["mean"], cell["episode_length"]["spearman"]["mean"]
    wins = [
        r["learned"]["spearman"] is not None
        and (r["episode_length"]["spearman"] is None or r["learned"]["spearman"] > r["episode_length"]["spearman"])
        for r in records
    ]
    cell["beats_length"] = learned is not None and (length is None or learned > length)
    cell["seeds_beating_length"] = int(sum(wins))
    cell["seeds"] = len(records)
    cell["mean_epochs"] = float(np.mean([r["epochs"] for r in records]))
    cell["mean_train_minutes"] = float(np.mean([r["train_seconds"] for r in records])) / 60
    return cell


def demo_stats(folder: Path) -> dict:
    """Size and return range of one demo folder."""
    infos = read_index(folder)
    returns = np.array([i.episode_return for i in infos])
    lengths = np.array([i.length for i in infos])
    return {
        "demos": len(infos),
        "levels": len({i.level_seed for i in infos}),
        "checkpoints": len({i.checkpoint for i in infos}),
        "frames": int(lengths.sum()),
        "return_mean": float(returns.mean()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "length_mean": float(lengths.mean()),
    }


def fmt(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(summary: dict) -> list[str]:
    lines = [
        "| game | start prior | demos | learned ρ | learned r | length ρ | length r | untrained ρ | untrained r "
        "| learned pair acc | length pair acc | beats length (seeds) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for game, per_game in summary["games"].items():
        for prior, per_prior in per_game["cells"].items():
            for num_demos, c in per_prior.items():
                scores = [fmt(c[name][stat]) for name in PREDICTORS for stat in ("spearman", "pearson")]
                scores += [fmt(c["learned"]["pair_accuracy"]), fmt(c["episode_length"]["pair_accuracy"])]
                verdict = f"{'yes' if c['beats_length'] else 'no'} ({c['seeds_beating_length']}/{c['seeds']})"
                lines.append("| " + " | ".join([game, prior, str(num_demos), *scores, verdict]) + " |")
    lines.append("")
    lines.append(
        "ρ: Spearman, r: Pearson correlation with the true return on held-out-level demos; mean ± std over seeds."
    )
    for game, per_game in summary["games"].items():
        train, test = per_game["train_demos"], per_game["test_demos"]
        lines += [
            "",
            f"{game}: demonstrator {per_game['run']}; {train['demos']} training demos on {train['levels']} levels, "
            f"{test['demos']} held-out demos on {test['levels']} levels (true return {test['return_min']:g} to "
            f"{test['return_max']:g}, mean length {test['length_mean']:.0f}). Mean return per checkpoint:",
            "",
            "```",
            *per_game["ladder"],
            "```",
        ]
    return lines


def summarize(args: argparse.Namespace, runs: dict[str, str], priors: list[str]) -> dict:
    """Collect every finished reward run into the summary (missing seeds of a cell are counted; cells with no
    finished run are left out)."""
    summary: dict = {
        "command": " ".join(["python bench/trex_quality.py", *args.argv]),
        "num_demos": args.num_demos,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "games": {},
    }
    missing = 0
    for game, run in runs.items():
        base = Path(args.out) / game
        if not (base / "demos-test" / "index.csv").is_file():
            continue
        per_game = {
            "run": run,
            "train_demos": demo_stats(base / "demos-train"),
            "test_demos": demo_stats(base / "demos-test"),
            "ladder": summary_lines(read_index(base / "demos-train") + read_index(base / "demos-test")),
            "cells": {},
            "runs": [],
        }
        for prior in priors:
            for num_demos in args.num_demos:
                records = []
                for seed in args.seeds:
                    run_dir = base / f"prior-{prior}" / f"n{num_demos}-seed{seed}"
                    if (run_dir / "eval" / "metrics.json").is_file():
                        records.append({"prior": prior, "num_demos": num_demos, "seed": seed, **run_record(run_dir)})
                # A cell with no finished run was not asked for (e.g. the prior measured at one size only).
                missing += len(args.seeds) - len(records) if records else 0
                if records:
                    per_game["cells"].setdefault(prior, {})[num_demos] = aggregate(records)
                    per_game["runs"] += records
        summary["games"][game] = per_game
    summary["missing_runs"] = missing
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        metavar="GAME=RUN",
        help="demonstrator run folder per game (its checkpoints)",
    )
    parser.add_argument(
        "--num-demos",
        type=int,
        nargs="+",
        default=[20, 50, 100],
        help="training demos per reward model (default 20 50 100)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="reward model seeds (default 0 1 2)")
    parser.add_argument(
        "--train-levels", type=int, default=10, help="training level seeds demos come from (default 10)"
    )
    parser.add_argument(
        "--test-levels", type=int, default=100, help="held-out level seeds for evaluation (default 100)"
    )
    parser.add_argument(
        "--test-episodes", type=int, default=1, help="episodes per held-out level and checkpoint (default 1)"
    )
    parser.add_argument(
        "--start-prior",
        choices=["off", "on", "both"],
        default="off",
        help="the 'better snippet starts no earlier' prior (data.start_prior): off, on, or both to measure it",
    )
    parser.add_argument(
        "-c",
        "--config",
        default="configs/trex-reward-cpu.yaml",
        help="reward trainer preset (default configs/trex-reward-cpu.yaml)",
    )
    parser.add_argument(
        "--demo-config", default="configs/trex-cpu.yaml", help="demo generation preset (default configs/trex-cpu.yaml)"
    )
    parser.add_argument(
        "--demo-option",
        action="append",
        default=[],
        metavar="key=value",
        help="demo generation override, e.g. --demo-option epsilon=0.05 (repeatable)",
    )
    parser.add_argument(
        "--out", default="bench/results/trex_quality", help="output folder (default bench/results/trex_quality)"
    )
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the finished runs")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="reward trainer config overrides for every run"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if min(args.num_demos) < 2 or args.train_levels < 1 or args.test_levels < 1 or args.test_episodes < 1:
        parser.error("--num-demos must be >= 2, and --train-levels, --test-levels and --test-episodes >= 1")
    return args


@main_guard
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    runs = parse_runs(args.runs)
    priors = ["off", "on"] if args.start_prior == "both" else [args.start_prior]
    if not args.summary_only:
        for game, run in runs.items():
            # Enough episodes per level and checkpoint that the largest --num-demos can be drawn.
            checkpoints = len(checkpoint_files([run]))
            episodes = math.ceil(max(args.num_demos) / (checkpoints * args.train_levels))
            generate_demos(args, game, run, "train", episodes)
            generate_demos(args, game, run, "test", args.test_episodes)
            DemoSet.open(Path(args.out) / game / "demos-test")  # a folder with no held-out demos stops here
        for game in runs:
            for prior in priors:
                for num_demos in args.num_demos:
                    for seed in args.seeds:
                        train_reward(args, game, prior, num_demos, seed)

    summary = summarize(args, runs, priors)
    out = Path(args.out)
    lines = markdown(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if summary["missing_runs"]:
        print(f"{summary['missing_runs']} reward runs have no evaluation yet", file=sys.stderr)
    print(f"wrote {out / 'summary.json'}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
