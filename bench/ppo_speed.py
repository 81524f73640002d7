"""PPO throughput: this suite's PPO against stable-baselines3's PPO, side by side in one run.

    python bench/ppo_speed.py [--updates 4] [--game starpilot] [--impala] [--out bench/results/ppo_speed.json]

Both train the Nature CNN on the same Procgen env (64 envs x 256 steps, 3 epochs, minibatch 2048,
no evaluation or TensorBoard), so the ratio compares the training loops alone; this PPO is timed
in fp32 (as SB3) and with train.precision=bf16. The first
update of each is warm-up and not timed. Also reported: raw env steps/s with random actions, and
with --impala this PPO's IMPALA steps/s against its compute bound (the network's own forward rate
for the rollout plus forward+backward rate for the epochs, with no environment or bookkeeping).
Machines are shared and noisy, so compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from baseline_agent.train import Config, train
from procgen_common.checkpoint import atomic_write_text
from procgen_common.config import load_config
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig, ProcgenVecEnv
from procgen_common.networks import ActorCritic, ModelConfig

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCH = 64, 256, 3, 2048
BATCH = NUM_ENVS * NUM_STEPS


def env_sps(game: str, steps: int = 500) -> float:
    env = ProcgenVecEnv(EnvConfig(game=game, num_envs=NUM_ENVS))
    env.reset()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, NUM_ACTIONS, NUM_ENVS))
    elapsed = time.perf_counter() - start
    env.close()
    return steps * NUM_ENVS / elapsed


def ours_sps(game: str, arch: str, updates: int, workdir: Path, precision: str = "fp32") -> float:
    overrides = [
        f"env.game={game}",
        f"env.num_envs={NUM_ENVS}",
        f"model.arch={arch}",
        f"model.hidden_size={512 if arch == 'nature' else 256}",
        f"ppo.num_steps={NUM_STEPS}",
        f"ppo.num_epochs={EPOCHS}",
        f"ppo.num_minibatches={BATCH // MINIBATCH}",
        f"train.total_steps={BATCH * (updates + 1)}",
        "train.num_checkpoints=1",
        "eval.every_steps=0",
        "log.tensorboard=false",
        f"train.precision={precision}",
        f"run.dir={workdir / f'ours-{arch}-{precision}'}",
    ]
    with open(train(load_config(Config, None, overrides)) / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["time/elapsed_s"]) - float(first["time/elapsed_s"]))


def sb3_sps(game: str, updates: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class RolloutClock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.starts: list[float] = []

        def _on_rollout_start(self) -> None:
            self.starts.append(time.perf_counter())

        def _on_step(self) -> bool:
            return True

    env = ProcgenVecEnv(EnvConfig(game=game, num_envs=NUM_ENVS))
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=NUM_STEPS,
        batch_size=MINIBATCH,
        n_epochs=EPOCHS,
        learning_rate=5e-4,
        gamma=0.999,
        gae_lambda=0.95,
        clip_range=0.2,
        clip_range_vf=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        device="cpu",
        verbose=0,
    )
    clock = RolloutClock()
    # updates + 2 rollout starts: the first update is warm-up, the last start closes the timing.
    model.learn(total_timesteps=BATCH * (updates + 2), callback=clock)
    env.close()
    return BATCH * (len(clock.starts) - 2) / (clock.starts[-1] - clock.starts[1])


def impala_bound(batch_rollout: int = NUM_ENVS, minibatch: int = MINIBATCH, reps: int = 3) -> dict:
    """Steps/s if PPO did nothing but the IMPALA network's own work for one update (fp32, on the device the
    suite's PPO picks: CUDA when there is one)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    net = ActorCritic(ModelConfig(arch="impala"), OBS_SHAPE, NUM_ACTIONS).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    frames = torch.randint(0, 256, (minibatch, *OBS_SHAPE), dtype=torch.uint8, device=device)
    with torch.no_grad():
        for _ in range(2):
            net(frames[:batch_rollout])
        sync()
        start = time.perf_counter()
        for _ in range(reps * 10):
            net(frames[:batch_rollout])
        sync()
        forward = (time.perf_counter() - start) / (reps * 10)
    for _ in range(2):
        logits, values = net(frames)
        (logits.mean() + values.mean()).backward()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        opt.zero_grad()
        logits, values = net(frames)
        (logits.mean() + values.mean()).backward()
        opt.step()
    sync()
    train_step = (time.perf_counter() - start) / reps
    update_time = NUM_STEPS * forward + EPOCHS * (BATCH // minibatch) * train_step
    return {
        "device": device.type,
        "forward_samples_per_s": batch_rollout / forward,
        "train_samples_per_s": minibatch / train_step,
        "bound_steps_per_s": BATCH / update_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=4, help="timed PPO updates of 16,384 steps each (default 4)")
    parser.add_argument("--game", default="starpilot", help="Procgen game (default starpilot)")
    parser.add_argument("--impala", action="store_true", help="also measure this PPO with IMPALA and its bound")
    parser.add_argument("--skip-sb3", action="store_true", help="skip SB3 (e.g. on a GPU machine for IMPALA only)")
    parser.add_argument(
        "--skip-bf16",
        action="store_true",
        help="skip the bf16 runs (on a CPU without native bf16, e.g. AVX2 only, one update takes minutes)",
    )
    parser.add_argument("--out", default="bench/results/ppo_speed.json", help="JSON results file")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    results: dict = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"cuda={torch.cuda.is_available()}",
        "torch": torch.__version__,
        "settings": f"{args.game} easy, {NUM_ENVS} envs x {NUM_STEPS} steps, {EPOCHS} epochs, minibatch {MINIBATCH}",
    }
    results["env_random_sps"] = env_sps(args.game)
    print(f"env, random actions:     {results['env_random_sps']:8.0f} steps/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results["ours_nature_sps"] = ours_sps(args.game, "nature", args.updates, Path(tmp))
        print(f"this PPO, Nature, fp32:  {results['ours_nature_sps']:8.0f} steps/s", flush=True)
        if not args.skip_bf16:
            results["ours_nature_bf16_sps"] = ours_sps(args.game, "nature", args.updates, Path(tmp), "bf16")
            print(f"this PPO, Nature, bf16:  {results['ours_nature_bf16_sps']:8.0f} steps/s", flush=True)
        if not args.skip_sb3:
            results["sb3_nature_sps"] = sb3_sps(args.game, args.updates)
            results["ratio_ours_over_sb3"] = results["ours_nature_sps"] / results["sb3_nature_sps"]
            print(f"SB3 PPO, Nature, fp32:   {results['sb3_nature_sps']:8.0f} steps/s", flush=True)
            print(f"ratio fp32 (this / SB3): {results['ratio_ours_over_sb3']:8.2f}x", flush=True)
            if not args.skip_bf16:
                results["ratio_ours_bf16_over_sb3"] = results["ours_nature_bf16_sps"] / results["sb3_nature_sps"]
                print(f"ratio bf16 (this / SB3): {results['ratio_ours_bf16_over_sb3']:8.2f}x", flush=True)
        if args.impala:
            # On a GPU an IMPALA update takes about a second, so it gets as many as the Nature runs; on a CPU half.
            impala_updates = args.updates if torch.cuda.is_available() else max(1, args.updates // 2)
            results["ours_impala_sps"] = ours_sps(args.game, "impala", impala_updates, Path(tmp))
            if not args.skip_bf16:
                results["ours_impala_bf16_sps"] = ours_sps(args.game, "impala", impala_updates, Path(tmp), "bf16")
            bound = results["impala_bound"] = impala_bound()
            results["impala_fraction_of_bound"] = results["ours_impala_sps"] / bound["bound_steps_per_s"]
            print(f"this PPO, IMPALA, fp32:  {results['ours_impala_sps']:8.0f} steps/s", flush=True)
            if not args.skip_bf16:
                print(f"this PPO, IMPALA, bf16:  {results['ours_impala_bf16_sps']:8.0f} steps/s", flush=True)
            print(
                f"IMPALA fp32 bound ({bound['device']}): {bound['bound_steps_per_s']:8.0f} steps/s "
                f"({results['impala_fraction_of_bound']:.0%} reached)",
                flush=True,
            )
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
