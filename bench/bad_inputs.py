"""Bad inputs over every entry point: is each one answered in one line, with nothing lost?

    python bench/bad_inputs.py [--only SUBSTRING] [--jobs N] [--list] [--timeout S] [--workdir DIR] [--out DIR]

Every case runs one command of the suite (``baseline_agent.train``, ``policies.train``, ``trex.generate_demos``,
``trex.train_reward``, ``trex.evaluate_reward``, ``experiments.pipeline``, ``experiments.plot``, ``baseline_agent.zoo``,
``test_policy.py``, ``rec_video.py``) with one bad input: a NaN or infinite number, a value out of range, an unknown
key, the wrong game, a missing path, a file where a folder belongs or the reverse, a path below a file, an unwritable
path (``/proc/...``), a corrupt file (random bytes, a truncated checkpoint, a text file), a file that is not UTF-8, a
YAML key given twice, a device that is not there, an unknown option, or an output folder another job holds
(``procgen_common.runs.FolderLock`` is held on it by this process while the case runs).

A case is answered well ("ok") when the command exits with status 2 within the timeout, its stderr is exactly one
line starting with ``error:`` and holds no ``Traceback``, and every file of its folder of earlier results (a copy of
a small finished run, demo folder, reward run or zoo, where the case has one) still has the same bytes afterwards.
Files that appear there are listed but allowed (e.g. the ``.lock`` a refused job leaves).

The fixtures (tiny PPO and policy runs, a small demo folder played by the zoo's starpilot checkpoints, a tiny reward
run, and the broken files made from them) are built once in the work folder, in about half a minute on 2 cores. Each
case runs in its own empty folder (its working folder too, so a default output path never lands in the repository);
with ``--workdir`` the case folders stay, each with the command's ``stdout.txt`` and ``stderr.txt``. The results go to
``<out>/summary.md`` and ``<out>/summary.json`` (default ``bench/results/bad_inputs``). About 400 cases, 2-5 s each
when answered at once: the whole sweep takes about half an hour on 2 cores with ``--jobs 1`` (longer for every case
that runs into the timeout). The issue's goal: every case ok.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.runs import FolderLock

REPO = Path(__file__).resolve().parent.parent
CLASSES = (
    "nan_inf",
    "bad_value",
    "unknown_key",
    "wrong_game",
    "bad_path_missing",
    "path_is_file",
    "path_is_folder",
    "below_a_file",
    "unwritable",
    "corrupt_file",
    "bad_encoding",
    "duplicate_yaml_key",
    "bad_device",
    "bad_option",
    "folder_in_use",
)
ZOO0_FILE = REPO / "zoo" / "starpilot" / "step_000000000.pt"
ZOO0 = "{repo}/zoo/starpilot/step_000000000.pt"
ZOO_LAST = "{repo}/zoo/starpilot/step_002015232.pt"
HAS_CUDA = torch.cuda.is_available()

# Placeholders in a case's argv: {repo} the repository, {fx} the fixtures folder, {case} the case's own empty folder
# (also its working folder, so that a default output path never lands in the repository), {earlier} the copy of the
# case's folder of earlier results, {train_demo} the demo_id of the first training demo of the valid demo folder (the
# demo broken in bad/demos-truncated and bad/demos-missing-file).


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # <entry point>/<what is wrong>
    klass: str  # one of CLASSES
    argv: tuple[str, ...]  # after `python`, with placeholders
    protect: str | None = None  # fixture folder (relative to {fx}) copied to {earlier}; its bytes must not change
    lock: str | None = None  # hold FolderLock on this folder (a placeholder path) while the case runs

    def __post_init__(self):
        if self.klass not in CLASSES:
            raise ValueError(f"{self.name}: unknown class {self.klass!r}")
        if self.lock and not self.protect:
            raise ValueError(f"{self.name}: a locked case needs a protected folder")

    @property
    def entry(self) -> str:
        return self.argv[1] if self.argv[0] == "-m" else Path(self.argv[0]).name


def maker(prefix: str, command: list[str], base: list[str]):
    """A case factory for one entry point: ``command``, then ``base`` (valid, cheap settings), then the case's own
    arguments (later options and overrides win); ``plain=True`` leaves ``base`` out."""

    def make(slug: str, klass: str, *args: str, protect: str | None = None, lock: str | None = None, plain=False):
        return Case(f"{prefix}/{slug}", klass, (*command, *([] if plain else base), *args), protect, lock)

    return make


AT_EARLIER, RESUME = "run.dir={earlier}", "train.resume=true"
# A PPO run small enough to finish in seconds if a bad input were not caught.
TINY_PPO = [
    "model.arch=nature",
    "env.num_envs=2",
    "env.num_threads=0",
    "ppo.num_steps=8",
    "ppo.num_minibatches=1",
    "ppo.num_epochs=1",
    "train.total_steps=16",
    "train.num_checkpoints=1",
    "eval.every_steps=0",
    "log.tensorboard=false",
    "train.device=cpu",
    "train.torch_threads=1",
]
# TINY_PPO less its ppo.* keys, which policies.train refuses under agent.algo=rainbow ("ppo.num_steps is set but
# agent.algo=rainbow does not use it"): rainbow cases start from these so that each reaches the input it is about.
TINY_NO_PPO = [o for o in TINY_PPO if not o.startswith("ppo.")]
# A Rainbow run as small (no update is made: learning_starts > train.total_steps).
TINY_RAINBOW = [
    *TINY_NO_PPO,
    "rainbow.buffer_size=256",
    "rainbow.batch_size=16",
    "rainbow.learning_starts=32",
    "rainbow.log_every=8",
    "rainbow.target_update_steps=32",
    "rainbow.head_hidden=16",
    "rainbow.num_atoms=11",
]
TINY_DEMOS = [
    f"checkpoints={ZOO0}",
    "num_train_levels=1",
    "num_test_levels=1",
    "max_length=20",
    "num_envs=2",
    "device=cpu",
    "torch_threads=1",
]
# The valid demo folder's settings: 2 zoo checkpoints x (2 training + 2 held-out levels).
VALID_DEMOS = [
    f"checkpoints=[{ZOO0},{ZOO_LAST}]",
    "num_train_levels=2",
    "num_test_levels=2",
    "max_length=60",
    "num_envs=4",
    "device=cpu",
    "torch_threads=1",
]
TINY_REWARD = [
    "data.demos={fx}/valid/demos",
    "train.epochs=1",
    "data.pairs_per_epoch=8",
    "data.val_pairs=4",
    "data.min_len=5",
    "data.max_len=10",
    "data.val_fraction=0.5",
    "train.device=cpu",
    "train.torch_threads=1",
    "log.tensorboard=false",
    "eval.at_end=false",
]


def common_path_cases(make, key: str, what: str) -> list[Case]:
    """An output folder ``key`` that is a file, below a file, unwritable, or held by another job."""
    return [
        make(f"{what}-is-a-file", "path_is_file", f"{key}={{fx}}/bad/file"),
        make(f"{what}-below-a-file", "below_a_file", f"{key}={{fx}}/bad/file/sub"),
        make(f"{what}-in-proc", "unwritable", f"{key}=/proc/bench-bad-inputs"),
        make(f"{what}-in-proc-pid", "unwritable", f"{key}=/proc/1/bench-bad-inputs"),
    ]


def config_file_cases(make, nan_yaml: str, dup: list[str]) -> list[Case]:
    """``-c CONFIG`` that is missing, a folder, not YAML, not UTF-8, not a mapping, with NaN or a duplicate key."""
    cases = [
        make("config-missing", "bad_path_missing", "-c", "{fx}/no-such-config.yaml"),
        make("config-is-a-folder", "path_is_folder", "-c", "{repo}/configs"),
        make("config-below-a-file", "below_a_file", "-c", "{fx}/bad/file/config.yaml"),
        make("config-random-bytes", "bad_encoding", "-c", "{fx}/bad/yaml/random.yaml"),
        make("config-latin1", "bad_encoding", "-c", "{fx}/bad/yaml/latin1.yaml"),
        make("config-utf16", "bad_encoding", "-c", "{fx}/bad/yaml/utf16.yaml"),
        make("config-invalid-yaml", "corrupt_file", "-c", "{fx}/bad/yaml/invalid.yaml"),
        make("config-a-list", "corrupt_file", "-c", "{fx}/bad/yaml/list.yaml"),
        make("config-checkpoint", "corrupt_file", "-c", ZOO0),
        make("config-nan", "nan_inf", "-c", f"{{fx}}/bad/yaml/{nan_yaml}"),
    ]
    cases += [make(f"config-{name}", "duplicate_yaml_key", "-c", f"{{fx}}/bad/yaml/{name}.yaml") for name in dup]
    return cases


def ppo_train_cases() -> list[Case]:
    make = maker("ppo-train", ["-m", "baseline_agent.train"], [*TINY_PPO, "run.dir={case}/run"])
    earlier = {"protect": "valid/run"}
    return [
        make("lr-nan", "nan_inf", "ppo.learning_rate=nan"),
        make("gamma-inf", "nan_inf", "ppo.gamma=inf"),
        make("clip-minus-inf", "nan_inf", "ppo.clip_coef=-inf"),
        make("ent-overflow", "nan_inf", "ppo.ent_coef=1e999"),
        make("steps-nan", "nan_inf", "train.total_steps=nan"),
        make("save-interval-inf-resume", "nan_inf", AT_EARLIER, RESUME, "train.save_interval_minutes=inf", **earlier),
        make("gamma-above-1", "bad_value", "ppo.gamma=1.5"),
        make("num-envs-0", "bad_value", "env.num_envs=0"),
        make("num-envs-negative", "bad_value", "env.num_envs=-4"),
        make("minibatches-not-dividing", "bad_value", "ppo.num_minibatches=3"),
        make("steps-text", "bad_value", "train.total_steps=abc"),
        make("mode-unknown", "bad_value", "env.distribution_mode=medium"),
        make("channels-text", "bad_value", "model.impala_channels=[16,x]"),
        make("checkpoints-0", "bad_value", "train.num_checkpoints=0"),
        make("start-level-negative", "bad_value", "env.start_level=-1"),
        make("test-levels-overlap", "bad_value", "env.test_start_level=10"),
        make("eval-split-unknown", "bad_value", "eval.splits=[nope]", "eval.every_steps=8"),
        make("precision-fp8", "bad_value", "train.precision=fp8"),
        make("resume-maybe", "bad_value", "train.resume=maybe"),
        make("earlier-run-fresh", "bad_value", AT_EARLIER, **earlier),
        make("earlier-run-other-arch", "bad_value", AT_EARLIER, RESUME, "model.arch=impala", **earlier),
        make("earlier-run-lr-nan", "nan_inf", AT_EARLIER, RESUME, "ppo.learning_rate=nan", **earlier),
        make("key-typo", "unknown_key", "ppo.learning_rat=0.001"),
        make("section-typo", "unknown_key", "trian.seed=1"),
        make("key-below-a-value", "unknown_key", "ppo.learning_rate.x=1"),
        make("override-without-equals", "unknown_key", "train.seed"),
        make("override-empty-key", "unknown_key", "=3"),
        make("game-unknown", "wrong_game", "env.game=notagame"),
        make("game-capitalised", "wrong_game", "env.game=StarPilot"),
        *common_path_cases(make, "run.dir", "run-dir"),
        *config_file_cases(make, "nan-ppo.yaml", ["dup-train", "dup-section"]),
        make("resume-corrupt-latest", "corrupt_file", AT_EARLIER, RESUME, protect="bad/run-random-latest"),
        make("resume-truncated-latest", "corrupt_file", AT_EARLIER, RESUME, protect="bad/run-truncated-latest"),
        make("resume-latin1-config", "bad_encoding", AT_EARLIER, RESUME, protect="bad/run-latin1-config"),
        make("resume-dup-config", "duplicate_yaml_key", AT_EARLIER, RESUME, protect="bad/run-dup-config"),
        make("override-dup-mapping", "duplicate_yaml_key", "ppo={gamma: 0.9, gamma: 0.99}"),
        make("device-gpu", "bad_device", "train.device=gpu"),
        make("device-cuda-7", "bad_device", "train.device=cuda:7"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", "train.device=cuda")]),
        make("option-unknown", "bad_option", "--frobnicate"),
        make("option-c-without-file", "bad_option", "-c"),
        make("in-use", "folder_in_use", AT_EARLIER, RESUME, lock="{earlier}", **earlier),
    ]


def policy_train_cases() -> list[Case]:
    def reward_from(model: str) -> tuple[str, str]:
        return "reward.source=learned", f"reward.model={model}"

    learned = reward_from("{fx}/valid/reward")
    command = ["-m", "policies.train"]
    make = maker("policy-train", command, [*TINY_PPO, "run.dir={case}/run"])
    rainbow = maker("policy-train", command, [*TINY_RAINBOW, "run.dir={case}/run", "agent.algo=rainbow"])
    # Resuming the (ppo) earlier run as rainbow: rainbow.* left at the defaults that run saved, so agent.algo is
    # the one setting that differs from it.
    no_ppo = maker("policy-train", command, [*TINY_NO_PPO, "run.dir={case}/run"])
    earlier = {"protect": "valid/policy-run"}
    return [
        make("std-coef-nan", "nan_inf", *learned, "reward.std_coef=nan"),
        make("scale-clip-inf", "nan_inf", *learned, "reward.scale=true", "reward.scale_clip=inf"),
        rainbow("rainbow-vmax-inf", "nan_inf", "rainbow.v_max=inf"),
        rainbow("rainbow-lr-nan", "nan_inf", "rainbow.learning_rate=nan"),
        make("lr-minus-inf", "nan_inf", "agent.algo=ppo_gru", "ppo.learning_rate=-inf"),
        make("algo-unknown", "bad_value", "agent.algo=dqn"),
        make("source-unknown", "bad_value", "reward.source=true"),
        make("learned-without-model", "bad_value", "reward.source=learned"),
        rainbow("rainbow-atoms-0", "bad_value", "rainbow.num_atoms=0"),
        rainbow("rainbow-vmin-above-vmax", "bad_value", "rainbow.v_min=5", "rainbow.v_max=-5"),
        rainbow("rainbow-buffer-negative", "bad_value", "rainbow.buffer_size=-1"),
        make("gru-hidden-0", "bad_value", "agent.algo=ppo_gru", "gru.hidden_size=0"),
        make("reward-batch-0", "bad_value", *learned, "reward.batch_size=0"),
        make("earlier-run-fresh", "bad_value", AT_EARLIER, **earlier),
        no_ppo("earlier-run-other-algo", "bad_value", AT_EARLIER, RESUME, "agent.algo=rainbow", **earlier),
        make("key-typo", "unknown_key", "reward.sorce=learned"),
        make("section-typo", "unknown_key", "rainbo.n_step=3"),
        make("override-dup-mapping", "duplicate_yaml_key", "reward={source: env, source: learned}"),
        make("game-unknown", "wrong_game", "env.game=pong"),
        make("reward-other-game", "wrong_game", *reward_from("{fx}/bad/reward-fruitbot.pt")),
        make("reward-for-starpilot-on-coinrun", "wrong_game", *learned, "env.game=coinrun"),
        make("reward-missing", "bad_path_missing", *reward_from("{fx}/no-such-reward.pt")),
        make("reward-folder-without-model", "path_is_folder", *reward_from("{fx}/valid/demos")),
        make("reward-below-a-file", "below_a_file", *reward_from("{fx}/valid/reward/reward_net.pt/x")),
        make("reward-random-bytes", "corrupt_file", *reward_from("{fx}/bad/reward-random")),
        make("reward-truncated", "corrupt_file", *reward_from("{fx}/bad/reward-truncated.pt")),
        make("reward-is-a-policy", "corrupt_file", *reward_from(ZOO0)),
        make("reward-text-file", "corrupt_file", *reward_from("{fx}/bad/text.pt")),
        make("reward-nan-weights", "nan_inf", *reward_from("{fx}/bad/reward-nan.pt")),
        *common_path_cases(make, "run.dir", "run-dir"),
        *config_file_cases(make, "nan-ppo.yaml", ["dup-train"]),
        make("device-tpu", "bad_device", "train.device=tpu"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", "train.device=cuda")]),
        make("option-unknown", "bad_option", "--algo", "rainbow"),
        make("in-use", "folder_in_use", AT_EARLIER, RESUME, lock="{earlier}", **earlier),
    ]


def generate_demos_cases() -> list[Case]:
    command = ["-m", "trex.generate_demos"]
    make = maker("demos", command, [*TINY_DEMOS, "out_dir={case}/demos"])
    # Into an earlier demo folder with the settings it was played with (the valid demo folder's).
    earlier_valid = maker("demos", command, [*VALID_DEMOS, "out_dir={earlier}"])
    earlier = {"protect": "valid/demos"}
    return [
        make("epsilon-nan", "nan_inf", "epsilon=nan"),
        make("epsilon-list-inf", "nan_inf", "epsilon=[0.5,inf]"),
        make("seed-inf", "nan_inf", "seed=inf"),
        make("checkpoint-nan-weights", "nan_inf", "checkpoints={fx}/bad/nan-weights.pt"),
        make("epsilon-above-1", "bad_value", "epsilon=1.5"),
        make("epsilon-negative", "bad_value", "epsilon=-0.1"),
        make("train-levels-negative", "bad_value", "num_train_levels=-1"),
        make("train-levels-too-many", "bad_value", "num_train_levels=1000"),
        make("levels-overlap", "bad_value", "train_levels=[0,1]", "test_levels=[1,2]"),
        make("levels-none", "bad_value", "train_levels=[]", "test_levels=[]"),
        make("level-seed-negative", "bad_value", "train_levels=[-3]"),
        make("episodes-0", "bad_value", "episodes_per_level=0"),
        make("max-length-0", "bad_value", "max_length=0"),
        make("num-envs-0", "bad_value", "num_envs=0"),
        make("writer-threads-0", "bad_value", "writer_threads=0"),
        make("checkpoints-empty", "bad_value", "checkpoints="),
        make("no-out-dir", "bad_value", "out_dir=null"),
        make("mode-other-than-checkpoint", "bad_value", "distribution_mode=hard"),
        make("earlier-demos-other-settings", "bad_value", "out_dir={earlier}", "max_length=30", **earlier),
        make("earlier-demos-eps-nan", "nan_inf", "out_dir={earlier}", "epsilon=nan", **earlier),
        make("key-typo", "unknown_key", "epsilonn=0.1"),
        make("section-key", "unknown_key", "env.game=starpilot"),
        make("game-other-than-checkpoint", "wrong_game", "game=coinrun"),
        make("game-unknown", "wrong_game", "game=notagame"),
        make("zoo-no-such-game", "wrong_game", "checkpoints=zoo:coinrun"),
        make("mixed-games", "wrong_game", f"checkpoints=[{ZOO0},{{fx}}/bad/coinrun.pt]"),
        make("checkpoint-unknown-game", "wrong_game", "checkpoints={fx}/bad/notagame.pt"),
        make("zoo-no-such-step", "bad_path_missing", "checkpoints=zoo:starpilot/step_000000123"),
        make("checkpoint-missing", "bad_path_missing", "checkpoints={fx}/no-such.pt"),
        make("checkpoints-folder-without-series", "path_is_folder", "checkpoints={fx}/valid/demos"),
        make("checkpoint-is-yaml", "path_is_file", "checkpoints={fx}/valid/run/config.yaml"),
        make("checkpoint-below-a-file", "below_a_file", f"checkpoints={ZOO0}/x.pt"),
        make("checkpoint-random-bytes", "corrupt_file", "checkpoints={fx}/bad/random.pt"),
        make("checkpoint-truncated", "corrupt_file", "checkpoints={fx}/bad/truncated.pt"),
        make("checkpoint-text", "corrupt_file", "checkpoints={fx}/bad/text.pt"),
        make("checkpoint-empty", "corrupt_file", "checkpoints={fx}/bad/empty.pt"),
        make("series-random-bytes", "corrupt_file", "checkpoints={fx}/bad/series-random"),
        make("checkpoint-is-reward-model", "corrupt_file", "checkpoints={fx}/valid/reward/reward_net.pt"),
        make("earlier-index-random", "bad_encoding", "out_dir={earlier}", protect="bad/demos-index-random"),
        make("earlier-index-text", "corrupt_file", "out_dir={earlier}", protect="bad/demos-index-text"),
        earlier_valid("earlier-config-dup", "duplicate_yaml_key", protect="bad/demos-dup-config"),
        earlier_valid("earlier-config-latin1", "bad_encoding", protect="bad/demos-latin1-config"),
        *common_path_cases(make, "out_dir", "out-dir"),
        *config_file_cases(make, "nan-demos.yaml", ["dup-top"]),
        make("device-gpu", "bad_device", "device=gpu"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", "device=cuda")]),
        make("option-unknown", "bad_option", "--out", "x"),
        earlier_valid("in-use", "folder_in_use", lock="{earlier}", **earlier),
    ]


def train_reward_cases() -> list[Case]:
    make = maker("reward", ["-m", "trex.train_reward"], [*TINY_REWARD, "run.dir={case}/reward"])
    earlier = {"protect": "valid/reward"}
    return [
        make("lr-nan", "nan_inf", "train.learning_rate=nan"),
        make("center-inf", "nan_inf", "train.center_coef=inf"),
        make("val-fraction-nan", "nan_inf", "data.val_fraction=nan"),
        make("l1-minus-inf", "nan_inf", "train.l1_coef=-inf"),
        make("earlier-lr-nan", "nan_inf", AT_EARLIER, RESUME, "train.learning_rate=nan", **earlier),
        make("val-fraction-1", "bad_value", "data.val_fraction=1.0"),
        make("val-fraction-0", "bad_value", "data.val_fraction=0"),
        make("min-len-above-max", "bad_value", "data.min_len=60", "data.max_len=50"),
        make("stride-0", "bad_value", "data.stride=0"),
        make("batch-0", "bad_value", "train.batch_size=0"),
        make("ensemble-0", "bad_value", "reward_net.ensemble_size=0"),
        make("augment-unknown", "bad_value", "train.augment=[blur]"),
        make("num-demos-1", "bad_value", "data.num_demos=1"),
        make("rank-by-unknown", "bad_value", "data.rank_by=skill"),
        make("snippet-longer-than-demos", "bad_value", "data.min_len=500", "data.max_len=600"),
        make("earlier-run-fresh", "bad_value", AT_EARLIER, **earlier),
        make("earlier-run-other-net", "bad_value", AT_EARLIER, RESUME, "reward_net.hidden_size=32", **earlier),
        make("key-typo", "unknown_key", "data.demo={fx}/valid/demos"),
        make("section-typo", "unknown_key", "reward_nets.arch=trex"),
        make("test-demos-other-game", "wrong_game", "data.test_demos={fx}/bad/demos-fruitbot"),
        make("demos-mixed-games", "wrong_game", "data.demos={fx}/bad/demos-mixed-games"),
        make("demos-missing", "bad_path_missing", "data.demos={fx}/no-such-demos"),
        make("demos-empty-string", "bad_path_missing", "data.demos="),
        make("demo-file-missing", "bad_path_missing", "data.demos={fx}/bad/demos-missing-file"),
        make("demos-is-a-file", "path_is_file", "data.demos={fx}/valid/demos/index.csv"),
        make("demos-folder-without-index", "path_is_folder", "data.demos={fx}/valid/run"),
        make("demos-below-a-file", "below_a_file", "data.demos={fx}/bad/file/demos"),
        make("demos-index-random", "bad_encoding", "data.demos={fx}/bad/demos-index-random"),
        make("demos-index-latin1", "bad_encoding", "data.demos={fx}/bad/demos-index-latin1"),
        make("demos-index-text", "corrupt_file", "data.demos={fx}/bad/demos-index-text"),
        make("demos-index-bad-length", "corrupt_file", "data.demos={fx}/bad/demos-index-badvalue"),
        make("demos-index-header-only", "corrupt_file", "data.demos={fx}/bad/demos-index-empty"),
        make("demo-file-truncated", "corrupt_file", "data.demos={fx}/bad/demos-truncated"),
        make("resume-corrupt-latest", "corrupt_file", AT_EARLIER, RESUME, protect="bad/reward-run-random-latest"),
        make("resume-dup-config", "duplicate_yaml_key", AT_EARLIER, RESUME, protect="bad/reward-run-dup-config"),
        make("override-dup-mapping", "duplicate_yaml_key", "reward_net={arch: trex, arch: impala}"),
        *common_path_cases(make, "run.dir", "run-dir"),
        *config_file_cases(make, "inf-reward.yaml", ["dup-train", "dup-section"]),
        make("device-cuda-0", "bad_device", "train.device=cuda:0"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", "train.device=cuda")]),
        make("option-unknown", "bad_option", "--epochs=3"),
        make("in-use", "folder_in_use", AT_EARLIER, RESUME, lock="{earlier}", **earlier),
    ]


def evaluate_reward_cases() -> list[Case]:
    make = maker("evaluate", ["-m", "trex.evaluate_reward"], ["--device", "cpu", "--out", "{case}/eval"])
    model, demos = "{fx}/valid/reward", "{fx}/valid/demos"
    earlier = {"protect": "valid/run"}
    return [
        make("seed-inf", "nan_inf", model, demos, "--seed", "inf"),
        make("traces-nan", "nan_inf", model, demos, "--traces", "nan"),
        make("model-nan-weights", "nan_inf", "{fx}/bad/reward-nan.pt", demos),
        make("traces-negative", "bad_value", model, demos, "--traces", "-1"),
        make("split-unknown", "bad_value", model, demos, "--split", "valid"),
        make("one-demo-only", "bad_value", model, "{fx}/bad/demos-one-test"),
        make("demos-other-game", "wrong_game", model, "{fx}/bad/demos-fruitbot"),
        make("model-other-game", "wrong_game", "{fx}/bad/reward-fruitbot.pt", demos),
        make("model-missing", "bad_path_missing", "{fx}/no-such-model.pt", demos),
        make("demos-missing", "bad_path_missing", model, "{fx}/no-such-demos"),
        make("demo-file-missing", "bad_path_missing", model, "{fx}/bad/demos-missing-file"),
        make("demos-is-a-file", "path_is_file", model, "{fx}/valid/demos/index.csv"),
        make("model-is-yaml", "path_is_file", "{fx}/valid/reward/config.yaml", demos),
        make("out-is-a-file", "path_is_file", model, demos, "--out", "{fx}/bad/file"),
        make("model-folder-without-model", "path_is_folder", "{fx}/valid/demos", demos),
        make("demos-folder-without-index", "path_is_folder", model, "{fx}/valid/run"),
        make("model-below-a-file", "below_a_file", "{fx}/bad/file/reward_net.pt", demos),
        make("out-below-a-file", "below_a_file", model, demos, "--out", "{fx}/bad/file/eval"),
        make("out-in-proc", "unwritable", model, demos, "--out", "/proc/bench-bad-inputs"),
        make("model-random-bytes", "corrupt_file", "{fx}/bad/random.pt", demos),
        make("model-truncated", "corrupt_file", "{fx}/bad/reward-truncated.pt", demos),
        make("model-text", "corrupt_file", "{fx}/bad/text.pt", demos),
        make("model-empty", "corrupt_file", "{fx}/bad/empty.pt", demos),
        make("model-is-a-policy", "corrupt_file", ZOO0, demos),
        make("demo-file-truncated", "corrupt_file", model, "{fx}/bad/demos-truncated", "--split", "all"),
        make("demos-index-text", "corrupt_file", model, "{fx}/bad/demos-index-text"),
        make("demos-index-random", "bad_encoding", model, "{fx}/bad/demos-index-random"),
        make("earlier-out-bad-traces", "bad_value", model, demos, "--traces", "-1", "--out", "{earlier}", **earlier),
        make("device-gpu", "bad_device", model, demos, "--device", "gpu"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", model, demos, "--device", "cuda")]),
        make("option-unknown", "bad_option", model, demos, "--episodes", "3"),
        make("no-demo-dir", "bad_option", model),
    ]


def pipeline_cases() -> list[Case]:
    make = maker("pipeline", ["-m", "experiments.pipeline"], ["-c", "{repo}/configs/quickstart.yaml", "dir={case}/exp"])
    earlier = {"protect": "valid/run"}
    return [
        make("evaluation-episodes-inf", "nan_inf", "evaluation.episodes=inf"),
        make("epsilon-nan", "nan_inf", "demos.epsilon=[1.0,nan]"),
        make("reward-lr-inf", "nan_inf", "reward.train.learning_rate=inf"),
        make("agent-steps-nan", "nan_inf", "agent.train.total_steps=nan"),
        make("earlier-seed-nan", "nan_inf", "dir={earlier}", "seed=nan", **earlier),
        make("evaluation-episodes-0", "bad_value", "evaluation.episodes=0"),
        make("agent-steps-negative", "bad_value", "agent.train.total_steps=-5"),
        make("connecting-key-demos", "bad_value", "reward.data.demos=somewhere"),
        make("connecting-key-out-dir", "bad_value", "demos.out_dir=somewhere"),
        make("connecting-key-run-dir", "bad_value", "agent.run.dir=somewhere"),
        make("algo-unknown", "bad_value", "agent.agent.algo=a2c"),
        make("dir-empty", "bad_value", "dir="),
        make("earlier-not-an-experiment", "bad_value", "dir={earlier}", **earlier),
        make("key-typo", "unknown_key", "reward.trian.epochs=3"),
        make("top-key-typo", "unknown_key", "seeds=3"),
        make("override-dup-mapping", "duplicate_yaml_key", "reward.train={epochs: 1, epochs: 2}"),
        make("zoo-no-such-game", "wrong_game", "zoo=zoo:coinrun"),
        make("game-other-than-zoo", "wrong_game", "env.game=coinrun"),
        make("game-unknown", "wrong_game", "env.game=pong"),
        make("zoo-no-such-step", "bad_path_missing", "zoo=zoo:starpilot/step_000000123"),
        make("zoo-folder-missing", "bad_path_missing", "zoo={fx}/no-such-series"),
        make("zoo-is-yaml", "path_is_file", "zoo={fx}/valid/run/config.yaml"),
        make("zoo-folder-without-series", "path_is_folder", "zoo={fx}/valid/demos"),
        make("zoo-below-a-file", "below_a_file", f"zoo={ZOO0}/x"),
        make("zoo-series-random-bytes", "corrupt_file", "zoo={fx}/bad/series-random"),
        make("zoo-checkpoint-truncated", "corrupt_file", "zoo={fx}/bad/series-truncated/step_000000000.pt"),
        *common_path_cases(make, "dir", "dir"),
        *config_file_cases(make, "nan-pipeline.yaml", ["dup-top", "dup-section"]),
        make("device-gpu", "bad_device", "agent.train.device=gpu"),
        *([] if HAS_CUDA else [make("device-cuda-absent", "bad_device", "reward.train.device=cuda")]),
        make("option-unknown", "bad_option", "--resume"),
        make("in-use", "folder_in_use", "dir={earlier}", lock="{earlier}", **earlier),
    ]


def plot_cases() -> list[Case]:
    make = maker("plot", ["-m", "experiments.plot"], ["--out", "{case}/plots", "--reps", "100"])
    run = "{fx}/valid/run"
    earlier = {"protect": "valid/run"}
    return [
        make("reps-nan", "nan_inf", run, "--reps", "nan"),
        make("seed-inf", "nan_inf", run, "--seed", "inf"),
        make("progress-nan-only", "nan_inf", "{fx}/bad/plot-progress-nan"),
        make("reps-10", "bad_value", run, "--reps", "10"),
        make("labels-count", "bad_value", run, "--labels", "a", "b"),
        make("agg-unknown", "bad_value", run, "--agg", "median"),
        make("earlier-run-labels", "bad_value", "{earlier}", "--labels", "a", "b", **earlier),
        make("run-missing", "bad_path_missing", "{fx}/no-such-run"),
        make("run-is-a-file", "path_is_file", "{fx}/valid/run/progress.csv"),
        make("folder-without-runs", "path_is_folder", "{fx}/bad/empty-folder"),
        make("run-below-a-file", "below_a_file", "{fx}/bad/file/run"),
        make("out-is-a-file", "path_is_file", run, "--out", "{fx}/bad/file"),
        make("out-below-a-file", "below_a_file", run, "--out", "{fx}/bad/file/plots"),
        make("out-in-proc", "unwritable", run, "--out", "/proc/bench-bad-inputs"),
        make("earlier-out-in-proc", "unwritable", "{earlier}", "--out", "/proc/bench-bad-inputs", **earlier),
        make("progress-random-bytes", "bad_encoding", "{fx}/bad/plot-progress-random"),
        make("progress-text", "corrupt_file", "{fx}/bad/plot-progress-text"),
        make("progress-empty", "corrupt_file", "{fx}/bad/plot-progress-empty"),
        make("metrics-corrupt", "corrupt_file", "{fx}/bad/plot-metrics-corrupt"),
        make("option-unknown", "bad_option", run, "--format", "svg"),
        make("no-run", "bad_option", plain=True),
    ]


def zoo_cases() -> list[Case]:
    def dirs(runs: str, zoo: str) -> tuple[str, ...]:
        return "--runs-dir", runs, "--zoo-dir", zoo

    command = ["-m", "baseline_agent.zoo", "build"]
    build = maker(
        "zoo", command, ["--no-train", "--games", "starpilot", "--episodes", "1", *dirs("{case}/runs", "{case}/zoo")]
    )
    # Builds that train (no --no-train).
    train = maker("zoo", command, ["--games", "starpilot"])
    ls = maker("zoo", ["-m", "baseline_agent.zoo", "list"], [])
    top = maker("zoo", ["-m", "baseline_agent.zoo"], [])
    earlier = {"protect": "valid/zoo"}
    # An earlier runs folder whose game folder another job holds.
    runs_in_use = {"protect": "valid/zoo-runs", "lock": "{earlier}/starpilot"}
    return [
        build("episodes-nan", "nan_inf", "--episodes", "nan"),
        build("keep-every-inf", "nan_inf", "--keep-every", "inf"),
        build("episodes-0", "bad_value", "--episodes", "0"),
        build("keep-every-negative", "bad_value", "--keep-every", "-2"),
        build("game-unknown", "wrong_game", "--games", "pong"),
        build("runs-missing", "bad_path_missing", "--runs-dir", "{fx}/no-such-runs"),
        ls("list-zoo-missing", "bad_path_missing", "--zoo-dir", "{fx}/no-such-zoo"),
        build("runs-is-a-file", "path_is_file", "--runs-dir", "{fx}/bad/file"),
        ls("list-zoo-is-a-file", "path_is_file", "--zoo-dir", "{fx}/bad/file"),
        build("zoo-is-a-file", "path_is_file", *dirs("{fx}/valid/zoo-runs", "{fx}/bad/file")),
        build("zoo-below-a-file", "below_a_file", *dirs("{fx}/valid/zoo-runs", "{fx}/bad/file/zoo")),
        build("zoo-in-proc", "unwritable", *dirs("{fx}/valid/zoo-runs", "/proc/bench-zoo")),
        train("runs-in-proc-training", "unwritable", *dirs("/proc/bench-zoo-runs", "{case}/zoo")),
        build("runs-random-bytes", "corrupt_file", *dirs("{fx}/bad/zoo-runs-random", "{earlier}"), **earlier),
        build("runs-empty-series", "bad_path_missing", *dirs("{fx}/bad/zoo-runs-empty", "{earlier}"), **earlier),
        ls("list-evaluation-corrupt", "corrupt_file", "--zoo-dir", "{fx}/bad/zoo-eval-corrupt"),
        ls("list-evaluation-latin1", "bad_encoding", "--zoo-dir", "{fx}/bad/zoo-eval-latin1"),
        build("option-unknown", "bad_option", "--gamez", "starpilot"),
        top("command-unknown", "bad_option", "frobnicate"),
        top("no-command", "bad_option"),
        train("in-use", "folder_in_use", "--episodes", "1", *dirs("{earlier}", "{case}/zoo"), **runs_in_use),
    ]


def test_policy_cases() -> list[Case]:
    make = maker(
        "test-policy", ["{repo}/test_policy.py"], ["--episodes", "2", "--num-envs", "2", "--out", "{case}/e.json"]
    )
    earlier = {"protect": "valid/run"}
    return [
        make("episodes-nan", "nan_inf", ZOO0, "--episodes", "nan"),
        make("seed-inf", "nan_inf", ZOO0, "--seed", "inf"),
        make("nan-weights", "nan_inf", "{fx}/bad/nan-weights.pt"),
        make("episodes-0", "bad_value", ZOO0, "--episodes", "0"),
        make("num-envs-negative", "bad_value", ZOO0, "--num-envs", "-1"),
        make("split-unknown", "bad_value", ZOO0, "--split", "valid"),
        make("out-not-json", "bad_value", ZOO0, "--out", "{case}/e.txt"),
        make("earlier-run-episodes-0", "bad_value", "{earlier}", "--episodes", "0", **earlier),
        make("checkpoint-unknown-game", "wrong_game", "{fx}/bad/notagame.pt"),
        make("path-missing", "bad_path_missing", "{fx}/no-such.pt"),
        make("out-is-a-folder", "path_is_folder", ZOO0, "--out", "{fx}/bad/dir.json"),
        make("folder-without-latest", "path_is_folder", "{fx}/valid/demos"),
        make("path-is-yaml", "path_is_file", "{fx}/valid/run/config.yaml"),
        make("path-below-a-file", "below_a_file", f"{ZOO0}/x.pt"),
        make("out-below-a-file", "below_a_file", ZOO0, "--out", "{fx}/bad/file/e.json"),
        make("out-in-proc", "unwritable", ZOO0, "--out", "/proc/bench-bad-inputs.json"),
        make("earlier-run-out-in-proc", "unwritable", "{earlier}", "--out", "/proc/bench-bad-inputs.json", **earlier),
        make("random-bytes", "corrupt_file", "{fx}/bad/random.pt"),
        make("truncated", "corrupt_file", "{fx}/bad/truncated.pt"),
        make("text", "corrupt_file", "{fx}/bad/text.pt"),
        make("empty", "corrupt_file", "{fx}/bad/empty.pt"),
        make("reward-model", "corrupt_file", "{fx}/valid/reward/reward_net.pt"),
        make("run-corrupt-latest", "corrupt_file", "{earlier}", protect="bad/run-random-latest"),
        make("device-gpu", "bad_device", ZOO0, "--device", "gpu"),
        make("device-cuda-7", "bad_device", ZOO0, "--device", "cuda:7"),
        make("option-unknown", "bad_option", ZOO0, "--levels", "3"),
        make("no-path", "bad_option", plain=True),
    ]


def rec_video_cases() -> list[Case]:
    command, gif = ["{repo}/rec_video.py"], ["--out", "{case}/v.gif", "--gif"]
    make = maker("rec-video", command, [*gif, "--max-steps", "5", "--scale", "1"])
    # A stored demo is rendered as recorded: no --max-steps.
    stored = maker("rec-video", command, [*gif, "--scale", "1"])
    # No --out: the video would go into the earlier demo folder (or run: earlier-run-levels-negative).
    earlier_demos = maker("rec-video", command, ["--demo", "{earlier}"])
    demos, run = {"protect": "valid/demos"}, {"protect": "valid/run"}
    return [
        make("levels-nan", "nan_inf", ZOO0, "--levels", "nan"),
        make("fps-inf", "nan_inf", ZOO0, "--fps", "inf"),
        make("nan-weights", "nan_inf", "{fx}/bad/nan-weights.pt"),
        make("levels-negative", "bad_value", ZOO0, "--levels", "-1"),
        make("episodes-0", "bad_value", ZOO0, "--episodes", "0"),
        make("grid-0", "bad_value", ZOO0, "--grid", "0"),
        make("scale-0", "bad_value", ZOO0, "--scale", "0"),
        make("fps-0", "bad_value", ZOO0, "--fps", "0"),
        make("max-steps-negative", "bad_value", ZOO0, "--max-steps", "-1"),
        make("out-avi", "bad_value", ZOO0, "--out", "{case}/v.avi"),
        make("trace-without-model", "bad_value", ZOO0, "--trace"),
        stored("demo-id-unknown", "bad_value", "--demo", "{fx}/valid/demos", "--demo-id", "nope"),
        earlier_demos("earlier-demos-id-unknown", "bad_value", "--demo-id", "nope", **demos),
        earlier_demos(
            "earlier-demos-bad-reward",
            "corrupt_file",
            "--demo-id",
            "{train_demo}",
            "--reward-model",
            "{fx}/bad/random.pt",
            **demos,
        ),
        make("earlier-run-levels-negative", "bad_value", "{earlier}", "--levels", "-1", "--gif", plain=True, **run),
        make("game-other", "wrong_game", ZOO0, "--game", "coinrun"),
        make("game-unknown", "wrong_game", ZOO0, "--game", "pong"),
        make("reward-other-game", "wrong_game", ZOO0, "--reward-model", "{fx}/bad/reward-fruitbot.pt"),
        make("path-missing", "bad_path_missing", "{fx}/no-such.pt"),
        stored("demo-missing", "bad_path_missing", "--demo", "{fx}/no-such-demos", "--demo-id", "x"),
        make("reward-missing", "bad_path_missing", ZOO0, "--reward-model", "{fx}/no-such-reward.pt"),
        make("folder-without-latest", "path_is_folder", "{fx}/valid/demos"),
        make("out-is-a-folder", "path_is_folder", ZOO0, "--out", "{fx}/bad/dir.gif"),
        stored("demo-is-a-file", "path_is_file", "--demo", "{fx}/valid/demos/index.csv", "--demo-id", "x"),
        make("path-below-a-file", "below_a_file", f"{ZOO0}/x.pt"),
        make("out-below-a-file", "below_a_file", ZOO0, "--out", "{fx}/bad/file/v.gif"),
        make("out-in-proc", "unwritable", ZOO0, "--out", "/proc/bench-bad-inputs.gif"),
        make("random-bytes", "corrupt_file", "{fx}/bad/random.pt"),
        make("truncated", "corrupt_file", "{fx}/bad/truncated.pt"),
        make("reward-random-bytes", "corrupt_file", ZOO0, "--reward-model", "{fx}/bad/random.pt"),
        make("reward-is-a-policy", "corrupt_file", ZOO0, "--reward-model", ZOO0),
        stored(
            "demo-file-truncated", "corrupt_file", "--demo", "{fx}/bad/demos-truncated", "--demo-id", "{train_demo}"
        ),
        stored("demo-index-random", "bad_encoding", "--demo", "{fx}/bad/demos-index-random", "--demo-id", "x"),
        make("device-gpu", "bad_device", ZOO0, "--device", "gpu"),
        make("device-cuda-7", "bad_device", ZOO0, "--device", "cuda:7"),
        make("option-unknown", "bad_option", ZOO0, "--mp4"),
        stored("demo-without-id", "bad_option", "--demo", "{fx}/valid/demos"),
    ]


def all_cases() -> list[Case]:
    cases = [
        *ppo_train_cases(),
        *policy_train_cases(),
        *generate_demos_cases(),
        *train_reward_cases(),
        *evaluate_reward_cases(),
        *pipeline_cases(),
        *plot_cases(),
        *zoo_cases(),
        *test_policy_cases(),
        *rec_video_cases(),
    ]
    names = Counter(case.name for case in cases)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        raise ValueError(f"case names given twice: {duplicates}")
    return cases


# ---------------------------------------------------------------------------------------------------------- fixtures


def run_quiet(argv: list[str], fx: Path, what: str) -> None:
    """Run a fixture-building command of the suite in ``fx``; stop the bench with its stderr's tail if it fails."""
    argv = [fill(a, {"repo": str(REPO), "fx": str(fx)}) for a in argv]
    result = subprocess.run([sys.executable, *argv], cwd=fx, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"building the fixture {what} failed (exit {result.returncode}): {tail}")


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tampered(source: Path | str, target: Path, change) -> None:
    """A copy of checkpoint ``source`` with ``change(payload)`` applied."""
    payload = torch.load(source, map_location="cpu", weights_only=True)
    change(payload)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)


def fill_nan(payload: dict) -> None:
    for tensor in payload["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))


def set_game(game: str):
    def change(payload: dict) -> None:
        if "demos" in payload:
            payload["demos"]["game"] = game
        else:
            payload["config"]["env"]["game"] = game

    return change


def set_column(lines: list[str], column: str, value: str, rows: slice = slice(1, None)) -> bytes:
    """An index.csv (``lines``, header first) with ``column`` set to ``value`` in the ``rows``."""
    k = lines[0].split(",").index(column)
    chosen = set(range(len(lines))[rows])
    out = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if i in chosen:
            cells[k] = value
        out.append(",".join(cells))
    return ("\n".join(out) + "\n").encode()


YAML_FIXTURES = {
    "latin1.yaml": "# r\u00e9glages d'\u00e9t\u00e9\nseed: 1\n".encode("latin-1"),
    "utf16.yaml": "seed: 1\n".encode("utf-16"),
    "invalid.yaml": b"train: [1, 2\nseed: {\n",
    "list.yaml": b"- train\n- seed\n",
    "dup-top.yaml": b"seed: 1\nseed: 2\n",
    "dup-train.yaml": b"train:\n  seed: 1\n  seed: 2\n",
    "dup-section.yaml": b"train:\n  seed: 1\ntrain:\n  seed: 2\n",
    "nan-ppo.yaml": b"ppo:\n  learning_rate: .nan\n",
    "inf-reward.yaml": b"train:\n  learning_rate: .inf\n",
    "nan-demos.yaml": b"epsilon: .nan\n",
    "nan-pipeline.yaml": b"evaluation:\n  episodes: .inf\n",
}


def build_valid(fx: Path) -> None:
    """Tiny finished runs of baseline_agent.train and policies.train, the valid demo folder, a tiny reward run from
    it, a small zoo (one checkpoint and its evaluation) and a zoo build's runs folder."""
    valid = fx / "valid"
    run_quiet(["-m", "baseline_agent.train", *TINY_PPO, f"run.dir={valid / 'run'}"], fx, "valid/run")
    run_quiet(["-m", "policies.train", *TINY_PPO, f"run.dir={valid / 'policy-run'}"], fx, "valid/policy-run")
    run_quiet(["-m", "trex.generate_demos", *VALID_DEMOS, f"out_dir={valid / 'demos'}"], fx, "valid/demos")
    run_quiet(["-m", "trex.train_reward", *TINY_REWARD, f"run.dir={valid / 'reward'}"], fx, "valid/reward")
    (valid / "zoo" / "starpilot").mkdir(parents=True)
    shutil.copy(ZOO0_FILE, valid / "zoo" / "starpilot")
    shutil.copy(REPO / "zoo" / "starpilot" / "evaluation.json", valid / "zoo" / "starpilot")
    shutil.copytree(valid / "run", valid / "zoo-runs" / "starpilot")


def build_broken_files(fx: Path, rng: random.Random) -> None:
    """Broken checkpoints, reward models, configs and runs."""
    valid, bad = fx / "valid", fx / "bad"
    checkpoint_bytes = (ZOO0_FILE).read_bytes()
    write_bytes(bad / "random.pt", rng.randbytes(4096))
    write_bytes(bad / "truncated.pt", checkpoint_bytes[: len(checkpoint_bytes) // 2])
    write_bytes(bad / "text.pt", b"this is not a checkpoint\n")
    write_bytes(bad / "empty.pt", b"")
    write_bytes(bad / "file", b"a plain file where a folder is expected\n")
    for folder in ("empty-folder", "dir.json", "dir.gif"):
        (bad / folder).mkdir(parents=True)
    write_bytes(bad / "series-random" / "step_000000000.pt", rng.randbytes(4096))
    write_bytes(bad / "series-truncated" / "step_000000000.pt", checkpoint_bytes[: len(checkpoint_bytes) // 2])
    tampered(ZOO0_FILE, bad / "coinrun.pt", set_game("coinrun"))
    tampered(ZOO0_FILE, bad / "notagame.pt", set_game("notagame"))
    tampered(ZOO0_FILE, bad / "nan-weights.pt", fill_nan)
    reward_net = valid / "reward" / "reward_net.pt"
    tampered(reward_net, bad / "reward-fruitbot.pt", set_game("fruitbot"))
    tampered(reward_net, bad / "reward-nan.pt", fill_nan)
    write_bytes(bad / "reward-truncated.pt", reward_net.read_bytes()[: reward_net.stat().st_size // 2])
    write_bytes(bad / "reward-random" / "reward_net.pt", rng.randbytes(4096))
    for name, data in YAML_FIXTURES.items():
        write_bytes(bad / "yaml" / name, data)
    write_bytes(bad / "yaml" / "random.yaml", rng.randbytes(512))

    # Runs whose latest checkpoint or config is broken.
    for name in ("run-random-latest", "run-truncated-latest", "run-latin1-config"):
        shutil.copytree(valid / "run", bad / name)
    write_bytes(bad / "run-random-latest" / "checkpoints" / "latest.pt", rng.randbytes(4096))
    latest = bad / "run-truncated-latest" / "checkpoints" / "latest.pt"
    write_bytes(latest, latest.read_bytes()[: latest.stat().st_size // 2])
    config = bad / "run-latin1-config" / "config.yaml"
    write_bytes(config, config.read_bytes() + "# \u00e9t\u00e9\n".encode("latin-1"))
    shutil.copytree(valid / "reward", bad / "reward-run-random-latest")
    write_bytes(bad / "reward-run-random-latest" / "checkpoints" / "latest.pt", rng.randbytes(4096))
    # Saved configs with a section given twice (as a hand edit might leave them) or a non-UTF-8 comment.
    for source, name, extra in (
        ("run", "run-dup-config", b"train:\n  seed: 5\n"),
        ("reward", "reward-run-dup-config", b"train:\n  seed: 5\n"),
        ("demos", "demos-dup-config", b"seed: 3\n"),
        ("demos", "demos-latin1-config", "# \u00e9t\u00e9\n".encode("latin-1")),
    ):
        shutil.copytree(valid / source, bad / name)
        write_bytes(bad / name / "config.yaml", (bad / name / "config.yaml").read_bytes() + extra)


def build_broken_demos(fx: Path, rng: random.Random) -> None:
    """Copies of the valid demo folder with a broken index.csv or demo file."""

    def copy(name: str) -> Path:
        shutil.copytree(fx / "valid" / "demos", fx / "bad" / name)
        return fx / "bad" / name

    lines = (fx / "valid" / "demos" / "index.csv").read_text().splitlines()
    split = lines[0].split(",").index("split")
    tests = [line for line in lines[1:] if line.split(",")[split] == "test"]
    others = [line for line in lines[1:] if line.split(",")[split] != "test"]
    for name, index in {
        "demos-fruitbot": set_column(lines, "game", "fruitbot"),
        "demos-mixed-games": set_column(lines, "game", "coinrun", slice(1, 2)),
        "demos-index-badvalue": set_column(lines, "length", "abc"),
        "demos-index-random": rng.randbytes(600),
        "demos-index-latin1": ("\n".join(lines) + "\n# \u00e9t\u00e9\n").encode("latin-1"),
        "demos-index-text": b"this is not a demo index\nnor, is, this\n",
        "demos-index-empty": (lines[0] + "\n").encode(),
        "demos-one-test": ("\n".join([lines[0], *others, tests[0]]) + "\n").encode(),
    }.items():
        write_bytes(copy(name) / "index.csv", index)
    first_train = next(line.split(",")[1] for line in lines[1:] if line.split(",")[split] == "train")
    demo = copy("demos-truncated") / first_train
    demo.write_bytes(demo.read_bytes()[: demo.stat().st_size // 2])
    (copy("demos-missing-file") / first_train).unlink()


def build_broken_results(fx: Path, rng: random.Random) -> None:
    """Runs with a broken progress.csv or metrics.json (experiments.plot), zoos with a broken evaluation.json, zoo runs
    folders whose series is random bytes or empty (baseline_agent.zoo)."""
    valid, bad = fx / "valid", fx / "bad"
    for name, data in (
        ("plot-progress-random", rng.randbytes(800)),
        ("plot-progress-text", b"this is not a progress file\n\x00\x01 nor this\n"),
        ("plot-progress-empty", b""),
    ):
        shutil.copytree(valid / "run", bad / name)
        write_bytes(bad / name / "progress.csv", data)
    shutil.copytree(valid / "run", bad / "plot-progress-nan")
    lines = (valid / "run" / "progress.csv").read_text().splitlines()
    nan_rows = [",".join("nan" if cell else cell for cell in line.split(",")) for line in lines[1:]]
    write_bytes(bad / "plot-progress-nan" / "progress.csv", ("\n".join([lines[0], *nan_rows]) + "\n").encode())
    shutil.copytree(valid / "reward", bad / "plot-metrics-corrupt")
    write_bytes(bad / "plot-metrics-corrupt" / "eval" / "metrics.json", b'{"spearman": ')
    write_bytes(bad / "plot-metrics-corrupt" / "eval" / "predictions.csv", b"demo_id,learned\n")

    evaluation = (REPO / "zoo" / "starpilot" / "evaluation.json").read_text()
    write_bytes(bad / "zoo-eval-corrupt" / "starpilot" / "evaluation.json", evaluation[: len(evaluation) // 2].encode())
    latin1 = '{"note": "\u00e9t\u00e9", ' + evaluation.lstrip()[1:]
    write_bytes(bad / "zoo-eval-latin1" / "starpilot" / "evaluation.json", latin1.encode("latin-1"))
    write_bytes(bad / "zoo-runs-random" / "starpilot" / "checkpoints" / "step_000000001.pt", rng.randbytes(4096))
    (bad / "zoo-runs-empty" / "starpilot" / "checkpoints").mkdir(parents=True)


def prepare_fixtures(fx: Path) -> None:
    """Build the valid and broken inputs the cases point at (once: ``fx/.ready`` marks a finished build)."""
    if (fx / ".ready").exists():
        return
    if fx.exists():
        shutil.rmtree(fx)
    t0 = time.time()
    print(f"building fixtures in {fx} ...", file=sys.stderr, flush=True)
    fx.mkdir(parents=True)
    rng = random.Random(0)
    build_valid(fx)
    build_broken_files(fx, rng)
    build_broken_demos(fx, rng)
    build_broken_results(fx, rng)
    (fx / ".ready").write_text(f"built in {time.time() - t0:.0f} s\n")
    print(f"fixtures built in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------------ runner


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_case(case: Case, fx: Path, cases_dir: Path, timeout_s: float) -> dict:
    """Run one case and judge it: exit 2, one ``error:`` line on stderr, no traceback, earlier results intact."""
    folder = cases_dir / case.name.replace("/", "__")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    earlier = folder / "earlier"
    index = (fx / "valid" / "demos" / "index.csv").read_text().splitlines()
    first_train = next(line.split(",")[0] for line in index[1:] if ",train," in line)
    places = {"repo": str(REPO), "fx": str(fx), "case": str(folder), "earlier": str(earlier), "train_demo": first_train}
    argv = [fill(a, places) for a in case.argv]
    if case.protect:
        shutil.copytree(fx / case.protect, earlier)
    lock = FolderLock(fill(case.lock, places), "bench") if case.lock else None
    try:
        before = digest(earlier)
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # bytes, decoded below: text mode would turn a bar's carriage returns into newlines
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the case's own process group, started above
            stdout, stderr = proc.communicate()
            rc = None
        seconds = time.time() - t0
        after = digest(earlier)
    finally:
        if lock is not None:
            lock.release()
    stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    (folder / "stdout.txt").write_text(stdout)
    (folder / "stderr.txt").write_text(stderr)
    # What a terminal shows of stderr: a carriage return (a progress bar redrawing itself) starts its line again, so
    # a bar wiped before the error leaves nothing, and one left standing counts as a line; blank lines left out.
    shown = [text for line in stderr.split("\n") if (text := line.split("\r")[-1].strip())]
    why = []
    if rc is None:
        why.append(f"timeout after {timeout_s:.0f} s")
    elif rc != 2:
        why.append(f"exit {rc}")
    if "Traceback" in stderr:
        why.append("traceback")
    if len(shown) != 1:
        why.append(f"{len(shown)} stderr lines")
    elif not shown[0].startswith("error:"):
        why.append("no 'error:' line")
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    lost = sorted(k for k in before if k not in after)
    added = sorted(k for k in after if k not in before)
    if changed:
        why.append(f"changed {', '.join(changed)}")
    if lost:
        why.append(f"removed {', '.join(lost)}")

    def show(text: str) -> str:
        return text.replace(str(folder), "<case>").replace(str(fx), "<fx>").replace(str(REPO), "<repo>")

    return {
        "name": case.name,
        "class": case.klass,
        "entry": case.entry,
        "argv": " ".join(["python", *case.argv]),
        "ok": not why,
        "why": why,
        "exit": rc,
        "seconds": round(seconds, 1),
        "stderr_lines": len(shown),
        "first_line": show(shown[0]) if shown else "",
        "last_line": show(shown[-1]) if shown else "",
        "stdout_lines": len(stdout.splitlines()),
        "protected_files": len(before),
        "added": added,
    }


# ---------------------------------------------------------------------------------------------------------- reporter


def row_text(result: dict, width: int = 110) -> str:
    verdict = "ok" if result["ok"] else "FAIL"
    line = result["first_line"] if result["ok"] or result["stderr_lines"] <= 1 else result["last_line"]
    note = "" if result["ok"] else f" [{'; '.join(result['why'])}]"
    text = f"{line[:width]}{'...' if len(line) > width else ''}{note}"
    return f"{result['name']:<46} {result['class']:<19} {verdict:<4} {text}"


def tally(results: list[dict], key: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in results:
        entry = out.setdefault(r[key], {"cases": 0, "ok": 0})
        entry["cases"] += 1
        entry["ok"] += r["ok"]
    return out


def summary_md(results: list[dict], meta: dict) -> str:
    ok = sum(r["ok"] for r in results)
    lines = [
        "# Bad inputs over every entry point",
        "",
        f"`{meta['command']}` ({meta['date']}, {meta['seconds']:.0f} s, {meta['jobs']} job(s), timeout "
        f"{meta['timeout_s']:.0f} s{', cases matching ' + repr(meta['only']) if meta['only'] else ''}).",
        "",
        f"**{ok} of {len(results)} cases answered in one line with nothing lost** (exit status 2, one `error:` line "
        "on stderr, no traceback, every file of the earlier results unchanged).",
        "",
        f"Committed inputs (`zoo/starpilot`, `configs/`) and the repository's top level unchanged by the sweep: "
        f"{meta['repo_inputs_unchanged']}.",
        "",
    ]
    for key, title in (("class", "class"), ("entry", "entry point")):
        lines += [f"| {title} | cases | ok |", "|---|---|---|"]
        lines += [f"| {k} | {v['cases']} | {v['ok']} |" for k, v in sorted(tally(results, key).items())]
        lines.append("")
    failures = [r for r in results if not r["ok"]]
    if failures:
        lines += ["## Failures", ""]
        for r in failures:
            lines += [
                f"- `{r['name']}` ({r['class']}): {'; '.join(r['why'])}",
                f"  - `{r['argv']}`",
                f"  - stderr first line: `{r['first_line'][:300]}`",
                *([f"  - stderr last line: `{r['last_line'][:300]}`"] if r["stderr_lines"] > 1 else []),
            ]
        lines.append("")
    lines += ["## Every case", "", "| case | class | verdict | stderr |", "|---|---|---|---|"]
    for r in results:
        line = r["first_line"] if r["ok"] or r["stderr_lines"] <= 1 else r["last_line"]
        line = line.replace("|", "\\|")[:200]
        lines.append(
            f"| `{r['name']}` | {r['class']} | {'ok' if r['ok'] else 'FAIL: ' + '; '.join(r['why'])} | {line} |"
        )
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python bench/bad_inputs.py",
        description="Run every entry point of the suite with bad inputs and check each is answered with exit status "
        "2, one 'error:' line on stderr, no traceback, and earlier results left byte for byte.",
    )
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="run only the cases whose name contains SUBSTRING "
        "(names are <entry>/<case>, e.g. --only demos/ or --only in-proc)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once, each a subprocess (default 1)")
    parser.add_argument("--list", action="store_true", help="print the cases (name, class, command) and exit")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may run (default 120)")
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep the fixtures and each case's folder here, and reuse "
        "fixtures built there before (default: a temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="bench/results/bad_inputs",
        help="where summary.md and summary.json go (default bench/results/bad_inputs)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0, got {args.timeout}")
    return args


def repo_inputs() -> dict[str, str]:
    """Digests of the committed inputs the cases read (zoo/starpilot, configs/), and the repository's top-level names
    (a case that wrote into the repository would add some)."""
    zoo = {f"zoo/starpilot/{k}": v for k, v in digest(REPO / "zoo" / "starpilot").items()}
    configs = {f"configs/{k}": v for k, v in digest(REPO / "configs").items()}
    return zoo | configs | {"top level": " ".join(sorted(p.name for p in REPO.iterdir()))}


@main_guard
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = all_cases()
    total = len(cases)
    if args.only:
        cases = [case for case in cases if args.only in case.name]
    if args.list:
        for case in cases:
            extra = f" (protects {case.protect}{', locked' if case.lock else ''})" if case.protect else ""
            print(f"{case.name:<46} {case.klass:<19} python {' '.join(case.argv)}{extra}")
        print(f"{len(cases)} of {total} cases", file=sys.stderr)
        return 0
    if not cases:
        raise UserError(f"--only {args.only!r} matches none of the {total} case names (see --list)")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    t0 = time.time()
    inputs_before = repo_inputs()
    try:
        fx, cases_dir = work.resolve() / "fixtures", work.resolve() / "cases"
        prepare_fixtures(fx)
        printing = threading.Lock()
        done = []

        def one(case: Case) -> dict:
            result = run_case(case, fx, cases_dir, args.timeout)
            with printing:
                done.append(result)
                print(f"[{len(done):>3}/{len(cases)}] {row_text(result)}", flush=True)
            return result

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, cases))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    unchanged = repo_inputs() == inputs_before

    ok = sum(r["ok"] for r in results)
    print(f"\n{ok} of {len(results)} cases answered in one line with nothing lost")
    for key in ("class", "entry"):
        print(f"\nby {key}:")
        for name, v in sorted(tally(results, key).items()):
            print(f"  {name:<24} {v['ok']:>3} / {v['cases']:<3}{'' if v['ok'] == v['cases'] else '  <-'}")
    print(f"\ncommitted inputs (zoo/starpilot, configs/) and the repository's top level unchanged: {unchanged}")

    meta = {
        "command": " ".join(["python", "bench/bad_inputs.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.time() - t0,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "only": args.only,
        "cases_total": total,
        "repo_inputs_unchanged": unchanged,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    summary = {
        "meta": meta,
        "cases": len(results),
        "ok": ok,
        "by_class": tally(results, "class"),
        "by_entry": tally(results, "entry"),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", summary_md(results, meta))
    print(f"wrote {out / 'summary.md'} and {out / 'summary.json'}", file=sys.stderr)
    return 0 if ok == len(results) and unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
