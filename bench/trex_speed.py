"""T-REX speed and memory: reward training, its peak memory and demo generation, each against its bound.

    python bench/trex_speed.py [--demos DIR] [--checkpoints RUN] [-c configs/trex-reward-cpu.yaml] [--rounds 3]
        [--memory-demos 10 0] [--gen-levels 16] [--gen-episodes 2] [--out bench/results/trex_speed.json] [key=value ...]

1. Reward training (goal: at least 0.8 of the bound). Frames/s of the trainer's own epoch, in fp32:
   ``trex.train_reward``'s ``epoch_pairs`` (drawing the epoch's snippet pairs) and ``train_epoch`` (gathering
   their uint8 frames, forward, Bradley-Terry loss, backward, AdamW and the per-batch bookkeeping), as
   ``train()`` calls them (validation and checkpointing are left out). The bound: the same network's forward,
   backward and AdamW step on the same batches, gathered into tensors beforehand.
   Rounds of the two alternate, so noise from a shared machine hits both.
2. Peak memory (goal: at most 1.5x the demos' uint8 size). A fresh subprocess imports everything, runs
   one warm-up step of a reward net on 8 frames (torch imports ~70 MB of modules for the first optimizer
   and pages in its kernels), notes its RSS, then runs ``trex.train_reward.train`` for a few epochs on N
   demos; its peak RSS above that baseline (Linux VmHWM, reset at the baseline) is divided by the uint8
   size of the N demos' frames. A small N shows the fixed cost (mostly one minibatch's activations, some
   100-200 KB per frame of the batch); with two sizes the marginal bytes per demo byte are reported too (1.0 =
   the frames are held once, as uint8).
3. Demo generation. Frames/s of ``trex.generate_demos``' rollout path (``play_demos``: one vector env whose
   rows are set to each job's level, one batched policy forward per step, chunk by chunk), against the policy's
   bare inference (``agent.act`` on random uint8 frames) on full batches (each chunk's size) and the same
   number of calls, chunk by chunk; ``generate()`` end to end (plus compressing and writing the demos)
   --gen-repeats times, each against the bare inference rate on full batches of ``num_envs`` timed for a
   second just before and just after it (the median ratio is the figure); and the rate of ``save_demo``
   (compressing and writing) on the same demos.
   The rollout keeps stepping finished episodes until the chunk's longest ends; ``batch_use`` is the
   fraction of policy rows that became demo frames.

Without --demos, parts 1 and 2 use demos generated here from every checkpoint of the series; without
--checkpoints, part 3 uses the checkpoints the demo folder was played from, or a tiny PPO run made here.
Writes the JSON to --out and a markdown table beside it. Machines are shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import UserError, main_guard
from procgen_common.config import load_config, read_yaml
from procgen_common.env import OBS_SHAPE, ProcgenVecEnv, one_level_config
from procgen_common.runs import pick_device, use_threads
from trex.demos import SUFFIX, DemoSet, read_index, save_demo
from trex.generate_demos import Config as DemoConfig
from trex.generate_demos import DemoJob, checkpoint_files, choose_levels, generate, load_demonstrator, play_demos
from trex.pairs import snippet_frame_indices
from trex.reward_net import RewardNet
from trex.train_reward import Config as RewardConfig
from trex.train_reward import epoch_pairs, select_training_demos, train, train_epoch

FRAME_BYTES = int(np.prod(OBS_SHAPE))
# A PPO run of a few seconds, for a checkpoint series when none is given (the policies barely play).
TINY_PPO = [
    "env.num_envs=4",
    "env.num_threads=0",
    "ppo.num_steps=32",
    "ppo.num_epochs=1",
    "ppo.num_minibatches=2",
    "model.arch=nature",
    "model.hidden_size=32",
    "train.total_steps=256",
    "train.num_checkpoints=3",
    "train.device=cpu",
    "eval.every_steps=0",
    "log.tensorboard=false",
]


# ---------------------------------------------------------------- 1. reward training against its bound


def reward_training_speed(config: RewardConfig, rounds: int, bare_batches: int) -> dict:
    """Frames/s of the trainer's step path and of the bare network on the same batches (see the docstring)."""
    data, t = config.data, config.train
    device = torch.device("cpu")
    demos = select_training_demos(DemoSet.open(data.demos), data, t.seed)
    torch.manual_seed(t.seed)
    net = RewardNet(config.reward_net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    bare_net = RewardNet(config.reward_net)
    bare_optimizer = torch.optim.AdamW(bare_net.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)

    totals = dict.fromkeys(["trainer_frames", "trainer_s", "draw_pairs_s", "bare_frames", "bare_s", "gather_s"], 0.0)
    for epoch in range(rounds + 1):  # epoch 0 warms both up and is not counted
        timed = epoch > 0
        # The trainer's path: one epoch of train()'s loop.
        start = time.perf_counter()
        pairs = epoch_pairs(demos, data, t.seed, epoch)
        drawn = time.perf_counter()
        train_epoch(net, optimizer, demos.frames, pairs, config, epoch, device, contextlib.nullcontext())
        end = time.perf_counter()
        if timed:
            totals["trainer_frames"] += int(pairs.length_a.sum() + pairs.length_b.sum())
            totals["trainer_s"] += end - start
            totals["draw_pairs_s"] += drawn - start

        # The bound: the first batches of the same epoch, their frames gathered beforehand (timed apart).
        start = time.perf_counter()
        gathered = [gather(demos.frames, pairs[k * t.batch_size : (k + 1) * t.batch_size]) for k in range(bare_batches)]
        gathered = [g for g in gathered if len(g[0])]
        gathered_at = time.perf_counter()
        for obs, actions in gathered:
            bare_optimizer.zero_grad(set_to_none=True)
            bare_net(obs, actions).mean().backward()
            bare_optimizer.step()
        end = time.perf_counter()
        if timed:
            totals["bare_frames"] += sum(len(obs) for obs, _ in gathered)
            totals["bare_s"] += end - gathered_at
            totals["gather_s"] += gathered_at - start

    trainer = totals["trainer_frames"] / totals["trainer_s"]
    bare = totals["bare_frames"] / totals["bare_s"]
    return {
        "settings": (
            f"{config.reward_net.arch} net x{config.reward_net.ensemble_size}, {len(demos.train)} training demos, "
            f"{data.pairs_per_epoch} pairs/epoch, batch {t.batch_size} pairs, snippets {data.min_len}-{data.max_len} "
            f"frames (stride {data.stride}), {rounds} timed epochs"
        ),
        "trainer_frames_per_s": trainer,
        "bare_frames_per_s": bare,
        "ratio": trainer / bare,
        "mean_frames_per_batch": totals["trainer_frames"] / (rounds * -(-data.pairs_per_epoch // t.batch_size)),
        "draw_pairs_s_per_epoch": totals["draw_pairs_s"] / rounds,
        "gather_frames_per_s": totals["bare_frames"] / totals["gather_s"],
    }


def gather(frames, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 frames and actions of both snippets of every pair of ``batch``, as the trainer gathers them."""
    clips = ((batch.demo_a, batch.start_a, batch.length_a), (batch.demo_b, batch.start_b, batch.length_b))
    rows = np.concatenate([snippet_frame_indices(frames.offsets, *clip, batch.stride)[0] for clip in clips])
    return torch.from_numpy(frames.frames[rows]), torch.from_numpy(frames.actions[rows])


# ---------------------------------------------------------------- 2. peak memory in a fresh process


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process (VmHWM), in bytes.

    Not ``ru_maxrss``: for a child process that also counts the parent's pages at fork time.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def memory_child(spec: dict) -> dict:
    """Run in a fresh process: the RSS after imports and a warm-up, then train(); the peak above that."""
    config = use_threads(load_config(RewardConfig, spec["config"], spec["overrides"]))
    # A warm-up step on 8 frames: the first optimizer imports ~70 MB of torch modules lazily, and the first
    # forward and backward page in kernels; neither is memory for data.
    net = RewardNet(config.reward_net)
    net(torch.zeros(8, *OBS_SHAPE, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64)).sum().backward()
    torch.optim.AdamW(net.parameters()).step()
    del net
    baseline = current_rss()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    train(config)
    peak = peak_rss()
    run_dir = Path(config.run.dir)
    demo_ids = set(torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["demo_ids"])
    lengths = [info.length for info in read_index(config.data.demos) if info.demo_id in demo_ids]
    demo_bytes = sum(lengths) * FRAME_BYTES
    with (run_dir / "progress.csv").open() as f:
        logged = [float(row["time/frames_per_s"]) for row in csv.DictReader(f)]
    return {
        "num_demos": len(lengths),
        "frames": sum(lengths),
        "demo_bytes": demo_bytes,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_increase": peak - baseline,
        "ratio": (peak - baseline) / demo_bytes,
        "trainer_logged_frames_per_s": float(np.mean(logged[1:] or logged)),
    }


def peak_memory(
    config_path: str | None, overrides: list[str], num_demos: int | None, epochs: int, workdir: Path
) -> dict:
    """``memory_child`` in a subprocess of this script, training on ``num_demos`` demos (None = all)."""
    spec = {
        "config": config_path,
        "overrides": [
            *overrides,
            f"data.num_demos={'null' if num_demos is None else num_demos}",
            f"train.epochs={epochs}",
            "train.patience=0",
            "eval.at_end=false",
            "log.tensorboard=false",
            f"run.dir={workdir / ('memory-' + str(num_demos or 'all'))}",
        ],
    }
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"the memory run on {num_demos or 'all'} demos failed: {last}", file=sys.stderr)
        return {"num_demos": num_demos or "all", "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- 3. demo generation against inference


class CountingAgent:
    """Passes ``act`` through to an agent, counting the calls (each is one batched forward pass)."""

    def __init__(self, agent):
        self.agent = agent
        self.calls = 0

    def initial_state(self, num_envs: int):
        return self.agent.initial_state(num_envs)

    def act(self, obs, state, episode_start, deterministic: bool = False):
        self.calls += 1
        return self.agent.act(obs, state, episode_start, deterministic)


def generation_speed(config: DemoConfig, repeats: int, play_threads: list[int]) -> dict:
    """Rollout-path and end-to-end frames/s of ``config`` (one checkpoint) against bare policy inference; end to
    end once with each of ``play_threads`` in every repeat, side by side."""
    (path,) = checkpoint_files(config.checkpoint_entries)
    device = pick_device(config.device)
    agent, _, _, env_config = load_demonstrator(path, config, device)
    jobs = [
        DemoJob("train", s, e, epsilon=epsilon)
        for epsilon in config.epsilons
        for s in choose_levels(config, env_config)["train"]
        for e in range(config.episodes_per_level)
    ]
    rng = np.random.default_rng(config.seed)
    rollout = {"frames": 0, "s": 0.0}
    bare = {"rows": 0, "s": 0.0}
    levels = sorted({job.level_seed for job in jobs})
    ProcgenVecEnv(one_level_config(env_config, levels[0]), num_envs=1).close()  # loads Procgen's library
    warm_up = rng.integers(0, 256, (config.num_envs, *OBS_SHAPE), dtype=np.uint8)
    agent.act(warm_up, None, np.ones(config.num_envs, dtype=bool), config.deterministic)
    for first in range(0, len(jobs), config.num_envs):
        chunk = jobs[first : first + config.num_envs]
        counting = CountingAgent(agent)
        start = time.perf_counter()
        for episode in play_demos(
            lambda _, agent=counting: agent, env_config, chunk, len(chunk), config.max_length, config.deterministic, rng
        ):
            rollout["frames"] += len(episode.actions)
        rollout["s"] += time.perf_counter() - start

        frames = rng.integers(0, 256, (len(chunk), *OBS_SHAPE), dtype=np.uint8)
        episode_start = np.zeros(len(chunk), dtype=bool)
        start = time.perf_counter()
        for _ in range(counting.calls):
            agent.act(frames, None, episode_start, config.deterministic)
        bare["s"] += time.perf_counter() - start
        bare["rows"] += counting.calls * len(chunk)

    # End to end, several times, each beside the bare rate measured just before and just after it: this machine's
    # speed drifts by up to 2x within minutes, so a bound measured apart from the run it bounds is noise.
    runs: dict[int, list[dict]] = {count: [] for count in play_threads}
    for repeat in range(repeats):
        for count in play_threads:
            before = bare_rate(agent, config.num_envs, config.deterministic)
            start = time.perf_counter()
            out = generate(replace(config, out_dir=f"{config.out_dir}-{count}-{repeat}", play_threads=count))
            end_to_end_s = time.perf_counter() - start
            after = bare_rate(agent, config.num_envs, config.deterministic)
            frames_per_s = sum(info.length for info in read_index(out)) / end_to_end_s
            run = {"frames_per_s": frames_per_s, "bare_before": before, "bare_after": after}
            runs[count].append({**run, "ratio": frames_per_s / ((before + after) / 2)})
    end_to_end_frames = sum(info.length for info in read_index(out))
    # How much of that is compressing and writing: the same demos saved again.
    demo_set = DemoSet.open(out)
    demos = [demo_set.load(info) for info in demo_set.infos]
    start = time.perf_counter()
    for demo in demos:
        save_demo(out / f"resaved{SUFFIX}", demo)
    save_s = time.perf_counter() - start
    rollout_bound = bare["rows"] / bare["s"]
    return {
        "settings": (
            f"{path.name}: {len(jobs)} episodes ({config.num_train_levels} levels x {config.episodes_per_level}), "
            f"{config.num_envs} per batch, max length {config.max_length}"
        ),
        "rollout_frames_per_s": rollout["frames"] / rollout["s"],
        "rollout_bare_inference_frames_per_s": rollout_bound,
        "rollout_ratio": rollout["frames"] / rollout["s"] / rollout_bound,
        "batch_use": rollout["frames"] / bare["rows"],
        "end_to_end": [
            {
                "play_threads": count,
                "runs": count_runs,
                "frames_per_s": float(np.median([r["frames_per_s"] for r in count_runs])),
                "bare_inference_frames_per_s": float(
                    np.median([(r["bare_before"] + r["bare_after"]) / 2 for r in count_runs])
                ),
                "ratio": float(np.median([r["ratio"] for r in count_runs])),
            }
            for count, count_runs in runs.items()
        ],
        "save_frames_per_s": end_to_end_frames / save_s,
        "rollout_frames": rollout["frames"],
    }


def bare_rate(agent, batch: int, deterministic: bool, seconds: float = 1.0) -> float:
    """Frames/s of ``agent.act`` alone on full batches of random frames, timed for about ``seconds``."""
    frames = np.random.default_rng(0).integers(0, 256, (batch, *OBS_SHAPE), dtype=np.uint8)
    episode_start = np.zeros(batch, dtype=bool)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        agent.act(frames, None, episode_start, deterministic)
        calls += 1
    return calls * batch / elapsed


# ---------------------------------------------------------------- the run


def series_checkpoints(args: argparse.Namespace, workdir: Path) -> list[Path]:
    """The checkpoint series: --checkpoints, else the demo folder's own, else a tiny PPO run made now."""
    if args.checkpoints:
        return checkpoint_files([args.checkpoints])
    if args.demos and (Path(args.demos) / "config.yaml").is_file():
        entries = read_yaml(Path(args.demos) / "config.yaml").get("checkpoints") or []
        entries = [entries] if isinstance(entries, str) else entries
        if entries and all(Path(e).exists() for e in entries):
            return checkpoint_files(entries)
    from baseline_agent.train import Config as PPOConfig
    from baseline_agent.train import train as train_ppo

    print("no checkpoints given: training a tiny PPO run for them", file=sys.stderr)
    overrides = [
        f"env.game={args.game}",
        *TINY_PPO,
        f"train.torch_threads={args.threads}",
        f"run.dir={workdir / 'ppo'}",
    ]
    run_dir = train_ppo(load_config(PPOConfig, None, overrides))
    return checkpoint_files([str(run_dir)])


def demo_config(checkpoints: list[Path], args: argparse.Namespace, out_dir: Path) -> DemoConfig:
    listed = "[" + ",".join(str(c) for c in checkpoints) + "]"
    return load_config(
        DemoConfig,
        args.demo_config,
        [
            f"checkpoints={listed}",
            f"num_train_levels={args.gen_levels}",
            "num_test_levels=0",
            f"episodes_per_level={args.gen_episodes}",
            f"out_dir={out_dir}",
            "device=cpu",
            f"torch_threads={args.threads}",
        ],
    )


def table(results: dict) -> list[str]:
    g = results["generation"]
    lines = ["| measure | this suite | bound | ratio | goal |", "|---|---|---|---|---|"]
    if "reward_training" in results:
        r = results["reward_training"]
        lines.append(
            f"| reward training, frames/s | {r['trainer_frames_per_s']:.0f} | {r['bare_frames_per_s']:.0f} "
            f"(bare fwd+bwd) | {r['ratio']:.2f} | >= 0.8 |"
        )
    for m in results.get("memory", []):
        if "error" in m:
            lines.append(f"| peak memory, {m['num_demos']} demos | failed: {m['error']} | | | |")
            continue
        lines.append(
            f"| peak memory, {m['num_demos']} demos ({m['frames']} frames) | +{m['peak_increase'] / 2**20:.0f} MiB | "
            f"{m['demo_bytes'] / 2**20:.0f} MiB uint8 | {m['ratio']:.2f} | <= 1.5 |"
        )
    if "marginal_bytes_per_demo_byte" in results:
        lines.append(f"| memory per extra demo byte | | | {results['marginal_bytes_per_demo_byte']:.2f} | ~1 |")
    lines += [
        f"| demo rollout, frames/s | {g['rollout_frames_per_s']:.0f} | {g['rollout_bare_inference_frames_per_s']:.0f} "
        f"(bare inference) | {g['rollout_ratio']:.2f} | |",
        *(
            f"| demo generation end to end, play_threads={e['play_threads']}, frames/s | {e['frames_per_s']:.0f} | "
            f"{e['bare_inference_frames_per_s']:.0f} | {e['ratio']:.2f} "
            f"({', '.join(f'{r:.2f}' for r in sorted(run['ratio'] for run in e['runs']))}) | >= 0.5 |"
            for e in g["end_to_end"]
        ),
        f"| saving demos (compress + write), frames/s | {g['save_frames_per_s']:.0f} | | | |",
    ]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demos", help="demo folder to train on (default: demos generated here from the series)")
    parser.add_argument(
        "--checkpoints",
        help="demonstrator run folder or checkpoint folder (default: the demo folder's own, else a tiny run)",
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
        "--rounds", type=int, default=3, help="timed training epochs, each beside a bare round (default 3)"
    )
    parser.add_argument("--bare-batches", type=int, default=16, help="batches per bare round (default 16)")
    parser.add_argument(
        "--memory-demos",
        type=int,
        nargs="+",
        default=[10, 0],
        help="demo counts for the memory runs, 0 = all (default 10 0)",
    )
    parser.add_argument("--memory-epochs", type=int, default=2, help="epochs of each memory run (default 2)")
    parser.add_argument("--gen-levels", type=int, default=16, help="training levels played in part 3 (default 16)")
    parser.add_argument(
        "--gen-episodes", type=int, default=2, help="episodes per level and checkpoint in part 3 (default 2)"
    )
    parser.add_argument(
        "--gen-repeats",
        type=int,
        default=3,
        help="end-to-end generation runs in part 3, each between two bare-inference timings; the median ratio "
        "is reported (default 3)",
    )
    parser.add_argument(
        "--play-threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="play_threads settings timed end to end side by side in part 3, each in every repeat (default 1 2)",
    )
    parser.add_argument(
        "--game", default="starpilot", help="game of the tiny PPO run made without checkpoints (default starpilot)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: one per core)"
    )
    parser.add_argument(
        "--out", default="bench/results/trex_speed.json", help="JSON results file (a .md table beside it)"
    )
    parser.add_argument(
        "--generation-only", action="store_true", help="run part 3 (demo generation) alone, e.g. with --checkpoints"
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="reward trainer config overrides")
    return parser.parse_args(argv)


@main_guard
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return {}
    if args.gen_repeats < 1:
        raise UserError(f"--gen-repeats: {args.gen_repeats}; give at least 1 end-to-end run")
    if min(args.play_threads) < 1:
        raise UserError(f"--play-threads: {min(args.play_threads)}; each setting must be at least 1 thread")
    torch.set_num_threads(args.threads)
    results: dict = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"cuda={torch.cuda.is_available()}",
        "torch": torch.__version__,
        "threads": args.threads,
        "command": " ".join(["python bench/trex_speed.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    with tempfile.TemporaryDirectory(prefix="trex_speed-") as tmp:
        workdir = Path(tmp)
        series = series_checkpoints(args, workdir)
        results["generation"] = generation_speed(
            demo_config(series[-1:], args, workdir / "generation"), args.gen_repeats, args.play_threads
        )
        print(f"demo rollout: {results['generation']['rollout_ratio']:.2f} of bare inference", file=sys.stderr)
        if args.generation_only:
            return write_results(results, args.out)
        demos = args.demos or str(generate(demo_config(series, args, workdir / "demos")))
        overrides = [*args.overrides, f"data.demos={demos}", "train.device=cpu", f"train.torch_threads={args.threads}"]
        config = load_config(RewardConfig, args.config, overrides)
        results["demos"] = demos
        results["reward_training"] = reward_training_speed(config, args.rounds, args.bare_batches)
        print(f"reward training: {results['reward_training']['ratio']:.2f} of bare fwd+bwd", file=sys.stderr)
        available = len(DemoSet.open(demos).split("train"))
        sizes = sorted({n if 0 < n < available else None for n in args.memory_demos}, key=lambda n: n or available)
        results["memory"] = [peak_memory(args.config, overrides, n, args.memory_epochs, workdir) for n in sizes]
        measured = [m for m in results["memory"] if "error" not in m]
        if len(measured) >= 2:
            small, large = measured[0], measured[-1]
            extra = large["demo_bytes"] - small["demo_bytes"]
            if extra > 0:
                results["marginal_bytes_per_demo_byte"] = (large["peak_increase"] - small["peak_increase"]) / extra
    return write_results(results, args.out)


def write_results(results: dict, out: str) -> dict:
    lines = table(results)
    print("\n".join(lines))
    out = Path(out)
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
