"""Demo files and index tables: exact round trips, self-validation, folder checks and uint8 packing."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
import zstandard

from procgen_common.cli import UserError
from tests.trex.conftest import synthetic_demo, write_synthetic_demos
from trex.demos import Demo, DemoSet, load_demo, load_frames, read_index, save_demo, write_index


def test_demo_file_round_trips_exactly(tmp_path):
    demo = synthetic_demo(np.random.default_rng(0), "train-x", "train", level_seed=3, step=128)
    save_demo(tmp_path / "d.npz.zst", demo)
    loaded = load_demo(tmp_path / "d.npz.zst")
    assert loaded.info == demo.info
    for name in ("obs", "actions", "rewards"):
        got, want = getattr(loaded, name), getattr(demo, name)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left
    # One Zstandard frame around a plain .npz (stored .npy entries, no pickles), smaller than the raw arrays.
    raw = zstandard.ZstdDecompressor().stream_reader((tmp_path / "d.npz.zst").read_bytes()).read()
    assert (tmp_path / "d.npz.zst").stat().st_size < len(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert sorted(e.filename for e in archive.infolist()) == ["actions.npy", "info.npy", "obs.npy", "rewards.npy"]
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        np.testing.assert_array_equal(data["obs"], demo.obs)


def test_older_zlib_demo_files_still_load(tmp_path):
    demo = synthetic_demo(np.random.default_rng(0), "train-x", "train", level_seed=3, step=128)
    info = {k: v for k, v in dataclasses.asdict(demo.info).items() if k != "epsilon"}  # written before the column
    np.savez_compressed(
        tmp_path / "old.npz", obs=demo.obs, actions=demo.actions, rewards=demo.rewards, info=np.array(json.dumps(info))
    )
    loaded = load_demo(tmp_path / "old.npz")
    assert loaded.info == demo.info and loaded.info.epsilon == 0.0
    np.testing.assert_array_equal(loaded.obs, demo.obs)


def test_demo_refuses_arrays_of_the_wrong_shape_or_dtype():
    demo = synthetic_demo(np.random.default_rng(0), "d", "train", level_seed=0, step=0)
    with pytest.raises(ValueError, match="obs: expected uint8"):
        Demo(demo.info, demo.obs.astype(np.float32), demo.actions, demo.rewards)
    with pytest.raises(ValueError, match="rewards: expected float32"):
        Demo(demo.info, demo.obs, demo.actions, demo.rewards[:-1])


def test_index_round_trips_with_types(tmp_path):
    rng = np.random.default_rng(1)
    infos = [synthetic_demo(rng, f"d{k}", "test", level_seed=k, step=k).info for k in range(3)]
    infos[1] = dataclasses.replace(infos[1], truncated=True, episode_return=-1.5)
    write_index(tmp_path, infos)
    assert read_index(tmp_path) == infos


def test_demo_set_reads_splits_and_loads_lazily(synthetic_demos):
    demo_set = DemoSet.open(synthetic_demos)
    assert demo_set.game == "starpilot" and demo_set.distribution_mode == "easy"
    assert len(demo_set.split("train")) == 40 and len(demo_set.split("test")) == 30
    info = demo_set.split("test")[0]
    assert demo_set.load(info).info == info


def test_load_frames_packs_demos_into_one_uint8_array(synthetic_demos):
    demo_set = DemoSet.open(synthetic_demos)
    infos = demo_set.split("train")[:3]
    frames = load_frames(demo_set, infos)
    assert frames.frames.dtype == np.uint8 and frames.frames.shape == (sum(i.length for i in infos), 64, 64, 3)
    np.testing.assert_array_equal(frames.lengths, [i.length for i in infos])
    for k, info in enumerate(infos):
        demo = demo_set.load(info)
        np.testing.assert_array_equal(frames.frames[frames.offsets[k] : frames.offsets[k + 1]], demo.obs)
        np.testing.assert_array_equal(frames.actions[frames.offsets[k] : frames.offsets[k + 1]], demo.actions)


def test_bad_demo_folders_are_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        DemoSet.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no demos"):
        DemoSet.open(tmp_path / "empty")

    mixed = write_synthetic_demos(tmp_path / "mixed", 2, 0)
    other = synthetic_demo(np.random.default_rng(5), "fruit", "train", level_seed=9, step=0, game="fruitbot")
    save_demo(mixed / other.info.file, other)
    write_index(mixed, [*read_index(mixed), other.info])
    with pytest.raises(UserError, match=r"mixes games or modes \(fruitbot \(easy\), starpilot \(easy\)\)"):
        DemoSet.open(mixed)

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "index.csv").write_text("episode,return\n0,1.0\n")
    with pytest.raises(UserError, match="row 2: column 'demo_id' is missing"):
        DemoSet.open(tmp_path / "other")
    bad = write_synthetic_demos(tmp_path / "bad", 2, 0)
    (bad / "index.csv").write_text((bad / "index.csv").read_text().replace(",False", ",maybe", 1))
    with pytest.raises(UserError, match="column 'truncated' has the bad value 'maybe'"):
        DemoSet.open(bad)

    gone = write_synthetic_demos(tmp_path / "gone", 2, 0)
    (gone / read_index(gone)[0].file).unlink()
    with pytest.raises(UserError, match="1 demo files in index.csv are missing"):
        DemoSet.open(gone)

    demo_set = DemoSet.open(write_synthetic_demos(tmp_path / "ok", 2, 0))
    with pytest.raises(UserError, match="holds starpilot .* but the model is for fruitbot"):
        demo_set.check_same_game("fruitbot", "easy", "the model")
    (demo_set.folder / demo_set.infos[0].file).write_bytes(b"not a demo")
    with pytest.raises(UserError, match="is not a readable demo file"):
        demo_set.load(demo_set.infos[0])


def test_an_index_of_random_bytes_is_one_line(tmp_path):
    (tmp_path / "index.csv").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match=r"index.csv is not a demo index \(not CSV text\)"):
        DemoSet.open(tmp_path)
    with pytest.raises(UserError, match="is a file, not a folder of demos"):
        DemoSet.open(tmp_path / "index.csv")
