"""Demo generation on a tiny real checkpoint series: exact levels, pre-action frames, resuming, SB3 models."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

import trex.demos
import trex.generate_demos
from procgen_common.agents import RandomAgent
from procgen_common.checkpoint import CheckpointError
from procgen_common.cli import UserError
from procgen_common.config import load_config
from procgen_common.env import EnvConfig, ProcgenVecEnv, one_level_config
from procgen_common.sb3_agent import load_sb3_agent
from trex.demos import DemoSet, read_index, save_demo
from trex.generate_demos import Config, DemoJob, generate, play_demos


def _config(*overrides: str) -> Config:
    return load_config(Config, None, ["torch_threads=1", "device=cpu", *overrides])


@pytest.fixture(scope="module")
def demo_dir(demonstrator_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "demos"
    generate(
        _config(
            f"checkpoints={demonstrator_run}",
            "train_levels=[3,5]",
            "test_levels=[150]",
            "episodes_per_level=2",
            "num_envs=4",  # fewer slots than demos: slots are refilled, batches span both checkpoints
            f"out_dir={out}",
        )
    )
    return out


def _replay(info, demo):
    """Play the demo's actions on a fresh one-level env: (frames seen, rewards, done flags)."""
    env = ProcgenVecEnv(one_level_config(EnvConfig(game=info.game), info.level_seed), num_envs=1, seed=99)
    frames, rewards, dones = [], [], []
    try:
        obs = env.reset()
        for action in demo.actions:
            frames.append(obs[0].copy())
            obs, reward, done, _ = env.step(np.array([action]))
            rewards.append(reward[0])
            dones.append(done[0])
    finally:
        env.close()
    return np.stack(frames), np.array(rewards, np.float32), np.array(dones)


def test_index_lists_every_checkpoint_on_exactly_the_requested_levels(demo_dir):
    infos = read_index(demo_dir)
    assert len(infos) == 2 * 3 * 2  # checkpoints x levels x episodes
    assert len({i.demo_id for i in infos}) == len(infos)
    assert {(i.split, i.level_seed) for i in infos} == {("train", 3), ("train", 5), ("test", 150)}
    assert {(i.checkpoint, i.checkpoint_step) for i in infos} == {("step_000000000", 0), ("step_000000128", 128)}
    assert {i.episode for i in infos} == {0, 1}
    assert {(i.game, i.distribution_mode, i.agent) for i in infos} == {("starpilot", "easy", "ppo")}
    assert all((demo_dir / i.file).is_file() for i in infos) and (demo_dir / "config.yaml").is_file()


def test_demos_replay_exactly_with_pre_action_frames(demo_dir):
    demo_set = DemoSet.open(demo_dir)
    for info in demo_set.infos:
        demo = demo_set.load(info)
        assert demo.obs.dtype == np.uint8 and demo.obs.shape == (info.length, 64, 64, 3)
        frames, rewards, dones = _replay(info, demo)
        # Same level and same frames: obs[t] is the frame action t was chosen on, the rewards are the game's,
        # and the episode ended on the last stored action (so no frame of the next episode is stored).
        np.testing.assert_array_equal(demo.obs, frames)
        np.testing.assert_array_equal(demo.rewards, rewards)
        assert info.episode_return == pytest.approx(float(rewards.sum()))
        assert not dones[:-1].any() and dones[-1] != info.truncated


def test_rerun_skips_demos_already_written(demo_dir, demonstrator_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in demo_dir.glob("*.npz.zst")}
    index = read_index(demo_dir)
    generate(
        _config(
            f"checkpoints={demonstrator_run}",
            "train_levels=[3,5]",
            "test_levels=[150]",
            "episodes_per_level=2",
            f"out_dir={demo_dir}",
        )
    )
    assert "0 new demos, 12 in" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in demo_dir.glob("*.npz.zst")} == before
    assert read_index(demo_dir) == index
    with pytest.raises(UserError, match="played with max_length=1000"):
        generate(
            _config(
                f"checkpoints={demonstrator_run}",
                "train_levels=[3]",
                "test_levels=[]",
                "max_length=500",
                f"out_dir={demo_dir}",
            )
        )


def test_rerun_plays_again_demos_without_file_or_index_row(demo_dir, demonstrator_run, tmp_path, capsys):
    folder = shutil.copytree(demo_dir, tmp_path / "demos")
    infos = read_index(folder)
    (folder / infos[0].file).unlink()  # indexed, but its file is gone
    trex.demos.write_index(folder, infos[2:])  # written, but not indexed (as after a kill between the two)
    generate(
        _config(
            f"checkpoints={demonstrator_run}",
            "train_levels=[3,5]",
            "test_levels=[150]",
            "episodes_per_level=2",
            f"out_dir={folder}",
        )
    )
    assert "2 new demos, 12 in" in capsys.readouterr().err
    assert {i.demo_id for i in read_index(folder)} == {i.demo_id for i in infos}
    assert all((folder / i.file).is_file() for i in infos)


@pytest.mark.parametrize("play_threads", [1, 2])
def test_a_failed_write_leaves_an_index_of_complete_demos_and_a_rerun_finishes(
    demonstrator_run, tmp_path, monkeypatch, capsys, play_threads
):
    threads_before = threading.active_count()
    writes = []

    def failing_save(path, demo, encoded=None):
        writes.append(path)
        if len(writes) == 3:
            raise OSError("disk full")
        save_demo(path, demo, encoded)

    def checked_write_index(folder, infos):
        assert all((folder / i.file).is_file() for i in infos), "index.csv lists a demo whose file is not written"
        trex.demos.write_index(folder, infos)

    monkeypatch.setattr(trex.generate_demos, "save_demo", failing_save)
    monkeypatch.setattr(trex.generate_demos, "write_index", checked_write_index)
    monkeypatch.setattr(trex.generate_demos, "INDEX_EVERY_S", 0.0)  # rewrite the index after every demo
    options = (
        f"checkpoints={demonstrator_run}",
        "train_levels=[3]",
        "test_levels=[]",
        "episodes_per_level=2",
        "num_envs=2",
        f"play_threads={play_threads}",
        f"out_dir={tmp_path}",
    )
    with pytest.raises(OSError, match="disk full"):
        generate(_config(*options))
    assert threading.active_count() == threads_before  # the play (and writer) threads were stopped and joined
    kept = read_index(tmp_path)
    assert 2 <= len(kept) < 4 and writes[2].name not in {i.file for i in kept}
    monkeypatch.setattr(trex.generate_demos, "save_demo", save_demo)
    generate(_config(*options))
    assert f"{4 - len(kept)} new demos, 4 in" in capsys.readouterr().err
    assert len(read_index(tmp_path)) == 4


def test_the_same_seed_plays_the_same_demos(demonstrator_run, tmp_path):
    options = (f"checkpoints={demonstrator_run}", "train_levels=[3]", "test_levels=[]", "num_envs=3", "epsilon=0.3")
    first = DemoSet.open(generate(_config(*options, "episodes_per_level=2", f"out_dir={tmp_path}/a")))
    again = DemoSet.open(generate(_config(*options, "episodes_per_level=2", f"out_dir={tmp_path}/b")))
    assert first.infos == again.infos
    for info in first.infos:
        a, b = first.load(info), again.load(info)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.obs, b.obs)


class RecordingAgent:
    """A random agent that records the size and episode starts of every forward pass."""

    def __init__(self, seed: int):
        self.agent = RandomAgent(seed)
        self.calls: list[np.ndarray] = []  # episode_start of each call

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, episode_start, deterministic: bool = False):
        assert len(obs) == len(episode_start)
        self.calls.append(np.array(episode_start))
        return self.agent.act(obs, state, episode_start, deterministic)


def test_play_demos_refills_slots_and_forwards_only_playing_ones():
    agents, loaded = [RecordingAgent(0), RecordingAgent(1)], []

    def demonstrator(k: int) -> RecordingAgent:
        loaded.append(k)
        return agents[k]

    jobs = [DemoJob("train", level, episode, k) for k in range(2) for level in (3, 5) for episode in range(2)]
    episodes = list(play_demos(demonstrator, EnvConfig(game="starpilot"), jobs, 3, 40, False, np.random.default_rng(0)))
    assert sorted(map(str, (e.job for e in episodes))) == sorted(map(str, jobs))  # every job exactly once
    assert loaded == [0, 1]
    for k, agent in enumerate(agents):
        played = [e for e in episodes if e.job.demonstrator == k]
        # Forward rows are exactly the frames of this demonstrator's episodes (no row for a finished slot),
        # each episode starting once, never more rows than slots.
        assert sum(len(c) for c in agent.calls) == sum(len(e.actions) for e in played)
        assert sum(int(c.sum()) for c in agent.calls) == len(played) == 4
        assert max(len(c) for c in agent.calls) <= 3
    # Demonstrator 1 has 4 jobs for 3 slots: its first pass has fewer rows only if a slot was still playing
    # demonstrator 0's last job in that step, i.e. the batch spanned both checkpoints.
    assert len(agents[1].calls[0]) < 3
    assert all(len(e.actions) <= 40 and e.truncated == (len(e.actions) == 40) for e in episodes)


def test_default_levels_out_dir_and_truncation(demonstrator_run):
    checkpoints = demonstrator_run / "checkpoints"
    out = generate(
        _config(f"checkpoints={checkpoints}", "num_train_levels=1", "num_test_levels=1", "max_length=5", "num_envs=1")
    )
    assert out == demonstrator_run / "demos"
    infos = read_index(out)
    # The tiny run trains on levels [0, 20); its test split starts right after (tests/conftest.py).
    assert {(i.split, i.level_seed) for i in infos} == {("train", 0), ("test", 20)}
    assert all(i.truncated and i.length == 5 for i in infos)
    # One slot played all four: an env cut mid-episode is replaced by a fresh one, so each demo still starts
    # at its level's first frame.
    demo_set = DemoSet.open(out)
    for info in infos:
        demo = demo_set.load(info)
        np.testing.assert_array_equal(demo.obs, _replay(info, demo)[0])


def test_bad_checkpoint_sources_are_named(tmp_path, demonstrator_run):
    with pytest.raises(UserError, match="holds no step_.*pt checkpoints or SB3 .zip models"):
        generate(_config(f"checkpoints={tmp_path}", f"out_dir={tmp_path}/d"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="neither a .pt checkpoint nor an SB3 .zip model"):
        generate(_config(f"checkpoints={tmp_path}/notes.txt", f"out_dir={tmp_path}/d"))
    with pytest.raises(UserError, match="train_levels.*list the level seeds|exceeds the run's 20 training levels"):
        generate(_config(f"checkpoints={demonstrator_run}", "num_train_levels=21", f"out_dir={tmp_path}/d"))
    with pytest.raises(UserError, match="fruitbot was asked for"):
        generate(_config(f"checkpoints={demonstrator_run}", "game=fruitbot", f"out_dir={tmp_path}/d"))


def test_sb3_models_play_like_sb3_and_make_demos(tmp_path):
    import torch
    from stable_baselines3 import PPO

    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=2, num_threads=0))
    try:
        model = PPO("CnnPolicy", env, n_steps=16, seed=0, device="cpu")
        model.save(tmp_path / "models" / "sb3_a.zip")
        obs = env.reset()
        expected, _ = model.predict(obs, deterministic=True)
        custom = PPO("CnnPolicy", env, n_steps=16, seed=0, device="cpu", policy_kwargs={"activation_fn": torch.nn.ReLU})
        custom.save(tmp_path / "custom.zip")
    finally:
        env.close()
    agent, step = load_sb3_agent(tmp_path / "models" / "sb3_a.zip")
    assert step == 0
    actions, _ = agent.act(obs, None, np.ones(2, bool), deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    with pytest.raises(CheckpointError, match="custom policy_kwargs \\(activation_fn\\)"):
        load_sb3_agent(tmp_path / "custom.zip")
    with pytest.raises(UserError, match="set game="):
        generate(_config(f"checkpoints={tmp_path / 'models'}", f"out_dir={tmp_path}/d"))

    out = generate(
        _config(
            f"checkpoints={tmp_path / 'models'}",
            "game=starpilot",
            "train_levels=[7]",
            "test_levels=[]",
            "max_length=20",
            f"out_dir={tmp_path}/d",
        )
    )
    (info,) = read_index(out)
    assert (info.agent, info.checkpoint, info.checkpoint_step, info.level_seed) == ("sb3", "sb3_a", 0, 7)


class ConstantAgent:
    """Always chooses action 4: any other action in a demo came from the epsilon noise."""

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, episode_start, deterministic: bool = False):
        return np.full(len(obs), 4), None


def test_noise_ladder_rungs_play_random_actions_with_their_epsilon():
    jobs = [DemoJob("train", level, 0, 0, epsilon) for epsilon in (0.0, 0.5, 1.0) for level in (3, 5, 7, 9)]
    episodes = list(
        play_demos(
            lambda _: ConstantAgent(), EnvConfig(game="starpilot"), jobs, 6, 300, False, np.random.default_rng(0)
        )
    )
    actions = {e: np.concatenate([x.actions for x in episodes if x.job.epsilon == e]) for e in (0.0, 0.5, 1.0)}
    assert (actions[0.0] == 4).all()  # no noise: the policy's own actions
    # epsilon=1: uniform over the 15 actions (chi-square, 14 degrees of freedom, p = 0.001 at 36.1).
    counts = np.bincount(actions[1.0], minlength=15)
    expected = len(actions[1.0]) / 15
    assert ((counts - expected) ** 2 / expected).sum() < 36.1
    # epsilon=0.5: the policy's action half the time plus its 1/15 share of the random ones.
    share = (actions[0.5] == 4).mean()
    assert abs(share - (0.5 + 0.5 / 15)) < 4 * np.sqrt(0.25 / len(actions[0.5]))


def test_a_noise_ladder_records_each_rung(demonstrator_run, tmp_path, capsys):
    out = generate(
        _config(
            f"checkpoints={demonstrator_run}/checkpoints/step_000000000.pt",
            "train_levels=[3]",
            "test_levels=[150]",
            "epsilon=[1.0,0.0]",
            "max_length=30",
            f"out_dir={tmp_path}",
        )
    )
    infos = read_index(out)
    assert sorted((i.split, i.epsilon) for i in infos) == [("test", 0.0), ("test", 1.0), ("train", 0.0), ("train", 1.0)]
    assert {i.demo_id for i in infos if i.epsilon == 1.0} == {
        "train-step_000000000-eps1-level3-ep0",
        "test-step_000000000-eps1-level150-ep0",
    }
    assert all(DemoSet.open(out).load(i).info.epsilon == i.epsilon for i in infos)
    # A rung more is just more demos in the same folder.
    capsys.readouterr()
    generate(
        _config(
            f"checkpoints={demonstrator_run}/checkpoints/step_000000000.pt",
            "train_levels=[3]",
            "test_levels=[150]",
            "epsilon=[1.0,0.5,0.0]",
            "max_length=30",
            f"out_dir={tmp_path}",
        )
    )
    assert "2 new demos, 6 in" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.5", "-0.1", ".nan", "[]", "[0.5,0.5]"])
def test_bad_noise_levels_are_refused(value):
    with pytest.raises(ValueError, match="epsilon"):
        _config("checkpoints=x", f"epsilon={value}")


def test_checkpoints_of_two_games_are_refused_before_any_demo(tmp_path, demonstrator_run):
    from procgen_common.checkpoint import load_checkpoint, save_checkpoint

    first, second = sorted((demonstrator_run / "checkpoints").glob("step_*.pt"))[:2]
    checkpoint = load_checkpoint(second)
    checkpoint["config"]["env"]["game"] = "fruitbot"
    save_checkpoint(tmp_path / "ckpts" / second.name, checkpoint)
    shutil.copy(first, tmp_path / "ckpts" / first.name)
    with pytest.raises(UserError, match=r"checkpoints: .*step_000000128.pt plays fruitbot \(easy\) but .* starpilot"):
        generate(_config(f"checkpoints={tmp_path / 'ckpts'}", f"out_dir={tmp_path}/d"))
    assert not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def multi_game_run(tmp_path_factory):
    """A tiny run of one agent on coinrun and starpilot (training levels [0, 20), as the demonstrator run's)."""
    from tests.conftest import train_tiny

    run_dir = tmp_path_factory.mktemp("multi") / "run"
    return train_tiny(run_dir, "env.games=[coinrun,starpilot]", "ppo.num_steps=16", "train.total_steps=128")


def test_a_multi_game_checkpoint_demonstrates_the_game_set_by_game(multi_game_run, demonstrator_run, tmp_path):
    multi = multi_game_run / "checkpoints" / "latest.pt"
    single = demonstrator_run / "checkpoints" / "step_000000128.pt"  # a starpilot-only checkpoint beside it
    levels = ("train_levels=[3]", "test_levels=[150]", "max_length=30", "num_envs=2")
    out = generate(_config(f"checkpoints=[{multi},{single}]", "game=starpilot", *levels, f"out_dir={tmp_path / 'd'}"))
    infos = read_index(out)
    assert {(i.checkpoint, i.split, i.level_seed) for i in infos} == {
        (name, split, seed) for name in ("latest", "step_000000128") for split, seed in (("train", 3), ("test", 150))
    }
    assert {(i.game, i.distribution_mode) for i in infos} == {("starpilot", "easy")}
    demo_set = DemoSet.open(out)
    for info in infos:  # each replays frame for frame on its starpilot level
        demo = demo_set.load(info)
        frames, rewards, _ = _replay(info, demo)
        np.testing.assert_array_equal(demo.obs, frames)
        np.testing.assert_array_equal(demo.rewards, rewards)
    # Its other game too (the run's env.game is starpilot: game= picks among env.games, not env.game).
    out = generate(_config(f"checkpoints={multi}", "game=coinrun", *levels, f"out_dir={tmp_path / 'c'}"))
    infos = read_index(out)
    assert len(infos) == 2 and {i.game for i in infos} == {"coinrun"}
    demo_set = DemoSet.open(out)
    for info in infos:
        demo = demo_set.load(info)
        np.testing.assert_array_equal(demo.obs, _replay(info, demo)[0])


@pytest.mark.parametrize(
    "order, game, needle",
    [
        ("multi first", None, "no game= is set"),
        ("multi second", None, "no game= is set"),  # found by check_one_game, before any demo
        ("multi first", "fruitbot", "game=fruitbot is not one of them"),
    ],
)
def test_a_multi_game_checkpoint_without_one_of_its_games_is_one_line(
    multi_game_run, demonstrator_run, tmp_path, capsys, order, game, needle
):
    from tests.conftest import assert_one_line_error

    multi = multi_game_run / "checkpoints" / "latest.pt"
    single = demonstrator_run / "checkpoints" / "step_000000128.pt"
    files = [multi, single] if order == "multi first" else [single, multi]
    argv = [f"checkpoints=[{files[0]},{files[1]}]", "torch_threads=1", "device=cpu", f"out_dir={tmp_path / 'd'}"]
    with pytest.raises(SystemExit) as info:
        trex.generate_demos.main(argv + ([f"game={game}"] if game else []))
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, f"game: {multi} is a multi-game agent (coinrun, starpilot)", needle)
    assert not (tmp_path / "d").exists()


def test_two_play_threads_play_every_demo_exactly_and_the_same_each_run(demonstrator_run, tmp_path):
    """Each thread plays its share with its own random streams: the same demos every run, whichever thread is
    faster, each one replaying exactly on a new env of its level."""
    options = (f"checkpoints={demonstrator_run}", "train_levels=[3,4]", "test_levels=[]", "num_envs=2", "epsilon=0.3")
    runs = [DemoSet.open(generate(_config(*options, "play_threads=2", f"out_dir={tmp_path}/{n}"))) for n in "ab"]
    one_thread = read_index(generate(_config(*options, f"out_dir={tmp_path}/one")))
    assert runs[0].infos == runs[1].infos
    assert sorted(i.demo_id for i in runs[0].infos) == sorted(i.demo_id for i in one_thread)
    for info in runs[0].infos:
        a, b = runs[0].load(info), runs[1].load(info)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.obs, b.obs)
        frames, rewards, _ = _replay(info, a)
        np.testing.assert_array_equal(a.obs, frames)
        np.testing.assert_array_equal(a.rewards, rewards)
