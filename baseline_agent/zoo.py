"""The demonstrator zoo: trained PPO checkpoint series committed with the suite, so no machine has to train them.

    python -m baseline_agent.zoo build [--games starpilot fruitbot bigfish] [--episodes 100]   # (re)build it
    python -m baseline_agent.zoo build --variant impala --games fruitbot                      # IMPALA, on a GPU
    python -m baseline_agent.zoo list                                                        # the table

As rl-baselines3-zoo keeps its trained agents, ``zoo/<game>/`` holds the checkpoint series of one PPO run
(``configs/zoo.yaml``): weights and the run's config only (``step_<step>.pt``, loadable with
``torch.load(path, weights_only=True)`` and by every tool of the suite), and ``evaluation.json`` with each
checkpoint's held-out return over ``--episodes`` episodes. ``zoo/README.md`` is the table of all games.

``build`` trains each game's run into ``--runs-dir/<game>`` (resuming an interrupted one, skipping a finished
one), exports every ``--keep-every``-th checkpoint of its series (the final one always), evaluates them on the
held-out levels and rewrites the table. Anywhere a demonstrator is asked for (``trex.generate_demos``'
``checkpoints``, the pipeline's ``demonstrator.zoo``) ``zoo:<game>`` names a game's series and
``zoo:<game>/step_<step>`` one checkpoint of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from procgen_common.agents import load_agent
from procgen_common.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.config import load_config
from procgen_common.env import GAMES
from procgen_common.evaluation import evaluate_agent
from procgen_common.runs import make_folder

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
"""The zoo's folder in the repository."""
ZOO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "zoo.yaml"
"""The PPO settings every zoo run is trained with."""
PREFIX = "zoo:"
# What a zoo checkpoint keeps of a series checkpoint: enough to load and play it, nothing to resume training.
KEPT_KEYS = ("format", "version", "algo", "step", "mean_return", "config", "model")
EVAL_SEED = 0


def is_zoo_entry(entry: str) -> bool:
    return str(entry).startswith(PREFIX)


def series_game(name: str) -> str:
    """The game a series folder plays: ``<game>`` (the Nature-CNN series of configs/zoo.yaml) or
    ``<game>-<variant>`` (the series of configs/zoo-<variant>.yaml, e.g. ``fruitbot-impala``)."""
    return name.partition("-")[0]


def resolve(entry: str, zoo_dir: Path = ZOO_DIR) -> Path:
    """The folder (``zoo:<series>``) or checkpoint file (``zoo:<series>/step_<step>``) a zoo entry names, where a
    series is ``<game>`` or ``<game>-<variant>``."""
    name = str(entry)[len(PREFIX) :]
    game, _, checkpoint = name.partition("/")
    folder = zoo_dir / game
    if series_game(game) not in GAMES or not folder.is_dir():
        have = ", ".join(sorted(p.name for p in zoo_dir.glob("*") if p.is_dir())) or "none"
        raise UserError(f"{entry}: the zoo has no {game!r} series; it holds {have} (python -m baseline_agent.zoo list)")
    if not checkpoint:
        return folder
    path = folder / f"{checkpoint.removesuffix('.pt')}.pt"
    if not path.is_file():
        have = ", ".join(p.stem for p in sorted(folder.glob("step_*.pt")))
        raise UserError(f"{entry}: no such checkpoint in the zoo; {game} has {have}")
    return path


def series(name: str, zoo_dir: Path = ZOO_DIR) -> list[Path]:
    """The checkpoint files of a zoo series (``<game>`` or ``<game>-<variant>``), in step order."""
    return sorted(resolve(f"{PREFIX}{name}", zoo_dir).glob("step_*.pt"))


def export_series(run_dir: Path, out: Path, keep_every: int) -> list[Path]:
    """Copy every ``keep_every``-th checkpoint of a run's series (and its final one) to ``out``, weights only."""
    files = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not files:
        raise UserError(f"{run_dir} holds no checkpoints/step_*.pt series")
    keep = [f for k, f in enumerate(files) if k % keep_every == 0]
    if files[-1] not in keep:
        keep.append(files[-1])
    # Every new checkpoint is read before anything in the zoo changes: a corrupt run leaves the zoo as it was.
    exported = {f.name: {k: v for k, v in load_checkpoint(f).items() if k in KEPT_KEYS} for f in keep}
    make_folder(out, "--zoo-dir")
    for name, checkpoint in exported.items():
        save_checkpoint(out / name, checkpoint)
    for old in out.glob("step_*.pt"):
        if old.name not in exported:
            old.unlink()
    return [out / name for name in exported]


def evaluate_series(files: list[Path], episodes: int, device: str = "cpu") -> list[dict]:
    """Each checkpoint's held-out return over ``episodes`` episodes (the same episodes for all: one seed)."""
    rows = []
    for path in files:
        agent, checkpoint, env_config = load_agent(path, device)
        summary, _ = evaluate_agent(agent, env_config, "test", episodes, seed=EVAL_SEED, desc=f"{path.parent.name} "
                                    f"{path.stem}")  # fmt: skip
        rows.append(
            {
                "checkpoint": path.name,
                "step": checkpoint["step"],
                "train_return_at_save": checkpoint.get("mean_return"),
                **{k: summary[k] for k in ("episodes", "mean_return", "ci95_return", "normalized_score")},
                "mean_length": summary["mean_length"],
                "level_range": summary["level_range"],
                "size_bytes": path.stat().st_size,
            }
        )
    return rows


def table_lines(zoo_dir: Path = ZOO_DIR) -> list[str]:
    """The zoo's table: one row per committed checkpoint, from each game's evaluation.json."""
    lines = [
        "| game | checkpoint | step | held-out return [95% CI] | normalised score | mean length | episodes | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if not zoo_dir.is_dir():
        raise UserError(f"--zoo-dir: {zoo_dir} is not a folder (the repository's zoo/ is {ZOO_DIR})")
    for folder in sorted(p for p in zoo_dir.glob("*") if p.is_dir()):
        record = folder / "evaluation.json"
        if not record.is_file():
            continue
        try:
            rows = json.loads(record.read_text(encoding="utf-8"))["checkpoints"]
        except (ValueError, KeyError, TypeError):  # bad JSON, bad UTF-8 (both ValueErrors) or another shape
            raise UserError(
                f"{record} is not a zoo evaluation record; restore it (git checkout) or rebuild it with "
                "python -m baseline_agent.zoo build --no-train"
            ) from None
        for row in rows:
            low, high = row["ci95_return"]
            lines.append(
                f"| {folder.name} | `{folder.name}/{row['checkpoint']}` | {row['step']:,} | "
                f"{row['mean_return']:.2f} [{low:.2f}, {high:.2f}] | {row['normalized_score']:.3f} | "
                f"{row['mean_length']:.0f} | {row['episodes']} | {row['size_bytes'] / 2**20:.1f} MiB |"
            )
    return lines


README_HEAD = """# The demonstrator zoo

PPO checkpoint series shipped with the suite, so experiments start from demonstrators of known skill instead of
training them (as rl-baselines3-zoo keeps its trained agents). Each folder holds the checkpoint series of one PPO run,
weights and config only: `torch.load(path, weights_only=True)` reads them, and every tool of the suite takes them
(`zoo:<series>` names a series, `zoo:<series>/step_<step>` one checkpoint). A series is named by its game
(`starpilot`: a run of `configs/zoo.yaml`, the Procgen paper's PPO settings with the Nature CNN in fp32, trainable
on 2 CPU cores) or by its game and a variant (`fruitbot-impala`: a run of `configs/zoo-impala.yaml`, the paper's
IMPALA network in bf16, which needs a GPU). All are easy mode on training levels 0-199. `evaluation.json` in each
folder has the figures below and the command that made the series.

Rebuild from scratch (trains every game, resuming where a run stopped; a run that was interrupted and resumed plays a
new level order from there on, so it is not bit-identical to an uninterrupted one):

```bash
# Nature CNN, about 40 minutes a game on 2 CPU cores:
python -m baseline_agent.zoo build --games {games} --episodes {episodes}
# IMPALA, about 8 minutes a game on one H100 (evaluating on CPU takes longer than training on the GPU):
python -m baseline_agent.zoo build --variant impala --games {variant_games} --episodes {episodes}
```

Held-out return: levels 200-1199 (never trained on), {episodes} episodes per checkpoint, sampled actions, the same
episodes (seed {seed}) for every checkpoint, mean and 95% bootstrap CI:

"""


def write_readme(zoo_dir: Path, episodes: int) -> Path:
    names = sorted(p.parent.name for p in zoo_dir.glob("*/evaluation.json"))
    games = [n for n in names if series_game(n) == n] or ["starpilot"]
    variant_games = [series_game(n) for n in names if n.endswith("-impala")] or ["starpilot"]
    text = README_HEAD.format(
        games=" ".join(games), variant_games=" ".join(variant_games), episodes=episodes, seed=EVAL_SEED
    )
    notes = [json.loads(p.read_text()).get("note") for p in sorted(zoo_dir.glob("*/evaluation.json"))]
    notes = [n for n in notes if n]
    text += "\n".join(table_lines(zoo_dir)) + "\n" + ("\n" + "\n\n".join(notes) + "\n" if notes else "")
    atomic_write_text(zoo_dir / "README.md", text)
    return zoo_dir / "README.md"


def variant_config(variant: str | None) -> Path:
    """The preset a series is trained with: configs/zoo.yaml, or configs/zoo-<variant>.yaml."""
    if variant is None:
        return ZOO_CONFIG
    path = ZOO_CONFIG.with_name(f"zoo-{variant}.yaml")
    if not path.is_file():
        have = ", ".join(sorted(p.stem.removeprefix("zoo-") for p in ZOO_CONFIG.parent.glob("zoo-*.yaml"))) or "none"
        raise UserError(f"--variant: no configs/zoo-{variant}.yaml; the variants are {have}")
    return path


def build(
    games: list[str],
    runs_dir: Path,
    zoo_dir: Path,
    episodes: int,
    keep_every: int,
    train: bool,
    steps: int | None,
    variant: str | None = None,
) -> None:
    from baseline_agent.train import Config
    from baseline_agent.train import train as train_ppo

    preset = variant_config(variant)
    base = load_config(Config, preset)
    # Series checkpoints keep the preset's spacing whatever the budget, so a longer run extends a series (a game
    # whose series has not left the start of its learning curve) without moving the checkpoints it already has.
    every = base.train.total_steps // max(1, base.train.num_checkpoints - 1)
    if steps is not None and steps < every:
        raise UserError(f"--steps: {steps} is less than one checkpoint interval ({every:,} steps)")
    budget = [] if steps is None else [f"train.total_steps={steps}", f"train.num_checkpoints={steps // every + 1}"]
    for game in games:
        name = game if variant is None else f"{game}-{variant}"
        run_dir = runs_dir / name
        if train:
            overrides = [f"env.game={game}", f"run.dir={run_dir}", "train.resume=true", *budget]
            train_ppo(load_config(Config, preset, overrides))
        files = export_series(run_dir, zoo_dir / name, keep_every)
        rows = evaluate_series(files, episodes)
        record = {
            "game": game,
            "command": f"python -m baseline_agent.zoo build --games {game} --episodes {episodes}"
            + (f" --variant {variant}" if variant is not None else "")
            + (f" --steps {steps}" if steps is not None else "")
            + (f" --keep-every {keep_every}" if keep_every != 1 else ""),
            "config": preset.read_text(),
            "checkpoints": rows,
        }
        old = zoo_dir / name / "evaluation.json"
        if old.is_file():
            record["note"] = json.loads(old.read_text()).get("note")
        atomic_write_text(old, json.dumps(record, indent=2) + "\n")
        print("\n".join(table_lines(zoo_dir)))
    write_readme(zoo_dir, episodes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m baseline_agent.zoo",
        description="The demonstrator zoo: build (train, export, evaluate) its checkpoint series, or list them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    b = sub.add_parser("build", help="train (resuming), export and evaluate each game's series; rewrite the table")
    b.add_argument("--games", nargs="+", default=["starpilot", "fruitbot", "bigfish"], choices=GAMES, metavar="GAME",
                   help="games to build (default starpilot fruitbot bigfish)")  # fmt: skip
    b.add_argument("--episodes", type=int, default=100, help="held-out episodes per checkpoint (default 100)")
    b.add_argument("--keep-every", type=int, default=1, help="keep every k-th checkpoint of the series and the final "
                   "one (default 1: all of them)")  # fmt: skip
    b.add_argument("--runs-dir", default="runs/zoo", help="where the training runs go (default runs/zoo)")
    b.add_argument("--zoo-dir", default=str(ZOO_DIR), help="the zoo folder (default the repository's zoo/)")
    b.add_argument("--no-train", action="store_true", help="export and evaluate existing runs without training")
    b.add_argument("--steps", type=int, default=None, help="training budget per game (default the preset's: "
                   "configs/zoo.yaml's 2M); checkpoints keep the preset's spacing: more steps extend a "
                   "series")  # fmt: skip
    b.add_argument("--variant", default=None, help="train with configs/zoo-VARIANT.yaml into the series "
                   "<game>-VARIANT (e.g. impala: the IMPALA network, for a GPU); default configs/zoo.yaml")  # fmt: skip
    ls = sub.add_parser("list", help="print the zoo's table")
    ls.add_argument("--zoo-dir", default=str(ZOO_DIR), help="the zoo folder (default the repository's zoo/)")
    args = parser.parse_args(argv)
    if args.command == "build" and (args.episodes < 1 or args.keep_every < 1):
        raise UserError("--episodes and --keep-every must be >= 1")
    return args


@main_guard
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    zoo_dir = Path(args.zoo_dir)
    if args.command == "list":
        print("\n".join(table_lines(zoo_dir)))
        return
    build(
        args.games, Path(args.runs_dir), zoo_dir, args.episodes, args.keep_every, not args.no_train, args.steps,
        args.variant,
    )  # fmt: skip
    print(f"done: {zoo_dir / 'README.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
