"""Train a T-REX reward model on snippet pairs from ranked demonstrations.

    python -m trex.train_reward -c configs/trex-reward-cpu.yaml data.demos=runs/ppo-starpilot-nature-seed0/demos

The training-level demos of ``data.demos`` are split by demo into training and validation sets.
Every epoch draws fresh snippet pairs from the training demos; the loss is the Bradley-Terry
cross-entropy over the two snippets' summed rewards (Brown et al., 2019) plus an L1 penalty on
the per-frame rewards and a penalty on their mean (the constant offset that the Bradley-Terry loss
cannot see) and optionally an inverse-dynamics loss on the trunk's features (``train.inverse_dynamics_coef``),
minimised with Adam (decoupled weight decay) over minibatches of pairs. The model
with the best validation pair accuracy is kept (``reward_net.pt``), training stops early when
that has not improved for ``train.patience`` epochs, and the kept model is then scored on the
held-out-level demos (``eval/metrics.json``, see ``trex.evaluate_reward``).

The run folder gets ``config.yaml``, ``progress.csv`` (one row per epoch), ``tb/``, ``reward_net.pt``
(the best model) and ``checkpoints/latest.pt`` (for ``train.resume=true``), and ``eval/``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from procgen_common.checkpoint import atomic_write_text, save_checkpoint
from procgen_common.cli import UserError, main_guard, parse_config
from procgen_common.config import Checked, bounded, to_dict
from procgen_common.env import NUM_ACTIONS
from procgen_common.logger import LogConfig
from procgen_common.training_run import Run
from trex.augment import AUGMENTATIONS, augment_frames
from trex.demos import DemoFrames, DemoSet, load_frames
from trex.evaluate_reward import PREDICTORS, evaluate, member_rewards, summary_lines
from trex.pairs import (
    RankBy,
    SnippetPairs,
    rank_scores,
    sample_episode_pairs,
    sample_snippet_pairs,
    sample_transitions,
    snippet_frame_indices,
    split_by_demo,
)
from trex.reward_net import ALGO, InverseDynamics, RewardNet, RewardNetConfig, load_reward_net


@dataclass(frozen=True)
class DataConfig(Checked):
    """Which demos to learn from and how snippet pairs are drawn."""

    demos: str = ""
    """Demo folder written by trex.generate_demos; its split=train demos are learned from."""
    test_demos: str | None = None
    """Demo folder for the held-out evaluation at the end; null = the split=test demos of `demos`."""
    num_demos: int | None = bounded(None, 2)
    """Learn from this many training-level demos drawn at random (seeded), validation included; null = all."""
    val_fraction: float = bounded(0.2, 0.0, 0.9, low_open=True)
    """Fraction of those demos held out (whole demos, never single pairs) to pick the model and stop early."""
    rank_by: RankBy = "return"
    """Rank demos by true 'return'; by 'checkpoint' training step (the original T-REX's assumption); or by 'noise':
    the rung of a noise ladder (trex.generate_demos epsilon=[...]), by checkpoint step and then less noise ranking
    higher (D-REX), which needs no true return at all."""
    comparison: Literal["snippet", "episode"] = "snippet"
    """What a pair compares: 'snippet', two pieces of equal length (min_len..max_len frames, T-REX); or 'episode',
    the two whole episodes taken every stride-th frame, whose lengths differ as the episodes' do, so the loss sees
    what a constant per-frame reward (ending an episode early or late) is worth."""
    same_level: bool = False
    """Draw both demos of every training pair from the same level (needs several rungs per level, as a noise ladder
    gives): the comparison is then about behaviour, never about which level a demo came from. Validation pairs are
    drawn across levels, as the held-out evaluation ranks demos."""
    min_gap: float = bounded(0.0, 0.0)
    """Draw only training pairs whose ranking scores (rank_by) differ by at least this much, e.g. 2 for returns
    at least 2 apart: close scores make the noisiest snippet labels. Validation pairs take every pair of different
    rank, as the held-out evaluation ranks every demo. 0 = every pair of different rank."""
    pairs_per_epoch: int = bounded(2000, 1)
    """Training pairs drawn afresh every epoch."""
    val_pairs: int = bounded(500, 1)
    """Validation pairs (drawn once)."""
    min_len: int = bounded(50, 1)
    """Shortest snippet (frames; comparison=snippet)."""
    max_len: int = bounded(100, 1)
    """Longest snippet (frames; comparison=snippet)."""
    stride: int = bounded(1, 1)
    """Take every stride-th frame of a snippet or episode (a snippet covers (length - 1) * stride + 1 frames)."""
    start_prior: bool = False
    """Original T-REX prior: the better demo's snippet starts no earlier than the worse one's. It can teach the
    model time instead of task reward, so it is off by default."""

    def validate(self) -> None:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len: {self.min_len} is larger than max_len {self.max_len}; need min_len <= max_len")


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Optimisation, early stopping, seeding and resuming."""

    epochs: int = bounded(30, 1)
    """Most epochs to train (each one pass over data.pairs_per_epoch fresh pairs)."""
    batch_size: int = bounded(16, 1)
    """Snippet pairs per minibatch."""
    learning_rate: float = bounded(1e-4, 0.0, low_open=True)
    """Adam learning rate (T-REX: 5e-5 with one pair per step)."""
    weight_decay: float = bounded(0.0, 0.0)
    """Decoupled weight decay (AdamW)."""
    l1_coef: float = bounded(0.0, 0.0)
    """Weight of the L1 penalty on the per-frame rewards (keeps them small and sparse)."""
    center_coef: float = bounded(0.1, 0.0)
    """Weight of a penalty on the squared mean per-frame reward over each minibatch's frames (from the output's
    midpoint: 0, or 0.5 for a sigmoid). The Bradley-Terry loss on equal-length snippets is invariant to adding a
    constant to every frame's reward, so that offset gets no gradient and drifts under Adam's normalisation; on
    held-out episodes of other lengths the predicted return then holds offset x length, an accident that can
    make the reward look better or worse than the episode-length baseline. The penalty pins the offset."""
    patience: int = bounded(5, 0)
    """Stop after this many epochs without a better validation accuracy (0 = never stop early)."""
    seed: int = bounded(0, 0)
    """Seed for the demo subset and split, the pairs and the network."""
    resume: bool = False
    """Continue the run in run.dir from checkpoints/latest.pt (starts fresh if there is none)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device; 'auto' takes CUDA when available."""
    torch_threads: int = bounded(0, 0)
    """CPU threads for torch (0 = one per core). The count used is saved in config.yaml: it changes the order of
    the arithmetic, so the same seed gives bit-identical results only with the same count."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Network arithmetic while training: 'bf16' runs the reward network under bfloat16 autocast (the
    per-frame rewards are summed, and the loss computed, in fp32); faster on CPUs with AMX/AVX512-BF16 and on
    recent GPUs (far slower on CPUs without them). Validation and the held-out evaluation run in fp32."""
    inverse_dynamics_coef: float = bounded(0.0, 0.0)
    """Weight of an auxiliary inverse-dynamics loss (B-REX, Brown et al., 2020): from the trunk's features of two
    consecutive frames of a training demo, a small head predicts the action taken between them (cross-entropy). It
    steers the reward's features towards what the agent controls, which looks alike on every level; 0 = off. The
    head is not part of the saved reward model, and its frames are never augmented."""
    inverse_dynamics_batch: int = bounded(64, 1)
    """Transitions per minibatch for the inverse-dynamics loss, drawn uniformly over the training demos' steps."""
    augment: list[str] = field(default_factory=list)
    """Image augmentations of the training frames (never of validation, evaluation or the agents' reward): 'shift'
    (a random translation of up to 4 pixels, RAD/DrQ) and 'color' (random per-channel gains); e.g. [shift]."""

    def validate(self) -> None:
        unknown = [kind for kind in self.augment if kind not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"augment: unknown augmentation {unknown[0]!r}; allowed {', '.join(AUGMENTATIONS)}")


@dataclass(frozen=True)
class EvalConfig(Checked):
    """The held-out evaluation at the end."""

    at_end: bool = True
    """Score the best model on the held-out demos when training ends (trex.evaluate_reward)."""
    num_traces: int = bounded(4, 0)
    """Demos whose per-step learned reward is plotted."""


@dataclass(frozen=True)
class RunConfig(Checked):
    """Where outputs go."""

    dir: str | None = None
    """Run folder; null = runs/trex-<game>-<arch>-seed<seed>."""


@dataclass(frozen=True)
class Config(Checked):
    """T-REX reward training (trex.train_reward)."""

    data: DataConfig = field(default_factory=DataConfig)
    """Demos and snippet pairs."""
    reward_net: RewardNetConfig = field(default_factory=RewardNetConfig)
    """The reward network."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation, early stopping, seeding and resuming."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation at the end."""
    run: RunConfig = field(default_factory=RunConfig)
    """Where outputs go."""
    log: LogConfig = field(default_factory=LogConfig)
    """TensorBoard and Weights & Biases."""

    def validate(self) -> None:
        if not self.data.demos:
            raise ValueError("data.demos: not set; give the demo folder written by trex.generate_demos")


# Sections that must match the saved run for a resume to make sense.
RESUME_MUST_MATCH = ("data", "reward_net")

PROGRESS_COLUMNS = [
    "time/elapsed_s",
    "time/frames_per_s",
    "train/loss",
    "train/accuracy",
    "train/reward_abs",
    "train/reward_mean",
    "val/loss",
    "val/accuracy",
    "val/best_accuracy",
]
INVERSE_DYNAMICS_COLUMNS = ["train/inverse_dynamics_loss", "train/inverse_dynamics_accuracy"]


def bradley_terry_loss(returns_a: torch.Tensor, returns_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the Bradley-Terry preference model P(b better) = exp(R_b) / (exp(R_a) + exp(R_b)).

    ``returns_a``/``returns_b``: the snippets' summed predicted rewards, float ``(..., n)`` (leading dims,
    e.g. ensemble members, share the labels); ``labels``: int64 ``(n,)``, 1 where b came from the better
    demo, 0 where a did.
    """
    logits = torch.stack([returns_a, returns_b], -1)
    targets = labels.expand(returns_a.shape)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, 2), targets.reshape(-1))


def mean_reward_penalty(rewards: torch.Tensor, center: float = 0.0) -> torch.Tensor:
    """Squared distance of each member's mean per-frame reward from ``center``, averaged over members.

    ``rewards``: float ``(K, frames)``. It fixes the one direction the Bradley-Terry loss cannot see, a constant
    offset of every frame's reward (see ``TrainConfig.center_coef``).
    """
    return (rewards.mean(-1) - center).square().mean()


def preference_accuracy(returns_a: torch.Tensor, returns_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs whose better snippet got the larger predicted return (a tie counts one half)."""
    agree = torch.sign(returns_b - returns_a) * (2 * labels - 1)
    return ((agree + 1) / 2).mean()


# Minibatches hold a varying number of frames (snippet lengths differ); the forward pass rounds it up to a multiple
# of this. Every distinct batch shape makes oneDNN build and cache its own convolution kernels and buffers: with
# free shapes that cache held ~1 GB after a few epochs; with buckets a handful of shapes cost a few % padding.
FRAME_BUCKET = 128


def snippet_returns(
    net: RewardNet,
    frames: DemoFrames,
    pairs: SnippetPairs,
    device: torch.device,
    augment: tuple[list[str], np.random.Generator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed rewards of both snippets of every pair: ``(returns_a, returns_b, per-frame rewards)``.

    The frames of all snippets are gathered from the uint8 demo array into one flat batch (no per-snippet
    padding: snippet lengths differ), padded at the end to a multiple of ``FRAME_BUCKET`` frames, scored in one
    forward pass, and summed per snippet. Shapes: ``(K, n)``, ``(K, n)`` and ``(K, frames)`` for an ensemble
    of K (the padding is dropped). ``augment`` = (kinds, rng) augments the gathered frames (training only).
    """
    n = len(pairs)
    rows_a, snippet_a = snippet_frame_indices(frames.offsets, pairs.demo_a, pairs.start_a, pairs.length_a, pairs.stride)
    rows_b, snippet_b = snippet_frame_indices(frames.offsets, pairs.demo_b, pairs.start_b, pairs.length_b, pairs.stride)
    rows = np.concatenate([rows_a, rows_b])
    num_frames = len(rows)
    rows = np.concatenate([rows, np.full(-num_frames % FRAME_BUCKET, rows[0])])  # padding: any frame, dropped below
    snippet = torch.from_numpy(np.concatenate([snippet_a, snippet_b + n])).to(device)
    batch = frames.frames[rows]
    if augment is not None and augment[0]:
        batch = augment_frames(batch, *augment)
    obs = torch.from_numpy(batch).to(device)
    actions = torch.from_numpy(frames.actions[rows]).to(device)
    # float(): under bf16 autocast the rewards are summed in fp32 (bf16 keeps ~3 significant digits).
    rewards = net(obs, actions).float()[:, :num_frames]
    returns = rewards.new_zeros(rewards.shape[0], 2 * n).index_add_(1, snippet, rewards)
    return returns[:, :n], returns[:, n:], rewards


def inverse_dynamics_loss(
    net: RewardNet,
    head: InverseDynamics,
    frames: DemoFrames,
    demos: np.ndarray,
    num: int,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, accuracy)`` of ``head`` predicting the actions of ``num`` transitions drawn from the demos ``demos``
    (``sample_transitions``): the cross-entropy averaged over the ensemble's members, and the fraction of their
    predictions that are the action taken."""
    rows = sample_transitions(frames.offsets, demos, num, rng)
    now = torch.from_numpy(frames.frames[rows]).to(device)
    after = torch.from_numpy(frames.frames[rows + 1]).to(device)
    actions = torch.from_numpy(frames.actions[rows]).to(device)
    logits = head(net, now, after).float()
    members = logits.shape[0]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, NUM_ACTIONS), actions.repeat(members))
    return loss, (logits.argmax(-1) == actions).float().mean()


@torch.no_grad()
def validate_pairs(
    net: RewardNet, frames: DemoFrames, pairs: SnippetPairs, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """``(loss, accuracy)`` of the ensemble-mean reward on ``pairs``."""
    net.eval()
    loss = accuracy = 0.0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        returns_a, returns_b, _ = snippet_returns(net, frames, batch, device)
        labels = torch.from_numpy(batch.label).to(device)
        mean_a, mean_b = returns_a.mean(0), returns_b.mean(0)
        loss += bradley_terry_loss(mean_a, mean_b, labels).item() * len(batch)
        accuracy += preference_accuracy(mean_a, mean_b, labels).item() * len(batch)
    net.train()
    return loss / len(pairs), accuracy / len(pairs)


def train_epoch(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: DemoFrames,
    pairs: SnippetPairs,
    config: Config,
    epoch: int,
    device: torch.device,
    autocast: AbstractContextManager,
    bar: tqdm | None = None,
    inverse_dynamics: tuple[InverseDynamics, np.ndarray] | None = None,
) -> dict[str, float]:
    """One epoch over ``pairs`` in the order given, one optimizer step per minibatch of ``train.batch_size`` pairs;
    returns the epoch's ``train/*`` (means over the pairs) and ``time/frames_per_s`` (compute only) columns.

    A minibatch's loss: the Bradley-Terry cross-entropy of the clips' summed rewards (Brown et al., 2019), plus
    ``train.l1_coef`` x the mean |per-frame reward| and ``train.center_coef`` x ``mean_reward_penalty``. Frames are
    augmented as ``train.augment`` says (seeded by the seed, ``epoch`` and minibatch), the network run under
    ``autocast``; ``bar`` advances once per minibatch. ``inverse_dynamics`` = (head, demo indices) adds
    ``train.inverse_dynamics_coef`` x ``inverse_dynamics_loss`` on transitions of those demos.
    """
    t = config.train
    sums = {"loss": 0.0, "accuracy": 0.0, "reward_abs": 0.0, "reward_mean": 0.0}
    if inverse_dynamics is not None:
        sums |= {"inverse_dynamics_loss": 0.0, "inverse_dynamics_accuracy": 0.0}
    frames_seen, compute_s = 0, 0.0
    for start in range(0, len(pairs), t.batch_size):
        batch = pairs[start : start + t.batch_size]
        t_batch = time.monotonic()
        labels = torch.from_numpy(batch.label).to(device)
        augment = (t.augment, np.random.default_rng([t.seed, 5, epoch, start]))
        with autocast:
            returns_a, returns_b, rewards = snippet_returns(net, frames, batch, device, augment)
        loss = (
            bradley_terry_loss(returns_a, returns_b, labels)
            + t.l1_coef * rewards.abs().mean()
            + t.center_coef * mean_reward_penalty(rewards, config.reward_net.output_center)
        )
        if inverse_dynamics is not None:
            head, demos = inverse_dynamics
            rng = np.random.default_rng([t.seed, 6, epoch, start])
            with autocast:
                aux_loss, aux_accuracy = inverse_dynamics_loss(
                    net, head, frames, demos, t.inverse_dynamics_batch, rng, device
                )
            loss = loss + t.inverse_dynamics_coef * aux_loss
            sums["inverse_dynamics_loss"] += aux_loss.item() * len(batch)
            sums["inverse_dynamics_accuracy"] += aux_accuracy.item() * len(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        compute_s += time.monotonic() - t_batch
        frames_seen += rewards.shape[1]
        accuracy = preference_accuracy(returns_a.mean(0), returns_b.mean(0), labels)
        sums["loss"] += loss.item() * len(batch)
        sums["accuracy"] += accuracy.item() * len(batch)
        sums["reward_abs"] += rewards.detach().abs().mean().item() * len(batch)
        sums["reward_mean"] += rewards.detach().mean().item() * len(batch)
        if bar is not None:
            bar.update(1)
    return {f"train/{k}": v / len(pairs) for k, v in sums.items()} | {"time/frames_per_s": frames_seen / compute_s}


@dataclass(frozen=True)
class TrainingDemos:
    """The training-level demos a run learns from, loaded as uint8, and their train/validation split."""

    frames: DemoFrames
    """Frames and actions of all of them (training and validation demos)."""
    demo_ids: list[str]
    """Their ids, in the order of ``frames``."""
    scores: np.ndarray
    """Rank score of each (higher = better), float64 ``(num_demos,)``."""
    levels: np.ndarray
    """Level seed of each, int64 ``(num_demos,)``."""
    train: np.ndarray
    """Indices of the training demos, int64."""
    val: np.ndarray
    """Indices of the validation demos, int64."""


def select_training_demos(demo_set: DemoSet, data: DataConfig, seed: int) -> TrainingDemos:
    """Choose the (seeded) subset of training-level demos, split it by demo and load its frames."""
    infos = demo_set.split("train")
    if len(infos) < 2:
        raise UserError(f"data.demos: {demo_set.folder} holds {len(infos)} training-level demos; need at least 2")
    if data.num_demos is not None:
        if data.num_demos > len(infos):
            raise UserError(f"data.num_demos: {data.num_demos} asked for but {demo_set.folder} holds {len(infos)}")
        keep = np.sort(np.random.default_rng([seed, 3]).permutation(len(infos))[: data.num_demos])
        infos = [infos[k] for k in keep]
    train, val = split_by_demo(len(infos), data.val_fraction, seed=[seed, 4])
    scores = rank_scores(
        np.array([i.episode_return for i in infos]),
        np.array([i.checkpoint_step for i in infos]),
        data.rank_by,
        np.array([i.epsilon for i in infos]),
    )
    for name, part in (("training", train), ("validation", val)):
        if len(np.unique(scores[part])) < 2:
            raise UserError(
                f"data: the {name} demos ({len(part)}) hold fewer than two different {data.rank_by} values, so no "
                "pair can be ranked; use more demos (data.num_demos) or another data.val_fraction"
            )
    levels = np.array([i.level_seed for i in infos], dtype=np.int64)
    return TrainingDemos(load_frames(demo_set, infos), [i.demo_id for i in infos], scores, levels, train, val)


def draw_pairs(
    demos: TrainingDemos, data: DataConfig, part: np.ndarray, num_pairs: int, seed: list[int]
) -> SnippetPairs:
    """Snippet or whole-episode pairs (``data.comparison``) with the data settings; demos that cannot be paired are a
    one-line UserError."""
    scores, lengths = demos.scores, demos.frames.lengths
    levels = demos.levels if data.same_level else None
    try:
        if data.comparison == "episode":
            return sample_episode_pairs(scores, lengths, part, num_pairs, data.stride, seed, levels, data.min_gap)
        return sample_snippet_pairs(
            scores, lengths, part, num_pairs, data.min_len, data.max_len, seed, data.stride, data.start_prior, levels,
            data.min_gap,
        )  # fmt: skip
    except ValueError as err:
        key = "data.min_gap" if data.min_gap > 0 else "data.same_level" if data.same_level else "data.min_len"
        raise UserError(f"{key}: {err}") from None


def epoch_pairs(demos: TrainingDemos, data: DataConfig, seed: int, epoch: int) -> SnippetPairs:
    """The training pairs of ``epoch`` in training order, drawn afresh every epoch from seeds that depend only on
    the epoch (so a resumed run draws what the uninterrupted one would have)."""
    pairs = draw_pairs(demos, data, demos.train, data.pairs_per_epoch, seed=[seed, 1, epoch])
    return pairs[np.random.default_rng([seed, 2, epoch]).permutation(len(pairs))]


def train(config: Config) -> Path:
    """Train the reward model as configured, then evaluate it on held-out demos; returns the run folder."""
    demo_set = DemoSet.open(config.data.demos)
    test_set = DemoSet.open(config.data.test_demos) if config.data.test_demos else demo_set
    test_set.check_same_game(demo_set.game, demo_set.distribution_mode, f"data.demos {demo_set.folder}")
    run_dir = Path(config.run.dir or f"runs/trex-{demo_set.game}-{config.reward_net.arch}-seed{config.train.seed}")
    run = Run(run_dir, config, RESUME_MUST_MATCH)
    config, device, saved = run.config, run.device, run.resume_from
    t, data = config.train, config.data
    try:
        demos = select_training_demos(demo_set, data, t.seed)
        if saved is not None and saved["demo_ids"] != demos.demo_ids:
            raise UserError(f"data.demos: the demos in {demo_set.folder} changed since the run in {run_dir} started")
        # Validation pairs join any two validation demos of different rank, as the held-out evaluation ranks demos
        # across levels: data.same_level and data.min_gap shape what the model learns from, not how its ranking is
        # checked.
        val_data = dataclasses.replace(data, same_level=False, min_gap=0.0)
        val_pairs = draw_pairs(demos, val_data, demos.val, data.val_pairs, [t.seed, 0])

        net = RewardNet(config.reward_net).to(device)
        # Built only when on, so runs without it draw the same initial weights as before it existed.
        aux = InverseDynamics(net).to(device) if t.inverse_dynamics_coef > 0 else None
        params = [*net.parameters(), *(aux.parameters() if aux is not None else [])]
        # AdamW: weight decay that is not scaled by Adam's per-weight step sizes (Loshchilov & Hutter, 2019).
        optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
        epoch, elapsed, best_accuracy, best_loss, stale = 0, 0.0, -1.0, float("inf"), 0
        if saved is not None:
            if ("inverse_dynamics" in saved) != (aux is not None):
                raise UserError(
                    f"train.inverse_dynamics_coef: the run in {run_dir} was started "
                    f"with{'out' if aux is not None else ''} the inverse-dynamics loss; resume it with the same setting"
                )
            net.load_state_dict(saved["model"])
            if aux is not None:
                aux.load_state_dict(saved["inverse_dynamics"])
            optimizer.load_state_dict(saved["optimizer"])
            epoch, elapsed = saved["step"], saved["elapsed_s"]
            best_accuracy, best_loss, stale = saved["best_accuracy"], saved["best_loss"], saved["stale"]
            print(f"resuming {run_dir} from epoch {epoch}", file=sys.stderr)
        batches = -(-data.pairs_per_epoch // t.batch_size)
        bar = dict(total=t.epochs * batches, initial=epoch * batches, unit="batch", desc=f"reward {demo_set.game}")
        run.open_logs(PROGRESS_COLUMNS + (INVERSE_DYNAMICS_COLUMNS if aux is not None else []), epoch, **bar)

        def payload(**extra) -> dict:
            return {
                "algo": ALGO,
                "step": epoch,
                "mean_return": None,
                "config": to_dict(config),
                "model": net.state_dict(),
                "demos": {
                    "game": demo_set.game,
                    "distribution_mode": demo_set.distribution_mode,
                    "folder": str(demo_set.folder),
                    "num_train": len(demos.train),
                    "num_val": len(demos.val),
                },
                "demo_ids": demos.demo_ids,
                **extra,
            }

        while epoch < t.epochs and not (t.patience and stale >= t.patience):
            t_start = time.monotonic()
            pairs = epoch_pairs(demos, data, t.seed, epoch)
            metrics = train_epoch(
                net,
                optimizer,
                demos.frames,
                pairs,
                config,
                epoch,
                device,
                run.autocast,
                run.bar,
                inverse_dynamics=None if aux is None else (aux, demos.train),
            )
            val_loss, val_accuracy = validate_pairs(net, demos.frames, val_pairs, t.batch_size, device)
            epoch += 1
            elapsed += time.monotonic() - t_start
            if val_accuracy > best_accuracy or (val_accuracy == best_accuracy and val_loss < best_loss):
                best_accuracy, best_loss, stale = val_accuracy, val_loss, 0
                save_checkpoint(run_dir / "reward_net.pt", payload(val_accuracy=val_accuracy, val_loss=val_loss))
            else:
                stale += 1
            val = {"val/loss": val_loss, "val/accuracy": val_accuracy, "val/best_accuracy": best_accuracy}
            metrics |= {"time/elapsed_s": round(elapsed, 1), **val}
            run.logger.log(epoch, metrics)
            run.bar.set_postfix({"loss": f"{metrics['train/loss']:.3f}", "val_acc": f"{val_accuracy:.3f}"})
            state = dict(optimizer=optimizer.state_dict(), rng={"torch": torch.get_rng_state()}, elapsed_s=elapsed)
            state |= dict(best_accuracy=best_accuracy, best_loss=best_loss, stale=stale)
            if aux is not None:
                state["inverse_dynamics"] = aux.state_dict()
            save_checkpoint(run_dir / "checkpoints" / "latest.pt", payload(**state))
        run.close_logs()
        if t.patience and stale >= t.patience and epoch < t.epochs:
            print(
                f"stopped early after epoch {epoch}: no better validation accuracy for {stale} epochs", file=sys.stderr
            )
        record_reward_per_frame(run_dir / "reward_net.pt", demos, device)
        if config.eval.at_end:
            evaluate_generalization(config, run_dir, demo_set, test_set, demos, device)
    finally:
        run.close()
    return run_dir


def record_reward_per_frame(path: Path, demos: TrainingDemos, device: torch.device) -> dict:
    """Save in the kept model's file (``reward_per_frame``) the mean and std of its reward per frame (ensemble mean)
    over the training demos it learned from. The ranking loss cannot see a constant added to every frame, so that
    mean is arbitrary, and a positive one pays an agent for every step it survives; ``reward.center`` subtracts it."""
    net, checkpoint = load_reward_net(path)
    net = net.to(device)
    f, per_demo = demos.frames, []
    for k in demos.train:
        frames = slice(f.offsets[k], f.offsets[k + 1])
        per_demo.append(member_rewards(net, f.frames[frames], f.actions[frames], device).mean(0))
    rewards = np.concatenate(per_demo)
    checkpoint["reward_per_frame"] = dict(mean=float(rewards.mean()), std=float(rewards.std()), frames=len(rewards))
    save_checkpoint(path, checkpoint)
    return checkpoint["reward_per_frame"]


def evaluate_generalization(
    config: Config, run_dir: Path, demo_set: DemoSet, test_set: DemoSet, demos: TrainingDemos, device: torch.device
) -> dict:
    """Score the kept model on held-out levels (``eval/``) and on unseen episodes of its own training levels
    (``eval-train-levels/``: the training-level demos it did not learn from, the validation ones and any that
    ``data.num_demos`` left out), beside the baselines; the difference of the two is the generalisation gap, written
    with both to ``generalization.json``. Returns that summary."""
    best, _ = load_reward_net(run_dir / "reward_net.pt")
    meta = {"model": str(run_dir / "reward_net.pt")}
    t = config.train
    trained = {demos.demo_ids[k] for k in demos.train}
    sets = {
        "in_distribution": (demo_set, [i for i in demo_set.split("train") if i.demo_id not in trained]),
        "held_out": (test_set, test_set.split("test")),
    }
    folders = {"in_distribution": run_dir / "eval-train-levels", "held_out": run_dir / "eval"}
    titles = {"in_distribution": "unseen episodes of the training levels", "held_out": "held-out-level demos"}
    results = {}
    for name, (folder_set, infos) in sets.items():
        if len(infos) < 2:
            print(
                f"note: {folder_set.folder} holds {len(infos)} {titles[name]}; skipping that evaluation",
                file=sys.stderr,
            )
            continue
        metrics = evaluate(best, folder_set, infos, folders[name], t.seed, config.eval.num_traces, device, meta=meta)
        print("\n".join(summary_lines(metrics, titles[name])))
        results[name] = metrics
    summary = {
        name: {p: results[name][p] for p in PREDICTORS} | {"num_demos": results[name]["num_demos"]} for name in results
    }
    if len(results) == 2:
        gap = {
            p: _difference(results["held_out"][p]["spearman"], results["in_distribution"][p]["spearman"])
            for p in PREDICTORS
        }
        summary["spearman_gap"] = gap
        print(
            f"generalisation gap, held-out minus in-distribution Spearman of the learned return: {_fmt(gap['learned'])}"
        )
    atomic_write_text(run_dir / "generalization.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


DESCRIPTION = """Train a T-REX reward model: Bradley-Terry loss on snippet pairs from ranked demos, the best model by
validation accuracy kept, then scored on held-out-level demos against the episode-length and untrained-net baselines.
Writes config.yaml, progress.csv, tb/, reward_net.pt, checkpoints/latest.pt and eval/ to run.dir."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    prog = "python -m trex.train_reward"
    example = f"{prog} -c configs/trex-reward-cpu.yaml data.demos=runs/ppo-starpilot-nature-seed0/demos"
    print(f"done: {train(parse_config(prog, DESCRIPTION, Config, example, argv))}")


if __name__ == "__main__":
    main()
