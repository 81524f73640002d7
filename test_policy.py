"""Evaluate a saved agent on held-out (or training) levels.

    python test_policy.py runs/ppo-starpilot-nature-seed0 --split test --episodes 100

PATH is a checkpoint file or a run folder (its checkpoints/latest.pt, whose embedded config
gives the game and level splits). Prints mean and std of return, a 95% bootstrap CI, the
min-max normalised score and the mean length; writes a JSON summary (with the exact level
seeds played) and a CSV of per-episode rows (level_seed, return, length) beside it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from procgen_common.cli import OneLineParser, main_guard
from procgen_common.evaluation import evaluate_checkpoint
from procgen_common.runs import make_folder, pick_device


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python test_policy.py",
        description="Evaluate a saved agent on a level split and write JSON + per-episode CSV results.",
    )
    parser.add_argument("path", metavar="PATH", help="checkpoint file (.pt) or run folder (uses checkpoints/latest.pt)")
    parser.add_argument(
        "--split",
        choices=["train", "test", "all"],
        default="test",
        help="levels to play: train = the training levels, test = the held-out range from the run's config "
        "(default), all = Procgen's full distribution",
    )
    parser.add_argument("--episodes", type=int, default=100, help="episodes to play (default 100)")
    parser.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampling")
    parser.add_argument("--seed", type=int, default=0, help="seed for Procgen's level order (default 0)")
    parser.add_argument("--num-envs", type=int, default=64, help="environments run in parallel (default 64)")
    parser.add_argument(
        "--out",
        metavar="FILE.json",
        help="where to write the JSON summary (default: <run folder>/eval/<checkpoint>-<split>.json); "
        "the per-episode CSV goes beside it with the same name",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if args.num_envs < 1:
        parser.error(f"--num-envs must be >= 1, got {args.num_envs}")
    if args.out is not None and not args.out.endswith(".json"):
        parser.error(f"--out must name a .json file, got {args.out}")
    if args.out is not None and os.path.isdir(args.out):
        parser.error(f"--out: {args.out} is a folder; name a .json file")
    return args


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    pick_device(args.device, "--device")  # a bad or absent device is one line before any work
    if args.out is not None:
        make_folder(Path(args.out).parent, "--out")  # and so is an output path that cannot be written
    summary, out = evaluate_checkpoint(
        args.path, args.split, args.episodes, args.seed, args.deterministic, args.num_envs, args.device, args.out
    )
    start, count = summary["level_range"]["start_level"], summary["level_range"]["num_levels"]
    low, high = summary["ci95_return"]
    score = summary["normalized_score"]
    print(
        f"{summary['game']} ({summary['distribution_mode']}), split {args.split}, levels "
        f"[{start}, {start + count if count else 'any'}), {summary['episodes']} episodes, step {summary['step']}"
    )
    print(f"  return      {summary['mean_return']:.2f} +- {summary['std_return']:.2f} (95% CI {low:.2f} to {high:.2f})")
    if score is not None:
        print(f"  normalised  {score:.3f}")
    print(f"  length      {summary['mean_length']:.1f}")
    print(f"  wrote {out} and {out.with_suffix('.csv')}")
    return summary


if __name__ == "__main__":
    main()
