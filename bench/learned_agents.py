"""Agents trained on learned T-REX rewards, against the zoo series their demonstrations came from.

    python bench/learned_agents.py --runs RUN [RUN ...] --best zoo:<series>/step_<step> [...] [--best-epsilon E]
        [--step STEP] --out DIR

Each ``RUN`` is a run folder of ``policies.train`` (or what ``bench/learned_agents_gpu.sh`` sent back: its series
checkpoints ``step_*.pt`` and ``progress.csv`` in one folder). Its newest checkpoint (or the one at series step
``--step``, to compare runs that went on for different budgets at one step) plays ``--episodes`` held-out episodes
(levels after the training range, evaluation seed 0: the episodes the zoo's own table was measured on), and is set
beside three references of its game: a random policy (the series' step 0) and PPO on the true reward at the nearest
series step at or after the agent's (the zoo series itself), both from the zoo's ``evaluation.json``, and the best
demonstrator the reward learned from (``--best``, one per game; with ``--best-epsilon``, the noise ladder's rung it
was: that checkpoint played with that share of random actions), played here on the same episodes as the agents. Each
learned-reward agent gets a verdict against it by the 95% bootstrap CI of the difference of their mean returns
(beats, within noise, falls short: ``procgen_common.stats.verdict``), and so do all its seeds' episodes pooled. It
also draws, per run, the learned and the true return of its training episodes over training (the reward-hacking
view). Evaluations are cached beside each checkpoint (``eval/``), so rerunning only redraws. Runs on the length
reward (``reward.source=length``, the control of an agent that only learns to survive) or on the true reward
(``reward.source=env``, the same command's reference) are listed beside under their own names (``<run>-length``,
``<run>-env``) and means, and kept out of the goals; a true-reward run logs no learned return, so it has no
reward-hacking figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from baseline_agent import zoo
from experiments.plot import plot_reward_hacking
from procgen_common.checkpoint import atomic_write_text, load_checkpoint
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.evaluation import default_eval_path, evaluate_checkpoint, read_episode_returns
from procgen_common.stats import verdict


def run_checkpoint(run: Path, step: int | None = None) -> Path:
    """The run's newest series checkpoint, or the one at series step ``step``."""
    folder = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    files = sorted(folder.glob("step_*.pt"))
    if not files:
        raise UserError(f"--runs: {run} holds no step_*.pt checkpoint")
    if step is None:
        return files[-1]
    at_step = [f for f in files if int(f.stem.removeprefix("step_")) == step]
    if not at_step:
        steps = ", ".join(str(int(f.stem.removeprefix("step_"))) for f in files)
        raise UserError(f"--step: {run} has no checkpoint at step {step}; it has {steps}")
    return at_step[0]


def run_names(runs: list[Path], rewards: list[str]) -> list[str]:
    """A name per run: its folder's name (with ``-<reward>`` for a length- or true-reward run), joined with as many
    parent folders as it takes to tell the runs apart (a sweep's pipeline cells all call their agent
    ``agent-learned``: ``seed0-agent-learned``, ``seed1-agent-learned``)."""
    resolved = [run.resolve() for run in runs]
    if len(set(resolved)) < len(resolved):
        raise UserError("--runs: a run folder is given twice; give each once")
    for depth in range(1, max(len(run.parts) for run in resolved) + 1):
        names = [
            "-".join(run.parts[-depth:]) + ("" if reward == "learned" else f"-{reward}")
            for run, reward in zip(resolved, rewards, strict=True)
        ]
        if len(set(names)) == len(names):
            return names
    raise AssertionError("distinct folders always have distinct paths")


def held_out(checkpoint: Path, episodes: int) -> dict:
    """The checkpoint's held-out summary, from its cached evaluation when that played the same episodes."""
    cached = default_eval_path(checkpoint, "test")
    if cached.is_file():
        summary = json.loads(cached.read_text())
        if summary.get("episodes") == episodes and summary.get("seed") == 0:
            return summary
    return evaluate_checkpoint(checkpoint, "test", episodes=episodes, seed=0)[0]


def zoo_references(best: str, step: int, epsilon: float, episodes: int, out: Path) -> tuple[dict, np.ndarray]:
    """Random (step 0), the best demonstrator ``best`` and true-reward PPO at the first series step >= ``step``, and
    the best demonstrator's per-episode returns.

    The best demonstrator (played with ``epsilon`` random actions where > 0: a noise-ladder rung) is evaluated here on
    the agents' episodes (``episodes``, seed 0), written to ``out``; the others come from the zoo's table.
    """
    path = zoo.resolve(best)
    rows = json.loads((path.parent / "evaluation.json").read_text())["checkpoints"]
    later = [row for row in rows if row["step"] >= step] or rows[-1:]
    file = out / f"best-{path.parent.name}-{path.stem}-eps{epsilon:g}.json"
    demo, file = evaluate_checkpoint(path, "test", episodes=episodes, seed=0, out=file, epsilon=epsilon)
    name = f"best demonstrator ({best}, epsilon {epsilon:g})" if epsilon > 0 else f"best demonstrator ({best})"
    pick = {"random policy (step 0)": rows[0], name: demo}
    pick[f"PPO on the true reward ({path.parent.name}, step {later[0]['step']:,})"] = later[0]
    references = {
        name: {k: row[k] for k in ("step", "mean_return", "ci95_return", "normalized_score")}
        for name, row in pick.items()
    }
    return references, read_episode_returns(file)


def against(returns: np.ndarray, best: np.ndarray) -> dict:
    """The verdict of ``returns`` against the best demonstration's and the 95% CI of the difference of means."""
    word, (low, high) = verdict(returns, best)
    return {"verdict": word, "ci95_difference": [low, high]}


def verdict_cell(result: dict) -> str:
    low, high = result["ci95_difference"]
    return f"{result['verdict']} [{low:+.2f}, {high:+.2f}]"


REWARDS = {"learned": "learned reward", "length": "length reward", "env": "true reward"}


def cell(row: dict) -> str:
    low, high = row["ci95_return"]
    return f"{row['mean_return']:.2f} [{low:.2f}, {high:.2f}]"


def fractions_of_true_reward_ppo(mean: float, random: float, true: float) -> dict:
    """The agents' mean return as a fraction of true-reward PPO's (the goal's measure, only where PPO's is positive:
    a ratio of negative returns, such as fruitbot's early ones, says nothing) and as a fraction of PPO's gain over
    the random policy (where PPO has one), which every game's returns support."""
    return {
        "fraction_of_true_reward_ppo": mean / true if true > 0 else None,
        "fraction_of_true_reward_ppo_gain": (mean - random) / (true - random) if true > random else None,
    }


@main_guard
def main(argv: list[str] | None = None) -> dict:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        type=Path,
        help="run folders of learned-reward agents (and of length- or true-reward ones to set beside them)",
    )
    parser.add_argument(
        "--best", nargs="+", required=True, help="the best demonstrator of each game's ladder: zoo:<series>/step_<step>"
    )
    parser.add_argument(
        "--best-epsilon",
        type=float,
        default=0.0,
        help="the best demonstration was a noise-ladder rung: --best played with this share of uniform random "
        "actions, in [0, 1], evaluated on the same held-out episodes (default 0: the zoo table's figures)",
    )
    parser.add_argument(
        "--step", type=int, help="evaluate every run's checkpoint at this series step (default: each run's newest)"
    )
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes per agent (default 100)")
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.md, summary.json and figures")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes: {args.episodes}; give at least 1")
    if not 0.0 <= args.best_epsilon <= 1.0:  # NaN fails the test too
        raise UserError(f"--best-epsilon: {args.best_epsilon} is not a probability; give a value in [0, 1]")
    best = {}
    for entry in args.best:
        if not zoo.is_zoo_entry(entry) or zoo.resolve(entry).is_dir():
            raise UserError(f"--best: {entry} is not a zoo checkpoint; name one as zoo:<series>/step_<step>")
        best[zoo.series_game(zoo.resolve(entry).parent.name)] = entry

    games: dict[str, dict] = {}
    returns: dict[tuple[str, str], np.ndarray] = {}  # (name, reward) -> per-episode held-out returns
    checkpoints = [run_checkpoint(run, args.step) for run in args.runs]
    configs = [load_checkpoint(checkpoint)["config"] for checkpoint in checkpoints]
    # Length- and true-reward runs (controls, references) are shown beside, and kept out of the goals.
    rewards = [(config.get("reward") or {}).get("source", "learned") for config in configs]
    names = run_names(args.runs, rewards)
    for run, checkpoint, config, reward, name in zip(args.runs, checkpoints, configs, rewards, names, strict=True):
        game = config["env"]["game"]
        if game not in best:
            raise UserError(f"--best: no best demonstrator of {game} (for {run}); give zoo:<series>/step_<step>")
        summary = held_out(checkpoint, args.episodes)
        entry = games.setdefault(game, {"agents": []})
        returns[name, reward] = read_episode_returns(default_eval_path(checkpoint, "test"))
        entry["agents"].append(
            {"run": name, "reward": reward, **{k: summary[k] for k in ("step", "mean_return", "ci95_return")}}
        )
        args.out.mkdir(parents=True, exist_ok=True)
        plot_reward_hacking(args.out / f"hacking-{name}.png", run, f"{name}: learned vs true return")

    lines = [
        "# Agents on learned rewards against their zoo series",
        "",
        f"`python bench/learned_agents.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"Held-out levels, {args.episodes} episodes each (evaluation seed 0), mean return [95% CI].",
    ]
    for game, entry in games.items():
        agents = entry["agents"]
        step = min(a["step"] for a in agents)
        args.out.mkdir(parents=True, exist_ok=True)
        references, best_returns = zoo_references(best[game], step, args.best_epsilon, args.episodes, args.out)
        entry["references"] = references
        random, demo, true = references.values()
        lines += [
            "",
            f"## {game}",
            "",
            "| policy | step | held-out return [95% CI] | against the best demonstrator [95% CI of the difference] |",
            "|---|---|---|---|",
        ]
        means = entry["mean_of_seeds_by_reward"] = {}
        for reward in sorted({a["reward"] for a in agents}):
            mine = [a for a in agents if a["reward"] == reward]
            means[reward] = float(np.mean([a["mean_return"] for a in mine]))
            for a in mine:
                a["against_best"] = against(returns[a["run"], reward], best_returns)
                lines.append(
                    f"| agent on the {REWARDS[reward]}, {a['run']} | {a['step']:,} | {cell(a)} "
                    f"| {verdict_cell(a['against_best'])} |"
                )
            pooled = np.concatenate([returns[a["run"], reward] for a in mine])
            entry.setdefault("pooled_against_best", {})[reward] = result = against(pooled, best_returns)
            lines.append(
                f"| agent on the {REWARDS[reward]}, mean of {len(mine)} seeds | | {means[reward]:.2f} "
                f"| {verdict_cell(result)} (episodes of all seeds pooled) |"
            )
        lines += [f"| {name} | {row['step']:,} | {cell(row)} | |" for name, row in references.items()]
        entry["mean_of_seeds"] = mean = means.get("learned")
        if mean is not None:
            entry["beats_best_demonstrator"] = mean > demo["ci95_return"][1]
            entry.update(fractions_of_true_reward_ppo(mean, random["mean_return"], true["mean_return"]))
            fraction, gain = entry["fraction_of_true_reward_ppo"], entry["fraction_of_true_reward_ppo_gain"]
            lines += [
                "",
                f"Learned-reward agents above the best demonstrator's CI: "
                f"{'yes' if entry['beats_best_demonstrator'] else 'no'}; fraction of true-reward PPO's mean return: "
                + (f"{fraction:.2f} (goal 0.7)" if fraction is not None else "none (its mean return is not positive)")
                + "; of its gain over the random policy: "
                + (f"{gain:.2f}." if gain is not None else "none (it does not beat the random policy)."),
            ]
    atomic_write_text(args.out / "summary.json", json.dumps(games, indent=2) + "\n")
    atomic_write_text(args.out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return games


if __name__ == "__main__":
    main()
