"""Evaluate a saved agent on held-out (or training) levels.

    python test_policy.py runs/ppo-starpilot-nature-seed0 --split test --episodes 100
    python test_policy.py runs/ppo-coinrun+starpilot-nature-seed0 --split held-out --games coinrun starpilot

PATH is a checkpoint file or a run folder (its checkpoints/latest.pt, whose embedded config
gives the game(s) and level splits). Prints mean and std of return, a 95% bootstrap CI, the
min-max normalised score and the mean length; writes a JSON summary (with the exact level
seeds played) and a CSV of per-episode rows (level_seed, return, length, game) beside it.
--epsilon plays the agent as a rung of a noise ladder (that share of its actions uniformly random).
A multi-game agent plays --episodes episodes of each of its games (or of those --games names)
and prints one row per game and the mean normalised score over the games with its 95% CI.
--split held-out evaluates every held-out split of the run's config, one JSON + CSV each.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from procgen_common.cli import OneLineParser, main_guard
from procgen_common.evaluation import HELD_OUT, evaluate_checkpoint, splits_of_checkpoint
from procgen_common.runs import make_folder, pick_device


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python test_policy.py",
        description="Evaluate a saved agent on a level split and write JSON + per-episode CSV results. A multi-game "
        "agent plays each of its games and prints a row per game and the mean normalised score with its 95% CI.",
    )
    parser.add_argument("path", metavar="PATH", help="checkpoint file (.pt) or run folder (uses checkpoints/latest.pt)")
    parser.add_argument(
        "--split",
        metavar="SPLIT",
        default="test",
        help="levels to play: train = the training levels, test = the held-out range from the run's config "
        "(default), test@SEED = one of the further held-out splits the config names (env.test_splits, e.g. "
        f"test@1200), {HELD_OUT} = every held-out split of the config in turn (one JSON + CSV each), all = "
        "Procgen's full distribution",
    )
    parser.add_argument(
        "--games",
        nargs="+",
        metavar="GAME",
        help="a multi-game agent: play only these of its games (default: every game it learned)",
    )
    parser.add_argument("--episodes", type=int, default=100, help="episodes to play, of each game (default 100)")
    parser.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampling")
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        help="replace this share of the agent's actions by uniform random ones, as a rung of a D-REX noise ladder "
        "plays (trex.generate_demos epsilon=...), in [0, 1] (default 0: the agent as it is)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for Procgen's level order (default 0)")
    parser.add_argument("--num-envs", type=int, default=64, help="environments run in parallel (default 64)")
    parser.add_argument(
        "--out",
        metavar="FILE.json",
        help="where to write the JSON summary (default: <run folder>/eval/<checkpoint>-<split>.json, with the "
        f"games after the split where --games is given); the per-episode CSV goes beside it with the same name; "
        f"with --split {HELD_OUT} each split's files are named FILE-<split>.json and .csv",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args(argv)
    for name, value in (("--episodes", args.episodes), ("--num-envs", args.num_envs)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if not 0.0 <= args.epsilon <= 1.0:  # NaN fails the test too
        parser.error(f"--epsilon must be a probability in [0, 1], got {args.epsilon}")
    if args.out is not None and not args.out.endswith(".json"):
        parser.error(f"--out must name a .json file, got {args.out}")
    if args.out is not None and os.path.isdir(args.out):
        parser.error(f"--out: {args.out} is a folder; name a .json file")
    return args


def print_summary(summary: dict, out: Path) -> None:
    """One split's results: return, normalised score and length, or for several games one row each and the mean
    normalised score over them with its 95% CI."""
    start, count = summary["level_range"]["start_level"], summary["level_range"]["num_levels"]
    games = summary.get("games")
    episodes = (
        f"{summary['episodes'] // len(games)} episodes of each game" if games else f"{summary['episodes']} episodes"
    )
    print(
        f"{summary['game']} ({summary['distribution_mode']}), split {summary['split']}, levels "
        f"[{start}, {start + count if count else 'any'}), {episodes}, step {summary['step']}"
        + (f", epsilon {summary['epsilon']:g}" if summary.get("epsilon") else "")
    )
    if games:
        width = max(len("game"), *map(len, games))
        print(f"  {'game':<{width}}  {'return mean [95% CI]':<26} {'normalised':>10}  {'length':>7}")
        for game in games:
            row = summary["per_game"][game]
            low, high = row["ci95_return"]
            score = "-" if row["normalized_score"] is None else f"{row['normalized_score']:.3f}"
            ret = f"{row['mean_return']:.2f} [{low:.2f}, {high:.2f}]"
            print(f"  {game:<{width}}  {ret:<26} {score:>10}  {row['mean_length']:>7.1f}")
        if summary["normalized_score"] is not None:
            low, high = summary["ci95_normalized_score"]
            print(f"  mean normalised score {summary['normalized_score']:.3f} (95% CI {low:.3f} to {high:.3f})")
    else:
        low, high = summary["ci95_return"]
        score = summary["normalized_score"]
        print(
            f"  return      {summary['mean_return']:.2f} +- {summary['std_return']:.2f} "
            f"(95% CI {low:.2f} to {high:.2f})"
        )
        if score is not None:
            print(f"  normalised  {score:.3f}")
        print(f"  length      {summary['mean_length']:.1f}")
    print(f"  wrote {out} and {out.with_suffix('.csv')}")


@main_guard
def main(argv=None) -> dict | list[dict]:
    """Evaluate and print; returns the summary (with --split held-out: the list of every split's summary)."""
    args = parse_args(argv)
    pick_device(args.device, "--device")  # a bad or absent device is one line before any work
    if args.out is not None:
        make_folder(Path(args.out).parent, "--out")  # and so is an output path that cannot be written
    splits = splits_of_checkpoint(args.path, args.split)  # a split the run does not have: one line, before any work
    summaries = []
    for split in splits:
        out = args.out
        if out is not None and args.split == HELD_OUT:
            out = str(Path(out).with_name(f"{Path(out).stem}-{split}.json"))
        summary, written = evaluate_checkpoint(
            args.path,
            split,
            args.episodes,
            args.seed,
            args.deterministic,
            args.num_envs,
            args.device,
            out,
            games=args.games,
            epsilon=args.epsilon,
        )
        print_summary(summary, written)
        summaries.append(summary)
    return summaries[0] if args.split != HELD_OUT else summaries


if __name__ == "__main__":
    main()
