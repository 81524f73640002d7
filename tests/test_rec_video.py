"""rec_video.py and procgen_common.video: the files decode as they should, the overlay tells the truth.

Videos are checked by decoding them again (OpenCV for frames and size, ffmpeg for the codec and pixel
format); overlay values are checked against a replay of the recorded actions in a fresh ProcgenVecEnv.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from procgen_common.agents import RandomAgent
from procgen_common.checkpoint import save_checkpoint
from procgen_common.config import to_dict
from procgen_common.env import EnvConfig, ProcgenVecEnv
from procgen_common.episodes import Episode
from procgen_common.video import (
    LINE_HEIGHT,
    episode_frames,
    even_size,
    find_ffmpeg,
    game_tiles,
    one_level_config,
    overlay_lines,
    overlay_values,
    record_episodes,
    record_eval_video,
    trace_frames,
    write_mp4,
)
from tests.conftest import REPO, assert_one_line_error
from tests.trex.conftest import write_synthetic_demos
from trex.reward_net import RewardNet, RewardNetConfig

SCRIPT = REPO / "rec_video.py"
PANEL = 6  # pixels under the overlay lines


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("rec_video", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """An untrained reward network saved as a reward-model file for starpilot (easy)."""
    config = RewardNetConfig(hidden_size=8)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("reward") / "reward_net.pt"
    save_checkpoint(
        path,
        {
            "algo": "reward_net",
            "step": 0,
            "config": {"reward_net": to_dict(config)},
            "model": RewardNet(config).state_dict(),
            "demos": {"game": "starpilot", "distribution_mode": "easy"},
        },
    )
    return path


def decode(path):
    """``(frames, width, height)`` of a video as OpenCV decodes it."""
    capture = cv2.VideoCapture(str(path))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, width, height


def stream_info(path) -> str:
    """ffmpeg's description of the video stream (codec, pixel format, size)."""
    err = subprocess.run([find_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return next(line for line in err.splitlines() if "Video:" in line)


def fake_episode(length: int, seed: int = 0, learned: bool = False) -> Episode:
    rng = np.random.default_rng(seed)
    rewards = (rng.random(length) < 0.3).astype(np.float32)
    return Episode(
        rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8),
        rng.integers(0, 15, length).astype(np.int64),
        rewards,
        level_seed=seed,
        learned_rewards=rng.normal(size=length) if learned else None,
    )


def test_cli_mp4_is_h264_yuv420p_with_one_frame_per_step(script, tiny_run, tmp_path):
    out = tmp_path / "v.mp4"
    summary = script.main([str(tiny_run), "--episodes", "2", "--max-steps", "12", "--scale", "2", "--out", str(out)])
    lengths = [e.length for e in summary["episodes"]]
    assert len(lengths) == 2 and all(1 <= n <= 12 for n in lengths)
    frames, width, height = decode(out)
    assert frames == summary["frames"] == sum(lengths)  # the episodes follow one another
    assert (width, height) == (128, 128 + 2 * LINE_HEIGHT + PANEL)  # 2x frame over a two-line panel
    info = stream_info(out)
    assert "h264" in info and "yuv420p" in info, info
    assert all(0 <= e.level_seed - 100 < 50 for e in summary["episodes"])  # the tiny run's test split


def test_overlay_values_match_a_replay_in_procgen(script, tiny_run, reward_model, tmp_path):
    summary = script.main(
        [str(tiny_run), "--levels", "7", "--max-steps", "150", "--scale", "1", "--fps", "30", "--seed", "1"]
        + ["--reward-model", str(reward_model), "--out", str(tmp_path / "v.mp4")]
    )
    (episode,) = summary["episodes"]
    values = overlay_values(episode)
    assert len(values) == episode.length == decode(tmp_path / "v.mp4")[0]
    assert episode.true_return > 0  # some steps paid a reward, so the running return is really checked

    net = RewardNet(RewardNetConfig(hidden_size=8))
    net.load_state_dict(torch.load(reward_model, weights_only=True)["model"])
    net.eval()
    env = ProcgenVecEnv(one_level_config(EnvConfig(game="starpilot"), 7), "train", num_envs=1)
    obs, true_return, learned_return = env.reset(), 0.0, 0.0
    try:
        for t, v in enumerate(values):
            assert np.array_equal(obs[0], episode.obs[t]), t  # frame t is the one action t was chosen on
            with torch.no_grad():
                learned = float(net.reward(torch.from_numpy(obs)))
            obs, rewards, dones, infos = env.step(np.array([v["action"]]))
            true_return += float(rewards[0])
            learned_return += learned
            assert v["step"] == t and v["level_seed"] == 7
            assert v["reward"] == pytest.approx(float(rewards[0]))
            assert v["return"] == pytest.approx(true_return)
            assert v["learned_reward"] == pytest.approx(learned, abs=1e-5)
            assert v["learned_return"] == pytest.approx(learned_return, abs=1e-4)
            if dones[0]:
                assert v["return"] == pytest.approx(infos[0]["episode"]["r"])
                assert t == len(values) - 1
    finally:
        env.close()
    last = overlay_lines(values[-1])
    assert last[1].startswith(f"return {episode.true_return:g}") and last[2].startswith("learned")


def test_gif_has_every_frame_and_loops(script, tiny_run, tmp_path):
    out = tmp_path / "v.gif"
    summary = script.main(
        [str(tiny_run), "--levels", "3", "--max-steps", "8", "--scale", "1", "--gif", "--out", str(out)]
    )
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == summary["frames"] == summary["episodes"][0].length
        assert gif.size == (64, 64 + 2 * LINE_HEIGHT + PANEL) and gif.info["loop"] == 0


def test_grid_plays_cells_in_step_and_greys_finished_ones():
    episodes = [fake_episode(n, seed=n) for n in (3, 5, 2, 4, 2)]  # cells: [3, 2], [5], [2], [4]
    frames = list(episode_frames(episodes, scale=1, cells=4))
    assert len(frames) == 5  # the longest cell's timeline
    cell_h = 64 + 2 * LINE_HEIGHT + PANEL
    assert frames[0].shape == (2 * cell_h + 2, 2 * 64 + 2, 3)
    # Cell 0 plays episode 0 then episode 4: its frame at time 3 is episode 4's first frame.
    np.testing.assert_array_equal(frames[3][:64, :64], episodes[4].obs[0])
    # Cell 2 (bottom left) ended after 2 frames: later it shows its last frame dimmed.
    np.testing.assert_array_equal(frames[1][cell_h + 2 : cell_h + 66, :64], episodes[2].obs[1])
    assert frames[4][cell_h + 2 + 40 : cell_h + 66, :64].max() < episodes[2].obs[1].max()


def test_trace_video_shows_frame_beside_the_reward_curve(tmp_path):
    episode = fake_episode(9, learned=True)
    frames = list(trace_frames(episode, scale=2, plot_width=300))
    assert len(frames) == 9
    cell_h = 128 + 3 * LINE_HEIGHT + PANEL
    assert frames[0].shape == (cell_h, 128 + 300, 3)
    np.testing.assert_array_equal(frames[5][:128, :128], np.repeat(np.repeat(episode.obs[5], 2, 0), 2, 1))
    assert write_mp4(tmp_path / "t.mp4", frames) == 9
    assert decode(tmp_path / "t.mp4") == (9, 428, cell_h)


def test_odd_sizes_are_padded_to_even():
    assert even_size(np.zeros((5, 7, 3), np.uint8)).shape == (6, 8, 3)
    assert even_size(np.zeros((4, 6, 3), np.uint8)).shape == (4, 6, 3)


def test_record_episodes_plays_listed_levels_in_order():
    episodes = record_episodes(
        RandomAgent(0), EnvConfig(game="starpilot"), levels=[11, 12, 13], episodes=4, num_envs=2, max_steps=5
    )
    assert [e.level_seed for e in episodes] == [11, 12, 13, 11]
    assert all(e.length == 5 and e.truncated for e in episodes)


def test_eval_video_for_trainers(tmp_path):
    config = EnvConfig(game="starpilot", num_levels=10, test_num_levels=5)
    path = record_eval_video(RandomAgent(0), config, tmp_path, step=128, episodes=2, scale=1, max_steps=6)
    assert path == tmp_path / "videos" / "eval-step_000000128.mp4"
    assert decode(path) == (6, 2 * 64 + 2, 64 + 2 * LINE_HEIGHT + PANEL)


def test_demo_trace_video(script, reward_model, tmp_path):
    demos = write_synthetic_demos(tmp_path / "demos", 2, 1)
    summary = script.main(["--demo", str(demos), "--demo-id", "test-2", "--reward-model", str(reward_model), "--trace"])
    out = demos / "videos" / "test-2-trace.mp4"
    assert summary["out"] == str(out)
    (episode,) = summary["episodes"]
    assert decode(out)[0] == episode.length == 30
    assert episode.learned_rewards is not None and episode.true_return == pytest.approx(30 * episode.rewards[0])


def test_sb3_zip_needs_game_and_plays(script, tmp_path, capsys):
    from stable_baselines3 import PPO

    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=1, num_threads=0))
    try:
        PPO("CnnPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu").save(tmp_path / "m.zip")
    finally:
        env.close()
    with pytest.raises(SystemExit) as info:
        script.main([str(tmp_path / "m.zip")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--game")
    summary = script.main([str(tmp_path / "m.zip"), "--game", "starpilot", "--max-steps", "4", "--scale", "1"])
    assert summary["out"] == str(tmp_path / "videos" / "m-test.mp4") and summary["frames"] == 4


@pytest.mark.parametrize(
    "case",
    ["missing", "text", "demo_id", "episodes", "scale_type", "trace", "out", "grid", "both", "levels"],
)
def test_bad_input_exits_2_with_one_line(script, tiny_run, reward_model, tmp_path, capsys, case):
    notes = tmp_path / "notes.pt"
    notes.write_text("not weights\n")
    demos = write_synthetic_demos(tmp_path / "demos", 1, 1) if case == "demo_id" else tmp_path
    run = str(tiny_run)
    argv, needle = {
        "missing": ([str(tmp_path / "nope")], "does not exist"),
        "text": ([str(notes)], "not a readable checkpoint"),
        "demo_id": (["--demo", str(demos), "--demo-id", "train-9"], "did you mean 'train-0'"),
        "episodes": ([run, "--episodes", "0"], "--episodes must be between 1"),
        "scale_type": ([run, "--scale", "big"], "invalid int value: 'big'"),
        "trace": ([run, "--trace"], "--reward-model"),
        "out": ([run, "--out", str(tmp_path / "v.avi")], "must end in .mp4 or .gif"),
        "grid": ([run, "--grid", "4", "--episodes", "2"], "fewer than the 4 cells"),
        "both": ([run, "--demo", str(tmp_path), "--demo-id", "x"], "either PATH"),
        "levels": ([run, "--levels", "-1"], "out of range"),
    }[case]
    with pytest.raises(SystemExit) as info:
        script.main(argv)
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, needle)
    assert not list(tmp_path.rglob("*.mp4"))


def test_real_cli_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "missing.pt", "does not exist")


def test_help_documents_every_option(script, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    source = SCRIPT.read_text().split("def parse_args")[1].split("args = parser.parse_args")[0]
    for option in set(re.findall(r'"(--[a-z-]+)"', source)):
        assert option in text, option


@pytest.fixture(scope="module")
def multi_game_run(tmp_path_factory):
    """A tiny run of one agent on coinrun and starpilot."""
    from tests.conftest import train_tiny

    return train_tiny(
        tmp_path_factory.mktemp("multi") / "run", "env.games=[coinrun,starpilot]", "env.test_num_levels=100",
        "env.test_splits=[300]",
    )  # fmt: skip


def test_a_named_held_out_split_plays_its_levels(script, multi_game_run, tmp_path):
    summary = script.main(
        [str(multi_game_run), "--game", "starpilot", "--split", "test@300", "--episodes", "2", "--max-steps", "4"]
        + ["--scale", "1", "--out", str(tmp_path / "s.mp4")]
    )
    assert [300 <= e.level_seed < 400 for e in summary["episodes"]] == [True, True]


def test_a_multi_game_agent_plays_one_place_per_game_side_by_side(script, multi_game_run, tmp_path):
    out = tmp_path / "mg.mp4"
    summary = script.main(
        [str(multi_game_run), "--episodes", "2", "--max-steps", "6", "--scale", "1", "--out", str(out)]
    )
    episodes = summary["episodes"]
    assert [e.name.split()[0] for e in episodes] == ["coinrun", "coinrun", "starpilot", "starpilot"]
    frames, width, height = decode(out)
    assert (width, height) == (2 * 64 + 2, 64 + 2 * LINE_HEIGHT + PANEL)  # two places, one row
    # Each place plays its game's two episodes one after another.
    assert frames == summary["frames"] == max(sum(e.length for e in episodes[:2]), sum(e.length for e in episodes[2:]))
    grid = next(episode_frames(game_tiles(episodes, 2), scale=1, cells=2))
    np.testing.assert_array_equal(grid[:64, :64], episodes[0].obs[0])  # coinrun on the left
    np.testing.assert_array_equal(grid[:64, 66:130], episodes[2].obs[0])  # starpilot on the right


def test_record_episodes_of_a_multi_game_config_plays_each_game():
    config = EnvConfig(games=["coinrun", "starpilot"], num_envs=2)
    episodes = record_episodes(RandomAgent(0), config, levels=[5], episodes=1, max_steps=3)
    assert [e.name for e in episodes] == ["coinrun", "starpilot"]
    for episode in episodes:  # each starts on its own game's level 5
        env = ProcgenVecEnv(one_level_config(EnvConfig(game=episode.name), 5), "train", num_envs=1)
        try:
            np.testing.assert_array_equal(env.reset()[0], episode.obs[0])
        finally:
            env.close()


def test_eval_video_of_a_multi_game_trainer_shows_each_game(tmp_path):
    config = EnvConfig(games=["coinrun", "starpilot"], num_envs=2, num_levels=10, test_num_levels=5)
    path = record_eval_video(RandomAgent(0), config, tmp_path, step=0, episodes=1, scale=1, max_steps=6)
    assert decode(path) == (6, 2 * 64 + 2, 64 + 2 * LINE_HEIGHT + PANEL)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--grid", "2"], ["--grid", "one place per game (coinrun, starpilot)", "--game GAME"]),
        (["--game", "fruitbot"], ["--game", "fruitbot", "plays coinrun, starpilot"]),
        (["--reward-model", "x"], ["--reward-model", "plays coinrun, starpilot", "--game GAME"]),
        (["--split", "test@999"], ["--split", "no split 'test@999'", "test@300"]),
        (["--split", "held-out"], ["--split", "a video plays one split", "test, test@300"]),
    ],
    ids=["grid", "game", "reward-model", "unknown-split", "several-splits"],
)
def test_bad_input_for_a_multi_game_agent_is_one_line(script, multi_game_run, tmp_path, capsys, argv, needles):
    with pytest.raises(SystemExit) as info:
        script.main([str(multi_game_run), *argv, "--out", str(tmp_path / "v.mp4")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert not list(tmp_path.iterdir())


def test_game_records_one_game_of_a_multi_game_agent(script, multi_game_run, tmp_path):
    out = tmp_path / "s.mp4"
    summary = script.main(
        [str(multi_game_run), "--game", "starpilot", "--levels", "5", "--max-steps", "4"]
        + ["--scale", "1", "--out", str(out)]
    )
    (episode,) = summary["episodes"]
    assert decode(out)[1] == 64  # one place
    env = ProcgenVecEnv(one_level_config(EnvConfig(game="starpilot"), 5), "train", num_envs=1)
    try:
        np.testing.assert_array_equal(env.reset()[0], episode.obs[0])
    finally:
        env.close()
