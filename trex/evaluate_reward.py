"""Held-out evaluation of a learned reward: does it rank unseen episodes like the true return?

    python -m trex.evaluate_reward MODEL DEMO_DIR [--out DIR]

On the held-out-level demos of DEMO_DIR (split=test) the predicted return of each demo (the sum of
its per-frame learned rewards) is compared with its true return: pair accuracy over every pair of
demos with different true returns, and Pearson and Spearman correlation. The same numbers are
computed on the same demos for two baselines: the episode length (which correlated with return
at ~0.96 on starpilot in the 2020 study, beating every learned reward there) and an untrained
network of the same shape. Writes ``metrics.json``, ``predictions.csv`` (per demo: true and predicted
return, and the spread of an ensemble's predictions), ``scatter.png`` and ``traces.png`` to the
output folder. The trainer runs this at the end of training.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.figures import ScatterPanel, Trace, reward_traces, scatter
from procgen_common.logger import close_bar, progress_bar
from procgen_common.runs import make_folder, pick_device
from procgen_common.stats import json_safe, pair_accuracy, pearson, spearman
from trex.demos import DemoInfo, DemoSet
from trex.reward_net import RewardNet, load_reward_net

CHUNK = 512  # frames per forward pass when scoring a demo
# The untrained baseline is initialised from the model's training seed plus this: from the seed itself it would be
# the very network the model started from (the trainer seeds torch with train.seed before building it), a baseline
# that shares whatever the initialisation alone contributes to the learned reward's ranking.
UNTRAINED_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class RankingScores:
    """How well one predictor of episode return orders a set of demos."""

    pair_accuracy: float | None
    """Fraction of demo pairs with different true return that the predictor orders the same way (a tie in
    the prediction counts one half); None when every true return is equal."""
    pearson: float | None
    """Pearson correlation of predicted with true return; None when either is constant."""
    spearman: float | None
    """Spearman (rank) correlation, ties sharing their mean rank; None when either is constant."""


def ranking_scores(predicted: np.ndarray, true: np.ndarray) -> RankingScores:
    return RankingScores(pair_accuracy(predicted, true), pearson(predicted, true), spearman(predicted, true))


@torch.inference_mode()
def member_rewards(net: RewardNet, obs: np.ndarray, actions: np.ndarray, device: torch.device) -> np.ndarray:
    """Every ensemble member's learned reward of every frame of a demo, float64 ``(ensemble_size, T)``."""
    out = []
    for start in range(0, len(obs), CHUNK):
        frames = torch.from_numpy(obs[start : start + CHUNK]).to(device)
        acts = torch.from_numpy(actions[start : start + CHUNK]).to(device)
        out.append(net(frames, acts).double().cpu())
    return torch.cat(out, 1).numpy()


def untrained_like(net: RewardNet, seed: int) -> RewardNet:
    """A fresh network of the same shape, initialised from ``seed`` (the global torch RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RewardNet(net.config).eval()


def trace_demos(infos: list[DemoInfo], count: int) -> list[int]:
    """Indices of ``count`` demos spread evenly from the lowest to the highest true return."""
    if count <= 0 or not infos:
        return []
    by_return = np.argsort([i.episode_return for i in infos], kind="stable")
    picks = np.unique(np.linspace(0, len(infos) - 1, min(count, len(infos))).round().astype(int))
    return [int(by_return[p]) for p in picks]


def evaluate(
    net: RewardNet,
    demo_set: DemoSet,
    infos: list[DemoInfo],
    out_dir: str | Path,
    seed: int = 0,
    num_traces: int = 4,
    device: torch.device | str = "cpu",
    meta: dict | None = None,
) -> dict:
    """Score ``net`` and the two baselines on ``infos`` (loaded one demo at a time); write the outputs.

    ``seed`` is the one the model was trained with (``train.seed``); the untrained baseline network is initialised
    from ``seed + UNTRAINED_SEED_OFFSET`` (``untrained_seed`` in the metrics). Returns the metrics dict written
    to ``metrics.json``.
    """
    if len(infos) < 2:
        raise UserError(f"demo folder {demo_set.folder}: {len(infos)} held-out demos; the evaluation needs at least 2")
    device = torch.device(device)
    out_dir = Path(out_dir)
    net = net.to(device).eval()
    untrained_seed = seed + UNTRAINED_SEED_OFFSET
    untrained = untrained_like(net, untrained_seed).to(device)
    traced = set(trace_demos(infos, num_traces))
    predicted, spread, baseline = np.zeros(len(infos)), np.zeros(len(infos)), np.zeros(len(infos))
    traces = {}
    bar = progress_bar(total=len(infos), unit="demo", desc="evaluating reward", leave=False)
    try:
        for k, info in enumerate(infos):
            demo = demo_set.load(info)
            members = member_rewards(net, demo.obs, demo.actions, device)
            rewards = members.mean(0)
            # The ensemble's uncertainty about the return: the spread of the members' predicted returns.
            predicted[k], spread[k] = rewards.sum(), members.sum(1).std()
            baseline[k] = member_rewards(untrained, demo.obs, demo.actions, device).mean(0).sum()
            if k in traced:
                title = f"{info.demo_id}: true return {info.episode_return:g}, predicted {predicted[k]:.3g}"
                traces[k] = Trace(rewards, demo.rewards.astype(np.float64), title)
            bar.update(1)
    finally:
        close_bar(bar)
    true = np.array([i.episode_return for i in infos])
    lengths = np.array([i.length for i in infos], dtype=np.float64)
    scores = {
        "learned": ranking_scores(predicted, true),
        # The same reward averaged over frames: where a per-frame offset swamps the sums (offset x length), the
        # mean still ranks by what the reward says about each frame; both side by side show which carries the signal.
        "learned_per_frame": ranking_scores(predicted / lengths, true),
        "episode_length": ranking_scores(lengths, true),
        "untrained_net": ranking_scores(baseline, true),
    }
    metrics = {
        **(meta or {}),
        "demos": str(demo_set.folder),
        "game": demo_set.game,
        "distribution_mode": demo_set.distribution_mode,
        "split": infos[0].split if len({i.split for i in infos}) == 1 else "mixed",
        "num_demos": len(infos),
        "num_levels": len({i.level_seed for i in infos}),
        "true_return": {"mean": float(true.mean()), "min": float(true.min()), "max": float(true.max())},
        "untrained_seed": untrained_seed,
        **{name: dataclasses.asdict(s) for name, s in scores.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(
        [
            "demo_id",
            "level_seed",
            "checkpoint",
            "true_return",
            "length",
            "predicted_return",
            "predicted_return_std",
            "untrained_return",
        ]
    )
    for info, p, s, b in zip(infos, predicted, spread, baseline, strict=True):
        writer.writerow([info.demo_id, info.level_seed, info.checkpoint, info.episode_return, info.length, p, s, b])
    atomic_write_text(out_dir / "predictions.csv", rows.getvalue())

    def panel(x, name, label):
        s = scores[name]
        return ScatterPanel(x, true, f"{label}: r={_fmt(s.pearson)} rho={_fmt(s.spearman)}", label, "true return")

    scatter(
        out_dir / "scatter.png",
        [
            panel(predicted, "learned", "learned return"),
            panel(lengths, "episode_length", "episode length"),
            panel(baseline, "untrained_net", "untrained net"),
        ],
    )
    if traces:
        reward_traces(out_dir / "traces.png", [traces[k] for k in sorted(traces, key=lambda k: true[k])])
    atomic_write_text(out_dir / "metrics.json", json.dumps(json_safe(metrics), indent=2) + "\n")
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


PREDICTORS = ("learned", "learned_per_frame", "episode_length", "untrained_net")


def summary_lines(metrics: dict, what: str = "held-out demos") -> list[str]:
    """A small table of the predictors' scores."""
    lines = [
        f"{what}: {metrics['num_demos']} on {metrics['num_levels']} levels ({metrics['game']})",
        f"  {'predictor':<18} {'pair acc':>8} {'pearson':>8} {'spearman':>8}",
    ]
    for name in PREDICTORS:
        s = metrics.get(name)
        if s is not None:
            cells = f"{_fmt(s['pair_accuracy']):>8} {_fmt(s['pearson']):>8} {_fmt(s['spearman']):>8}"
            lines.append(f"  {name:<18} {cells}")
    return lines


def held_out_demos(demo_set: DemoSet, split: str) -> list[DemoInfo]:
    infos = demo_set.infos if split == "all" else demo_set.split(split)
    if not infos:
        raise UserError(
            f"demo folder {demo_set.folder} holds no split={split} demos; generate held-out demos with "
            "trex.generate_demos (test_levels / num_test_levels)"
        )
    return list(infos)


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m trex.evaluate_reward",
        description="Score a learned reward on held-out-level demos against the true return, beside two "
        "baselines (episode length, an untrained network of the same shape).",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="reward model file (.pt) or reward run folder (its reward_net.pt)"
    )
    parser.add_argument("demo_dir", metavar="DEMO_DIR", help="demo folder written by trex.generate_demos")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <model folder>/eval-<demo folder name>)")
    parser.add_argument(
        "--split",
        choices=["test", "train", "all"],
        default="test",
        help="which demos to score (default test: the held-out levels)",
    )
    parser.add_argument("--traces", type=int, default=4, help="demos whose per-step reward is plotted (default 4)")
    parser.add_argument(
        "--seed",
        type=int,
        help="training seed of the model (default: the train.seed in its file); the untrained baseline network is "
        f"initialised from seed + {UNTRAINED_SEED_OFFSET}",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    args = parser.parse_args(argv)
    if args.traces < 0:
        parser.error(f"--traces must be >= 0, got {args.traces}")
    return args


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    net, checkpoint = load_reward_net(args.model)
    demo_set = DemoSet.open(args.demo_dir)
    trained_on = checkpoint.get("demos", {})
    demo_set.check_same_game(
        trained_on.get("game"), trained_on.get("distribution_mode"), f"the reward model {args.model}"
    )
    model_dir = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    out = make_folder(args.out if args.out else model_dir / f"eval-{demo_set.folder.resolve().name}", "--out")
    seed = args.seed if args.seed is not None else int(checkpoint.get("config", {}).get("train", {}).get("seed", 0))
    infos = held_out_demos(demo_set, args.split)
    metrics = evaluate(net, demo_set, infos, out, seed, args.traces, device, meta={"model": str(args.model)})
    print("\n".join(summary_lines(metrics)))
    print(f"wrote {out}/metrics.json")
    return metrics


if __name__ == "__main__":
    main()
