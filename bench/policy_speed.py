"""Agent throughput: learned against true reward, GRU PPO against sb3-contrib's RecurrentPPO, Rainbow
against SB3's DQN and QR-DQN, each pair side by side in one run.

    python bench/policy_speed.py [--parts learned gru rainbow] [--updates 3] [--rainbow-steps 16384]
        [--reward-model PATH] [--out bench/results/policy_speed.json]

- **learned**: this suite's PPO (policies.train, agent.algo=ppo) on the game's reward and on a learned reward,
  with the same settings (Nature CNN, bf16, 64 envs x 256 steps, 3 epochs, minibatch 2048). The reward model is
  --reward-model, or an untrained T-REX network of the default shape (speed does not depend on its weights).
  Goal: learned / true >= 0.9.
- **gru**: this suite's ppo_gru (GRU 256 on the Nature CNN's 512 features, 8 minibatches of 8 whole
  environments) against sb3-contrib's RecurrentPPO with CnnLstmPolicy (one shared LSTM of 256 on the same
  encoder, minibatch 2048 steps), both fp32 and with the same rollout and epochs; this ppo_gru in bf16 beside.
- **rainbow**: this suite's Rainbow (C51, double Q, dueling, noisy, prioritized, 3-step) and the same trainer
  with every component off (plain DQN), against SB3's DQN and sb3-contrib's QR-DQN, all at the same replay
  ratio (2 replayed transitions per collected one, batch 256, 64 envs), Nature CNN, fp32; timed after the
  learning starts.

The first update of each PPO run is warm-up and not timed. Machines are shared and noisy: compare the ratios.
Needs sb3-contrib (``pip install -e .[bench]``).
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
from fractions import Fraction
from pathlib import Path

import torch

from policies.train import Config, train
from procgen_common.checkpoint import atomic_write_text
from procgen_common.config import load_config
from procgen_common.env import EnvConfig, ProcgenVecEnv
from trex.reward_net import RewardNetConfig, save_untrained_reward_net

GAME = "starpilot"
NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCH = 64, 256, 3, 2048
BATCH = NUM_ENVS * NUM_STEPS
# Rainbow timing: replay ratio, batch and buffer (smaller than the CPU preset's 250k: speed does not depend on it).
REPLAY_RATIO, RAINBOW_BATCH, BUFFER, LEARNING_STARTS, LOG_EVERY = 2, 256, 50_000, 4096, 16


def progress_sps(run_dir: Path, skip_rows: int = 1) -> float:
    """Steps/s between the ``skip_rows``-th row of progress.csv and the last (earlier rows are warm-up)."""
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[skip_rows - 1], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["time/elapsed_s"]) - float(first["time/elapsed_s"]))


def ours(workdir: Path, name: str, overrides: list[str]) -> Path:
    base = [
        f"env.game={GAME}",
        f"env.num_envs={NUM_ENVS}",
        "model.arch=nature",
        "model.hidden_size=512",
        f"ppo.num_steps={NUM_STEPS}",
        f"ppo.num_epochs={EPOCHS}",
        f"ppo.num_minibatches={BATCH // MINIBATCH}",
        "train.num_checkpoints=1",
        "eval.every_steps=0",
        "log.tensorboard=false",
        f"run.dir={workdir / name}",
    ]
    return train(load_config(Config, None, base + overrides))


def part_learned(args, workdir: Path) -> dict:
    model = args.reward_model or str(save_untrained_reward_net(workdir / "reward_net.pt", RewardNetConfig(), GAME))
    common = ["agent.algo=ppo", "train.precision=bf16", f"train.total_steps={BATCH * (args.updates + 1)}"]
    true = progress_sps(ours(workdir, "ppo-true", common))
    learned = progress_sps(ours(workdir, "ppo-learned", [*common, "reward.source=learned", f"reward.model={model}"]))
    out = {"reward_model": args.reward_model or "untrained, default shape", "true_sps": true, "learned_sps": learned}
    out["ratio_learned_over_true"] = learned / true
    print(f"PPO true reward {true:.0f} steps/s, learned {learned:.0f}: ratio {learned / true:.2f}", flush=True)
    return out


def sb3_recurrent_ppo_sps(updates: int) -> float:
    from sb3_contrib import RecurrentPPO

    env = ProcgenVecEnv(EnvConfig(game=GAME, num_envs=NUM_ENVS))
    model = RecurrentPPO(
        "CnnLstmPolicy",
        env,
        n_steps=NUM_STEPS,
        batch_size=MINIBATCH,
        n_epochs=EPOCHS,
        learning_rate=5e-4,
        gamma=0.999,
        ent_coef=0.01,
        policy_kwargs={"lstm_hidden_size": 256, "shared_lstm": True, "enable_critic_lstm": False},
        device="cpu",
        verbose=0,
    )
    clock = StepClock(0)
    # updates + 2 rollout starts: the first update is warm-up, the last start closes the timing.
    model.learn(total_timesteps=BATCH * (updates + 2), callback=clock.callback())
    env.close()
    return BATCH * (len(clock.rollout_starts) - 2) / (clock.rollout_starts[-1] - clock.rollout_starts[1])


def part_gru(args, workdir: Path) -> dict:
    common = ["agent.algo=ppo_gru", "gru.hidden_size=256", f"train.total_steps={BATCH * (args.updates + 1)}"]
    ours_fp32 = progress_sps(ours(workdir, "gru-fp32", [*common, "train.precision=fp32"]))
    ours_bf16 = progress_sps(ours(workdir, "gru-bf16", [*common, "train.precision=bf16"]))
    sb3 = sb3_recurrent_ppo_sps(args.updates)
    out = {"ours_fp32_sps": ours_fp32, "ours_bf16_sps": ours_bf16, "sb3_recurrent_ppo_sps": sb3}
    out["ratio_fp32"], out["ratio_bf16"] = ours_fp32 / sb3, ours_bf16 / sb3
    print(
        f"ppo_gru fp32 {ours_fp32:.0f} steps/s, bf16 {ours_bf16:.0f}; RecurrentPPO (LSTM) {sb3:.0f}: "
        f"ratios {out['ratio_fp32']:.2f} / {out['ratio_bf16']:.2f}",
        flush=True,
    )
    return out


class StepClock:
    """Times an SB3 algorithm: its environment steps from the first at or after ``start_at``, and the start of
    every rollout (on-policy algorithms)."""

    def __init__(self, start_at: int):
        self.start_at = start_at
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None
        self.rollout_starts: list[float] = []

    def callback(self):
        from stable_baselines3.common.callbacks import BaseCallback

        clock = self

        class Clock(BaseCallback):
            def _on_rollout_start(self) -> None:
                clock.rollout_starts.append(time.perf_counter())

            def _on_step(self) -> bool:
                now = (time.perf_counter(), self.num_timesteps)
                if clock.start is None and self.num_timesteps >= clock.start_at:
                    clock.start = now
                clock.end = now
                return True

        return Clock()

    def sps(self) -> float:
        return (self.end[1] - self.start[1]) / (self.end[0] - self.start[0])


def sb3_dqn_sps(kind: str, total: int) -> float:
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN

    # gradient_steps / train_freq updates of RAINBOW_BATCH per vector step of NUM_ENVS transitions.
    per_step = Fraction(REPLAY_RATIO * NUM_ENVS, RAINBOW_BATCH)
    env = ProcgenVecEnv(EnvConfig(game=GAME, num_envs=NUM_ENVS))
    algo = DQN if kind == "dqn" else QRDQN
    model = algo(
        "CnnPolicy",
        env,
        buffer_size=BUFFER,
        learning_starts=LEARNING_STARTS,
        batch_size=RAINBOW_BATCH,
        train_freq=(per_step.denominator, "step"),
        gradient_steps=per_step.numerator,
        target_update_interval=max(1, 32_000 // NUM_ENVS),
        learning_rate=2.5e-4,
        gamma=0.99,
        device="cpu",
        verbose=0,
    )
    clock = StepClock(LEARNING_STARTS + 8 * NUM_ENVS)
    model.learn(total_timesteps=total, callback=clock.callback())
    env.close()
    return clock.sps()


def part_rainbow(args, workdir: Path) -> dict:
    total = LEARNING_STARTS + args.rainbow_steps
    common = [
        "agent.algo=rainbow",
        f"rainbow.buffer_size={BUFFER}",
        f"rainbow.batch_size={RAINBOW_BATCH}",
        f"rainbow.replay_ratio={REPLAY_RATIO}",
        f"rainbow.learning_starts={LEARNING_STARTS}",
        f"rainbow.log_every={LOG_EVERY}",
        f"train.total_steps={total}",
        "train.precision=fp32",
    ]
    plain = [
        f"rainbow.{k}=false"
        for k in ("distributional", "double_q", "dueling", "noisy", "prioritized")  # target network stays, as SB3's
    ]
    # Rows of progress.csv from the first one after learning starts (+1 row of warm-up).
    skip = LEARNING_STARTS // (NUM_ENVS * LOG_EVERY) + 2
    out = {
        "settings": f"replay ratio {REPLAY_RATIO}, batch {RAINBOW_BATCH}, {NUM_ENVS} envs, buffer {BUFFER}, fp32, "
        f"timed over ~{args.rainbow_steps} steps after {LEARNING_STARTS} learning_starts",
        "ours_rainbow_sps": progress_sps(ours(workdir, "rainbow", common), skip),
        "ours_plain_dqn_sps": progress_sps(
            ours(workdir, "rainbow-plain", [*common, *plain, "rainbow.epsilon_decay_steps=1000"]), skip
        ),
        "sb3_dqn_sps": sb3_dqn_sps("dqn", total),
        "sb3_qrdqn_sps": sb3_dqn_sps("qrdqn", total),
    }
    out["ratio_rainbow_over_qrdqn"] = out["ours_rainbow_sps"] / out["sb3_qrdqn_sps"]
    out["ratio_plain_over_dqn"] = out["ours_plain_dqn_sps"] / out["sb3_dqn_sps"]
    out["ratio_rainbow_over_dqn"] = out["ours_rainbow_sps"] / out["sb3_dqn_sps"]
    print(
        f"Rainbow {out['ours_rainbow_sps']:.0f} steps/s, plain DQN {out['ours_plain_dqn_sps']:.0f}; SB3 DQN "
        f"{out['sb3_dqn_sps']:.0f}, QR-DQN {out['sb3_qrdqn_sps']:.0f}: Rainbow/QR-DQN "
        f"{out['ratio_rainbow_over_qrdqn']:.2f}, plain/DQN {out['ratio_plain_over_dqn']:.2f}",
        flush=True,
    )
    return out


PARTS = {"learned": part_learned, "gru": part_gru, "rainbow": part_rainbow}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="what to measure")
    parser.add_argument("--updates", type=int, default=3, help="timed PPO updates of 16,384 steps (default 3)")
    parser.add_argument(
        "--rainbow-steps", type=int, default=16_384, help="timed Rainbow/DQN steps after learning starts"
    )
    parser.add_argument("--reward-model", help="reward model for the learned part (default: an untrained one)")
    parser.add_argument("--out", default="bench/results/policy_speed.json", help="JSON results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {
        "command": " ".join(["python bench/policy_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"cuda={torch.cuda.is_available()}",
        "torch": torch.__version__,
        "settings": f"{GAME} easy, Nature CNN; PPO: {NUM_ENVS} envs x {NUM_STEPS} steps, {EPOCHS} epochs, "
        f"minibatch {MINIBATCH}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            results[part] = PARTS[part](args, Path(tmp))
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
