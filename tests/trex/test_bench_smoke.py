"""The T-REX benchmark scripts end to end on tiny inputs: every part runs and writes its results."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from procgen_common.cli import UserError
from tests.conftest import REPO
from trex.demos import DemoInfo, read_index

TINY_REWARD = [
    "data.min_len=4",
    "data.max_len=8",
    "data.pairs_per_epoch=32",
    "data.val_pairs=16",
    "data.val_fraction=0.4",
    "log.tensorboard=false",
]


def _script(name: str):
    """Import ``bench/<name>.py`` (bench is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trex_speed_measures_every_part_against_its_bound(synthetic_demos, demonstrator_run, tmp_path):
    out = tmp_path / "speed.json"
    results = _script("trex_speed").main(
        [
            "--demos",
            str(synthetic_demos),
            "--checkpoints",
            str(demonstrator_run),
            "-c",
            str(REPO / "configs" / "trex-reward-cpu.yaml"),
            "--threads=1",
            "--rounds=1",
            "--bare-batches=2",
            "--memory-demos",
            "0",
            "--memory-epochs=1",
            "--gen-levels=2",
            "--demo-config",
            str(REPO / "configs" / "trex-cpu.yaml"),
            "--gen-episodes=1",
            "--gen-repeats=2",
            f"--out={out}",
            *TINY_REWARD,
        ]
    )
    torch.set_num_threads(1)
    assert json.loads(out.read_text()) == results and out.with_suffix(".md").is_file()
    training, generation = results["reward_training"], results["generation"]
    assert training["trainer_frames_per_s"] > 0 and training["ratio"] > 0
    assert generation["rollout_frames"] > 0 and 0 < generation["batch_use"] <= 1
    assert generation["save_frames_per_s"] > 0
    assert [e["play_threads"] for e in generation["end_to_end"]] == [1, 2]  # the default, side by side
    for end_to_end in generation["end_to_end"]:
        runs = end_to_end["runs"]
        assert len(runs) == 2 and all(r["bare_before"] > 0 and r["bare_after"] > 0 for r in runs)
        for run in runs:  # each run against the bound timed beside it, not one timed apart
            assert run["ratio"] == pytest.approx(run["frames_per_s"] / ((run["bare_before"] + run["bare_after"]) / 2))
        assert end_to_end["ratio"] == pytest.approx(np.median([r["ratio"] for r in runs]))
    (memory,) = results["memory"]
    assert memory["num_demos"] == 40  # every training demo of the synthetic set
    assert memory["demo_bytes"] == 40 * 30 * 64 * 64 * 3 and memory["peak_increase"] > 0


def test_trex_levers_runs_both_ladders_and_every_variant(demonstrator_run, tmp_path):
    checkpoints = sorted((demonstrator_run / "checkpoints").glob("step_*.pt"))
    args = [
        *TINY_REWARD,
        "train.epochs=1",
        "train.torch_threads=1",
        "train.device=cpu",
        "--game=starpilot",
        f"--best={checkpoints[-1]}",
        "--series",
        *map(str, checkpoints),
        "--num-demos=6",
        "--train-levels=2",
        "--test-levels=2",
        "--test-episodes=1",
        "--epsilons",
        "1.0",
        "0.0",
        f"--out={tmp_path}",
        "--seeds",
        "0",
        "--variants",
        "noise-episode",
        # The tiny demonstrator's returns may all tie, so this ladder is ranked by checkpoint, not return.
        "--variant",
        "ckpt=checkpoints:data.rank_by=checkpoint,data.comparison=episode",
        "--variant",
        "crossed=crossed:data.rank_by=noise,data.comparison=episode",
    ]
    levers = _script("trex_levers")
    summary = levers.main(args)
    torch.set_num_threads(1)
    assert set(summary["variants"]) == {"noise-episode", "ckpt", "crossed"}
    # The crossed ladder: every checkpoint at every epsilon on the training levels, and no held-out demos of its own.
    crossed = read_index(tmp_path / "starpilot" / "crossed-train")
    assert {(i.checkpoint, i.epsilon) for i in crossed} == {(c.stem, e) for c in checkpoints for e in (1.0, 0.0)}
    assert not (tmp_path / "starpilot" / "crossed-test").exists() and set(summary["ladders"]) == set(levers.LADDERS)
    for row in summary["variants"].values():
        assert row["seeds"] == 1 and row["held_out/learned"]["n"] == 1
    # One held-out set for every variant: both ladders' held-out demos.
    held_out = (tmp_path / "starpilot" / "held-out" / "index.csv").read_text().splitlines()
    assert len(held_out) == 1 + 2 * 2 + 2 * 2  # header, 2 noise rungs x 2 levels, 2 checkpoints x 2 levels
    assert json.loads((tmp_path / "summary-starpilot.json").read_text()) == summary
    assert "| noise-episode | noise | 1 |" in (tmp_path / "summary-starpilot.md").read_text()


@pytest.mark.parametrize(
    "option, message",
    [
        ("--gen-repeats=0", "error: --gen-repeats: 0; give at least 1 end-to-end run"),
        ("--play-threads=0", "error: --play-threads: 0; each setting must be at least 1 thread"),
    ],
)
def test_trex_speed_refuses_bad_counts_in_one_line_before_any_work(capsys, option, message):
    with pytest.raises(SystemExit) as exit_info:
        _script("trex_speed").main(["--generation-only", option])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_reward_per_frame_prints_every_rung_and_the_frames_that_earn_points(synthetic_demos, tmp_path, capsys):
    from trex.reward_net import RewardNetConfig, save_untrained_reward_net

    model = save_untrained_reward_net(tmp_path / "reward.pt", RewardNetConfig(), "starpilot")
    _script("reward_per_frame").main([str(model), str(synthetic_demos), "--split", "all"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 70 + 1  # header, one rung per synthetic demo (each its own checkpoint), the summary
    assert lines[-1].startswith(f"all {70 * 30} frames: ") and "frames that earn points" in lines[-1]


def test_ladder_ceiling_is_perfect_when_rungs_explain_every_return_and_length_when_they_explain_none():
    ceilings = _script("ladder_ceiling").ceilings
    # Three rungs whose episodes all return the rung's value: the rungs explain everything.
    infos = [demo_info(f"step_{k}", float(k), 10 + j) for k in range(3) for j in range(4)]
    c = ceilings(infos)
    assert c["rungs"] == 3 and c["between_rungs_r2"] == 1.0
    assert c["scores"]["rung mean"]["spearman"] == 1.0
    # One rung whose returns grow with length at a constant rate: only length (and rate x length) rank them.
    infos = [demo_info("step_0", 2.0 * length, length) for length in (5, 9, 7, 3)]
    c = ceilings(infos)
    assert c["between_rungs_r2"] == 0.0
    assert c["scores"]["length"]["spearman"] == c["scores"]["rung rate x length"]["spearman"] == 1.0
    assert c["scores"]["rung mean"]["pair_accuracy"] == 0.5  # ties everywhere: no better than chance


def demo_info(checkpoint: str, episode_return: float, length: int) -> DemoInfo:
    return DemoInfo(
        demo_id=f"test-{checkpoint}-{episode_return}-{length}",
        file="x.npz.zst",
        game="starpilot",
        distribution_mode="easy",
        split="test",
        level_seed=0,
        episode=0,
        checkpoint=checkpoint,
        checkpoint_step=0,
        agent="ppo",
        episode_return=episode_return,
        length=length,
        truncated=False,
    )


def test_trex_levers_runs_only_the_extra_variants_when_variants_names_none():
    levers = _script("trex_levers")
    base = ["--game=starpilot", "--best=b.pt", "--series", "s.pt", "--variants"]
    args = levers.parse_args([*base, "--variant", "x=crossed:data.rank_by=return"])
    assert args.variants == {"x": ("crossed", ["data.rank_by=return"])}
    with pytest.raises(UserError, match="--variants: none given and no --variant"):
        levers.parse_args(base)
