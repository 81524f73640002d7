"""How much of a demo set's ranking can a reward learned from its ladder explain? Ceilings from the index alone.

    python bench/ladder_ceiling.py DEMO_DIR [DEMO_DIR ...] [--split test|train|all] [--out FILE.md]

T-REX learns from a ladder of rungs (checkpoints, noise levels). A reward that learned the ladder perfectly, and
nothing below it, knows each demo's rung and no more. Three predictors of each demo's true return bound what it can
do, each scored like the learned reward (Spearman, pair accuracy) against the same demos:

- ``length``: the episode length (the baseline every report shows);
- ``rung mean``: the mean true return of the demo's rung, what a reward that ranks the rungs perfectly (in the
  order of their mean returns on these very demos: an oracle) but pays the same for every episode of a rung gives;
- ``rung rate x length``: the rung's mean true return per frame times the demo's length, what a reward that pays
  each rung its own constant per frame gives: a perfect ladder reward that still knows nothing of the frames that
  score.

and ``between rungs`` is the share of the returns' variance the rungs explain (R^2 of the rung means). Where these
ceilings sit well below a goal (e.g. Spearman 0.8), no reward that learns the ladder alone can meet it: it must find
the events that earn points inside each episode.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import OneLineParser, UserError, main_guard
from trex.demos import DemoInfo, DemoSet
from trex.evaluate_reward import ranking_scores


def rung_means(rungs: list[tuple], values: np.ndarray) -> np.ndarray:
    """Each entry's mean of ``values`` over all the entries of its rung."""
    means = {rung: values[[k for k, r in enumerate(rungs) if r == rung]].mean() for rung in set(rungs)}
    return np.array([means[r] for r in rungs])


def ceilings(infos: list[DemoInfo]) -> dict:
    """The ceilings of one set of demos (see the module docstring)."""
    if len(infos) < 3:
        raise UserError(f"{len(infos)} demos; the ceilings need at least 3")
    returns = np.array([i.episode_return for i in infos], dtype=np.float64)
    lengths = np.array([i.length for i in infos], dtype=np.float64)
    rungs = [(i.checkpoint, i.epsilon) for i in infos]
    rung_mean = rung_means(rungs, returns)
    rung_rate = rung_means(rungs, returns / lengths)
    total = ((returns - returns.mean()) ** 2).sum()
    return {
        "demos": len(infos),
        "rungs": len(set(rungs)),
        "between_rungs_r2": float(1 - ((returns - rung_mean) ** 2).sum() / total) if total else float("nan"),
        "scores": {
            name: dataclasses.asdict(ranking_scores(predicted, returns))
            for name, predicted in (
                ("length", lengths),
                ("rung mean", rung_mean),
                ("rung rate x length", rung_rate * lengths),
            )
        },
    }


def table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| demos | split | n | rungs | between rungs R^2 | length | rung mean | rung rate x length |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (folder, split), c in rows:
        cells = " | ".join(
            f"{c['scores'][k]['spearman']:.3f} ({c['scores'][k]['pair_accuracy']:.2f})"
            for k in ("length", "rung mean", "rung rate x length")
        )
        lines.append(f"| `{folder}` | {split} | {c['demos']} | {c['rungs']} | {c['between_rungs_r2']:.2f} | {cells} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python bench/ladder_ceiling.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("demo_dirs", nargs="+", metavar="DEMO_DIR", help="demo folders (trex.generate_demos)")
    parser.add_argument(
        "--split",
        choices=["test", "train", "all", "each"],
        default="each",
        help="demos to score: one split, all together, or each split of each folder on its own row (default)",
    )
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    return parser.parse_args(argv)


@main_guard
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rows = []
    for folder in args.demo_dirs:
        demos = DemoSet.open(folder)
        for split in ["train", "test"] if args.split == "each" else [args.split]:
            infos = list(demos.infos) if split == "all" else demos.split(split)
            if infos:
                rows.append(((folder, split), ceilings(infos)))
    note = "Spearman (pair accuracy) of each predictor with the true return; see bench/ladder_ceiling.py."
    text = f"{note}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), f"`python bench/ladder_ceiling.py {' '.join(argv)}`\n\n{text}")


if __name__ == "__main__":
    main()
