"""One- or two-update runs of the training options that change what the loop does."""

from __future__ import annotations

import math

import pytest

from baseline_agent.train import main
from procgen_common.checkpoint import load_checkpoint
from tests.baseline_agent.test_train import read_progress
from tests.conftest import BATCH, NUM_MINIBATCHES, tiny_overrides, train_tiny


def _adam_steps(run_dir) -> set[int]:
    state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["optimizer"]["state"]
    return {int(s["step"]) for s in state.values()}


def test_anneal_lr_decays_linearly_over_the_budget(tmp_path):
    train_tiny(tmp_path / "run", "ppo.anneal_lr=true", "ppo.learning_rate=0.001", f"train.total_steps={2 * BATCH}")
    rates = [float(r["charts/learning_rate"]) for r in read_progress(tmp_path / "run")]
    # lr = (1 - step / total) * learning_rate at the start of each update: steps 0 and BATCH of 2 * BATCH.
    assert rates == pytest.approx([0.001, 0.0005])


def test_target_kl_stops_the_epochs_early(tmp_path):
    common = ("ppo.num_epochs=3", f"train.total_steps={BATCH}", "train.num_checkpoints=1")
    train_tiny(tmp_path / "all", *common)
    train_tiny(tmp_path / "early", *common, "ppo.target_kl=1.0e-12")
    assert _adam_steps(tmp_path / "all") == {3 * NUM_MINIBATCHES}
    # Any policy change exceeds a 1e-12 KL: the update stops after its first epoch.
    assert _adam_steps(tmp_path / "early") == {NUM_MINIBATCHES}


@pytest.mark.parametrize(
    "options",
    [
        ("train.precision=bf16",),
        ("model.arch=impala", "model.impala_channels=[4, 8]", "model.hidden_size=16"),
        ("ppo.reward_scaling=false", "ppo.clip_value=false", "ppo.norm_adv=false"),
    ],
    ids=["bf16", "impala", "plain-ppo"],
)
def test_option_runs_and_logs_finite_losses(tmp_path, options):
    train_tiny(tmp_path / "run", *options, f"train.total_steps={BATCH}", "train.num_checkpoints=1")
    (row,) = read_progress(tmp_path / "run")
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl"):
        assert math.isfinite(float(row[key])), (key, row[key])
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["config"]["train"]["precision"] == (
        "bf16" if "train.precision=bf16" in options else "fp32"
    )


def test_eval_on_every_split(tmp_path):
    train_tiny(
        tmp_path / "run",
        f"train.total_steps={BATCH}",
        "train.num_checkpoints=1",
        f"eval.every_steps={BATCH}",
        "eval.splits=[train, test, all]",
        "eval.episodes=2",
    )
    (row,) = read_progress(tmp_path / "run")
    for split in ("train", "test", "all"):
        assert math.isfinite(float(row[f"eval/{split}_return"]))


def test_full_distribution_run_notes_nothing_is_held_out(tmp_path, capsys):
    main(tiny_overrides(tmp_path / "run", "env.num_levels=0", f"train.total_steps={BATCH}", "train.num_checkpoints=1"))
    captured = capsys.readouterr()
    assert "no level is held out" in captured.err
    assert f"done: {tmp_path / 'run'}" in captured.out


def test_periodic_eval_videos_follow_video_every_steps(tmp_path):
    """eval every update, a video every second one: videos at steps 128 (first eval), 256, 512 only."""
    import subprocess

    from procgen_common.video import find_ffmpeg

    run = train_tiny(
        tmp_path / "run",
        f"train.total_steps={4 * BATCH}",
        f"eval.every_steps={BATCH}",
        "eval.record_video=true",
        "eval.video_episodes=2",
        f"eval.video_every_steps={2 * BATCH}",
    )
    videos = sorted(p.name for p in (run / "videos").glob("*.mp4"))
    assert videos == [f"eval-step_{s:09d}.mp4" for s in (BATCH, 2 * BATCH, 4 * BATCH)]
    probe = subprocess.run(
        [find_ffmpeg(), "-v", "error", "-i", str(run / "videos" / videos[0]), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
