"""One PPO agent over several games against one agent per game: speed and held-out return, side by side.

    python bench/multigame.py speed [--games coinrun starpilot fruitbot] [--updates 3] [--repeats 2]
    python bench/multigame.py learn [--games coinrun starpilot fruitbot] [--steps 3000000] [--episodes 100]

``speed`` times this suite's PPO (Nature CNN, fp32, no evaluation) on the games together (``env.games``) and on each
game alone at the same ``env.num_envs``, interleaved so both see the same machine load; it reports each run's
steps/s after the first (warm-up) update and the ratio of the multi-game mean to the single-game mean.

``learn`` trains one PPO on all the games for ``--steps`` steps and one PPO per game for ``--steps / len(games)``
steps each (the same total), then evaluates every agent on each game's held-out levels (``--episodes`` per game and
split, on the splits ``test`` and ``--test-splits``), and reports the per-game return with its 95% CI and the mean
min-max normalised score. Runs resume where they stopped (``train.resume=true``); finished ones are not retrained.
Machines are shared and noisy, so compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from baseline_agent.train import Config, train
from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import main_guard
from procgen_common.config import load_config
from procgen_common.env import normalized_score
from procgen_common.evaluation import evaluate_checkpoint
from procgen_common.stats import stratified_bootstrap_ci

NUM_STEPS = 256
CPU_PRESET = Path(__file__).resolve().parent.parent / "configs" / "cpu.yaml"


def ppo_config(games: list[str], num_envs: int, total_steps: int, run_dir: Path, extra: list[str]) -> Config:
    """The CPU preset's PPO (Nature CNN, fp32) on ``games`` (one game: ``env.game``)."""
    env = [f"env.game={games[0]}"] if len(games) == 1 else [f"env.games=[{','.join(games)}]"]
    overrides = [
        *env,
        f"env.num_envs={num_envs}",
        f"train.total_steps={total_steps}",
        "train.precision=fp32",
        "train.resume=true",
        "log.tensorboard=false",
        f"run.dir={run_dir}",
        *extra,
    ]
    return load_config(Config, CPU_PRESET, overrides)


def steady_sps(run_dir: Path) -> float:
    """Steps/s over every update after the first."""
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["time/elapsed_s"]) - float(first["time/elapsed_s"]))


def speed(args: argparse.Namespace) -> dict:
    batch = args.num_envs * NUM_STEPS
    extra = ["eval.every_steps=0", "train.num_checkpoints=1", "train.resume=false"]
    single, multi = [], []
    workdir = Path(tempfile.mkdtemp(prefix="multigame-speed-"))
    for repeat in range(args.repeats):
        for games, out in [*(([g], single) for g in args.games), (args.games, multi)]:
            run_dir = workdir / f"{'+'.join(games)}-{repeat}"
            train(ppo_config(games, args.num_envs, batch * (args.updates + 1), run_dir, extra))
            out.append(steady_sps(run_dir))
            print(f"{'+'.join(games)}: {out[-1]:,.0f} steps/s", file=sys.stderr)
    return {
        "single_game_sps": single,
        "multi_game_sps": multi,
        "ratio_multi_to_single": float(np.mean(multi) / np.mean(single)),
    }


def learn(args: argparse.Namespace) -> dict:
    games = args.games
    extra = [
        f"env.test_splits=[{','.join(map(str, args.test_splits))}]",
        f"env.test_num_levels={args.test_num_levels}",
        "train.num_checkpoints=2",  # the initial and the final policy: only the final one is evaluated
    ]
    runs = {"multi": (games, args.steps)} | {g: ([g], args.steps // len(games)) for g in games}
    results = {}
    for name, (run_games, steps) in runs.items():
        run_dir = args.out / "learn" / name
        train(ppo_config(run_games, args.num_envs, steps, run_dir, extra))
        config = load_config(Config, run_dir / "config.yaml", [])
        per_split = {}
        for split in config.env.held_out_splits:
            out = run_dir / "eval" / f"final-{split}.json"
            if out.is_file() and out.stat().st_mtime >= (run_dir / "checkpoints" / "latest.pt").stat().st_mtime:
                summary = json.loads(out.read_text())  # evaluated since the run last changed
            else:
                summary, _ = evaluate_checkpoint(run_dir, split, args.episodes, out=out)
            per_game = summary.get("per_game") or {run_games[0]: summary}
            per_split[split] = {g: per_game[g] for g in run_games}
        results[name] = {"steps": steps, "splits": per_split}
    return results


def normalised_table(results: dict, games: list[str], episodes_csv) -> list[str]:
    """Markdown rows: per split, the multi-game agent and the single-game agents per game, and the mean normalised
    score over games with its stratified-bootstrap CI (over the episodes of each game)."""
    lines = []
    for split in results["multi"]["splits"]:
        lines += [
            f"\n**{split}**\n",
            f"| agent | {' | '.join(games)} | mean normalised score |",
            "|---" * (len(games) + 2) + "|",
        ]
        for agent in ("multi", "single"):
            cells, strata = [], []
            for g in games:
                s = results["multi" if agent == "multi" else g]["splits"][split][g]
                low, high = s["ci95_return"]
                cells.append(f"{s['mean_return']:.2f} [{low:.2f}, {high:.2f}]")
                strata.append(episodes_csv(agent, g, split))
            low, high = stratified_bootstrap_ci(strata)
            label = f"one agent, {len(games)} games" if agent == "multi" else "one agent per game"
            lines.append(f"| {label} | {' | '.join(cells)} | {np.mean([np.mean(s) for s in strata]):.3f} "
                         f"[{low:.3f}, {high:.3f}] |")  # fmt: skip
    return lines


@main_guard
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", choices=["speed", "learn"], help="speed: steps/s side by side; learn: held-out return")
    parser.add_argument("--games", nargs="+", default=["coinrun", "starpilot", "fruitbot"], help="the games")
    parser.add_argument("--num-envs", type=int, default=48, help="environments in every run (a multiple of the games)")
    parser.add_argument("--updates", type=int, default=3, help="speed: timed PPO updates per run (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="speed: interleaved repeats of every run (default 2)")
    parser.add_argument("--steps", type=int, default=3_000_000, help="learn: the multi-game run's steps (default 3M)")
    parser.add_argument("--episodes", type=int, default=100, help="learn: episodes per game and split (default 100)")
    parser.add_argument("--test-num-levels", type=int, default=200, help="learn: levels per held-out split")
    parser.add_argument(
        "--test-splits", type=int, nargs="*", default=[400, 600], help="learn: more held-out splits' first levels"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/multigame"), help="output folder")
    args = parser.parse_args(argv)
    if args.num_envs % len(args.games):
        parser.error(f"--num-envs: {args.num_envs} is not a multiple of the {len(args.games)} games")
    machine = {"platform": platform.platform(), "processor": platform.processor()}
    if args.mode == "speed":
        result = {"games": args.games, "num_envs": args.num_envs, "updates": args.updates, **speed(args)}
        atomic_write_text(args.out / "speed.json", json.dumps({**result, "machine": machine}, indent=2) + "\n")
        print(f"multi-game / single-game steps/s: {result['ratio_multi_to_single']:.3f}")
        return result
    results = learn(args)

    def episodes_csv(agent: str, game: str, split: str) -> np.ndarray:
        run_dir = args.out / "learn" / ("multi" if agent == "multi" else game)
        with open(run_dir / "eval" / f"final-{split}.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["game"] == game]
        return normalized_score(np.array([float(r["return"]) for r in rows]), game, "easy")

    command = "python bench/multigame.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# One agent over several games against one agent per game",
        "",
        f"`{command}`",
        "",
        f"Held-out return per game, {args.episodes} episodes per game and split, mean [95% bootstrap CI]; the "
        f"multi-game agent trained {args.steps:,} steps over all games, each single-game agent "
        f"{args.steps // len(args.games):,}.",
        *normalised_table(results, args.games, episodes_csv),
    ]
    atomic_write_text(args.out / "learn.json", json.dumps({**results, "machine": machine}, indent=2) + "\n")
    atomic_write_text(args.out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
