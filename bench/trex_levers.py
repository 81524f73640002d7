"""T-REX's levers, measured: which ladder, which pairs and which regularisers make a learned reward generalise?

    python bench/trex_levers.py --game starpilot --best zoo:starpilot/step_001015808
        --series zoo:starpilot/step_000000000 zoo:starpilot/step_000507904 zoo:starpilot/step_001015808
        [--seeds 0 1 2] [--num-demos 100] [--train-levels 10] [--test-levels 10] [--variants NAME ...]
        [--epsilons 1.0 0.75 0.5 0.25 0.02] [-c configs/trex-reward-cpu.yaml] [--out bench/results/trex_levers]
        [--summary-only] [key=value ...]

Two demonstration ladders on the same training levels (``<out>/<game>/``):

- ``noise``: one checkpoint (``--best``) played at every epsilon of a D-REX noise ladder (Brown et al., CoRL 2019),
  each (checkpoint, epsilon) one rung;
- ``checkpoints``: every checkpoint of a series (``--series``) played as it is (the original T-REX ladder, today's
  default);
- ``crossed``: every checkpoint of the series at every epsilon of the noise ladder, each (checkpoint, epsilon) one
  rung (the two ladders crossed); a training ladder only: the held-out set stays the two ladders' above.

Each plays ``--train-levels`` training levels with enough episodes that ``--num-demos`` can be drawn and as many
again stay unseen (the in-distribution evaluation: new episodes of the training levels; a ladder no chosen variant
learns from plays no training levels), and ``--test-levels`` held-out levels. Every reward model is scored on the
union of both ladders' held-out demos (one held-out set for all variants) and on the unseen training-level
episodes of its own ladder, beside episode length, the per-frame mean of the learned reward and an untrained network
(``trex.train_reward``'s ``generalization.json``).

A variant is a ladder plus reward trainer overrides (``VARIANTS``, or ``--variant NAME=LADDER:key=value,...``); each
runs for every seed into ``<out>/<game>/<variant>/seed<S>``. Finished runs are skipped and interrupted ones resume,
so rerunning continues. ``<out>/summary-<game>.{json,md}``: per variant, mean and std over seeds of the held-out
and in-distribution Spearman correlation with the true return and the gap between them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import OneLineParser, main_guard
from procgen_common.config import load_config
from procgen_common.env import GAMES
from procgen_common.stats import mean_std
from trex.demos import read_index, write_index
from trex.evaluate_reward import PREDICTORS
from trex.generate_demos import Config as DemoConfig
from trex.generate_demos import checkpoint_files, generate, summary_lines
from trex.train_reward import Config as RewardConfig
from trex.train_reward import train

EPISODE = ["data.comparison=episode", "data.stride=4"]
# name -> (ladder, reward trainer overrides): one lever changed at a time from today's trainer on today's ladder.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "checkpoints-snippet": ("checkpoints", ["data.rank_by=return"]),
    "noise-snippet": ("noise", ["data.rank_by=noise"]),
    "noise-episode": ("noise", ["data.rank_by=noise", *EPISODE]),
    "noise-episode-level": ("noise", ["data.rank_by=noise", *EPISODE, "data.same_level=true"]),
    "noise-episode-shift": ("noise", ["data.rank_by=noise", *EPISODE, "train.augment=[shift]"]),
    "checkpoints-episode": ("checkpoints", ["data.rank_by=return", *EPISODE]),
    "noise-episode-return": ("noise", ["data.rank_by=return", *EPISODE]),
    "noise-episode-level-shift": (
        "noise",
        ["data.rank_by=noise", *EPISODE, "data.same_level=true", "train.augment=[shift]"],
    ),
    "noise-episode-shift-color": ("noise", ["data.rank_by=noise", *EPISODE, "train.augment=[shift,color]"]),
    "noise-episode-wd": ("noise", ["data.rank_by=noise", *EPISODE, "train.weight_decay=0.05"]),
}
SETS = ("held_out", "in_distribution")
LADDERS = ("noise", "checkpoints", "crossed")
HELD_OUT_LADDERS = ("noise", "checkpoints")  # the one held-out set every variant is scored on


def ladder_folder(args: argparse.Namespace, ladder: str, split: str) -> Path:
    return Path(args.out) / args.game / f"{ladder}-{split}"


def generate_ladder(args: argparse.Namespace, ladder: str, split: str) -> Path:
    """Play (or complete) one ladder's demos on one split's levels."""
    entries, epsilons = {
        "noise": ([args.best], args.epsilons),
        "checkpoints": (args.series, [0.0]),
        "crossed": (args.series, args.epsilons),
    }[ladder]
    rungs = len(checkpoint_files(entries)) * len(epsilons)
    if split == "train":
        # Twice --num-demos: the reward learns from half, the other half stays unseen (in-distribution evaluation).
        episodes = math.ceil(2 * args.num_demos / (rungs * args.train_levels))
        levels = [f"num_train_levels={args.train_levels}", "test_levels=[]"]
    else:
        episodes = args.test_episodes
        levels = [f"num_test_levels={args.test_levels}", "train_levels=[]"]
    overrides = [
        f"checkpoints={json.dumps(entries)}",
        f"epsilon={epsilons}",
        f"game={args.game}",
        *levels,
        f"episodes_per_level={episodes}",
        "deterministic=false",
        "max_length=1000",
        f"out_dir={ladder_folder(args, ladder, split)}",
    ]
    return generate(load_config(DemoConfig, None, overrides))


def merged_test_folder(args: argparse.Namespace) -> Path:
    """One held-out folder holding both ladders' held-out demos (hard links: no copy of the frames)."""
    out = Path(args.out) / args.game / "held-out"
    out.mkdir(parents=True, exist_ok=True)
    infos = []
    for ladder in HELD_OUT_LADDERS:
        folder = ladder_folder(args, ladder, "test")
        for info in read_index(folder):
            # Named by ladder too: both ladders can hold a demo of the same checkpoint, level and episode.
            info = dataclasses.replace(info, demo_id=f"{ladder}-{info.demo_id}", file=f"{ladder}-{info.file}")
            target = out / info.file
            if not target.exists():
                target.hardlink_to(folder / info.file.removeprefix(f"{ladder}-"))
            infos.append(info)
    write_index(out, infos)
    return out


def train_variant(args: argparse.Namespace, name: str, seed: int) -> Path:
    """Train and evaluate one reward model of a variant, unless it has finished; resumes an interrupted run."""
    ladder, overrides = args.variants[name]
    run_dir = Path(args.out) / args.game / name / f"seed{seed}"
    if (run_dir / "generalization.json").is_file():
        return run_dir
    overrides = [
        *args.overrides,
        *overrides,
        f"data.demos={ladder_folder(args, ladder, 'train')}",
        f"data.test_demos={Path(args.out) / args.game / 'held-out'}",
        f"data.num_demos={args.num_demos}",
        f"train.seed={seed}",
        f"train.resume={run_dir.exists()}",
        "eval.at_end=true",
        f"run.dir={run_dir}",
    ]
    print(f"reward model: {args.game}, {name}, seed {seed}", file=sys.stderr)
    return train(load_config(RewardConfig, args.config, overrides))


def summarize(args: argparse.Namespace) -> dict:
    rows = {}
    for name in args.variants:
        records = [
            json.loads(p.read_text())
            for seed in args.seeds
            if (p := Path(args.out) / args.game / name / f"seed{seed}" / "generalization.json").is_file()
        ]
        if not records:
            continue
        row = {"seeds": len(records), "ladder": args.variants[name][0]}
        for which in SETS:
            for predictor in PREDICTORS:
                row[f"{which}/{predictor}"] = mean_std([r[which][predictor]["spearman"] for r in records])
        row["gap/learned"] = mean_std([r["spearman_gap"]["learned"] for r in records])
        rows[name] = row
    ladders = {}
    for ladder in LADDERS:
        infos = read_index(ladder_folder(args, ladder, "train")) + read_index(ladder_folder(args, ladder, "test"))
        if infos:  # a ladder no variant learns from has held-out demos only, the crossed one none
            ladders[ladder] = summary_lines(infos)
    return {"game": args.game, "command": "python bench/trex_levers.py " + " ".join(args.argv), "variants": rows,
            "ladders": ladders}  # fmt: skip


def fmt(stat: dict) -> str:
    return "n/a" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(summary: dict) -> list[str]:
    lines = [
        f"# T-REX levers: {summary['game']}",
        "",
        f"`{summary['command']}`",
        "",
        "Spearman correlation with the true return, mean ± std over seeds: held-out levels (both ladders' held-out "
        "demos) and unseen episodes of the training levels (in distribution).",
        "",
        "| variant | ladder | seeds | held-out learned | held-out per-frame | held-out length | held-out untrained "
        "| in-dist learned | in-dist per-frame | in-dist length | gap (held-out - in-dist) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["variants"].items():
        cells = [
            row["held_out/learned"],
            row["held_out/learned_per_frame"],
            row["held_out/episode_length"],
            row["held_out/untrained_net"],
            row["in_distribution/learned"],
            row["in_distribution/learned_per_frame"],
            row["in_distribution/episode_length"],
            row["gap/learned"],
        ]
        lines.append(f"| {name} | {row['ladder']} | {row['seeds']} | " + " | ".join(fmt(c) for c in cells) + " |")
    for ladder, table in summary["ladders"].items():
        lines += ["", f"Ladder `{ladder}` (mean true return per rung):", "", "```", *table, "```"]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", required=True, choices=GAMES, metavar="GAME", help="Procgen game")
    parser.add_argument("--best", required=True, help="checkpoint the noise ladder is played from")
    parser.add_argument(
        "--series",
        required=True,
        nargs="+",
        help="checkpoints (or a run or zoo series) of the checkpoint and crossed ladders",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="reward model seeds (default 0 1 2)")
    parser.add_argument("--num-demos", type=int, default=100, help="training demos per reward model (default 100)")
    parser.add_argument("--train-levels", type=int, default=10, help="training levels demos come from (default 10)")
    parser.add_argument("--test-levels", type=int, default=10, help="held-out levels for evaluation (default 10)")
    parser.add_argument("--test-episodes", type=int, default=2, help="episodes per held-out level and rung (default 2)")
    parser.add_argument(
        "--epsilons",
        type=float,
        nargs="+",
        default=[1.0, 0.75, 0.5, 0.25, 0.02],
        help="epsilons of the noise and crossed ladders (default D-REX's 1.0 0.75 0.5 0.25 0.02)",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        help=f"variants to run (default all: {', '.join(VARIANTS)}; none given: only the --variant ones)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=LADDER:key=value,...",
        help="an extra variant on the noise, checkpoints or crossed ladder, e.g. "
        "noise-l1=noise:data.rank_by=noise,train.l1_coef=0.01 (repeatable)",
    )
    parser.add_argument("-c", "--config", default="configs/trex-reward-cpu.yaml", help="reward trainer preset")
    parser.add_argument("--out", default="bench/results/trex_levers", help="output folder")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from finished runs")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="reward trainer overrides for every run")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    variants = {}
    for name in args.variants:
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        variants[name] = VARIANTS[name]
    for entry in args.variant:
        name, _, rest = entry.partition("=")
        ladder, _, options = rest.partition(":")
        if not name or ladder not in LADDERS:
            parser.error(f"--variant: {entry!r} must look like NAME={'|'.join(LADDERS)}:key=value,...")
        variants[name] = (ladder, [o for o in options.split(",") if o])
    if not variants:
        parser.error("--variants: none given and no --variant; name at least one variant")
    args.variants = variants
    if args.num_demos < 2 or args.train_levels < 1 or args.test_levels < 1 or args.test_episodes < 1:
        parser.error("--num-demos must be >= 2, and --train-levels, --test-levels and --test-episodes >= 1")
    return args


@main_guard
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not args.summary_only:
        # Both ladders' held-out demos make the one held-out set; training demos only for the ladders a variant uses.
        for ladder in HELD_OUT_LADDERS:
            generate_ladder(args, ladder, "test")
        for ladder in sorted({ladder for ladder, _ in args.variants.values()}):
            generate_ladder(args, ladder, "train")
        merged_test_folder(args)
        for name in args.variants:
            for seed in args.seeds:
                train_variant(args, name, seed)
    summary = summarize(args)
    out = Path(args.out)  # the summaries sit beside the (git-ignored) run folders, so they can be committed
    lines = markdown(summary)
    atomic_write_text(out / f"summary-{args.game}.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / f"summary-{args.game}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
