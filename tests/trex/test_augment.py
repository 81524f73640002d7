"""Image augmentation of reward-training frames: identity when off, shapes kept, seeded, never outside training."""

from __future__ import annotations

import numpy as np
import pytest

import trex.train_reward
from tests.trex.conftest import reward_config
from trex.augment import SHIFT_PAD, augment_frames, random_color, random_shift


def _frames(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_no_augmentation_is_the_identity():
    frames = _frames()
    assert augment_frames(frames, [], np.random.default_rng(0)) is frames


@pytest.mark.parametrize("kinds", [["shift"], ["color"], ["shift", "color"]])
def test_augmentations_keep_shape_and_dtype_and_are_seeded(kinds):
    frames = _frames()
    out = augment_frames(frames, kinds, np.random.default_rng(1))
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, augment_frames(frames, kinds, np.random.default_rng(1)))
    assert not np.array_equal(out, augment_frames(frames, kinds, np.random.default_rng(2)))
    assert not np.array_equal(out, frames)


def test_shift_translates_each_frame_by_at_most_the_pad():
    frames = np.zeros((200, 64, 64, 3), dtype=np.uint8)
    frames[:, 30, 40] = 255  # one white pixel, far from the border
    out = random_shift(frames, np.random.default_rng(0))
    ys, xs = np.nonzero(out[..., 0])[1:]
    assert len(ys) == 200  # exactly one pixel per frame survives
    assert np.abs(ys - 30).max() == SHIFT_PAD and np.abs(xs - 40).max() == SHIFT_PAD
    assert len(set(zip(ys.tolist(), xs.tolist(), strict=True))) > 40  # frames move independently


def test_color_scales_channels_within_the_gain():
    frames = np.full((100, 64, 64, 3), 100, dtype=np.uint8)
    out = random_color(frames, np.random.default_rng(0)).astype(int)
    assert out.min() >= 80 and out.max() <= 120
    assert (out[:, 0, 0] == out[:, 5, 9]).all()  # one gain per frame and channel


def test_only_training_batches_are_augmented(synthetic_demos, tmp_path, monkeypatch):
    calls = []

    def counting(frames, kinds, rng):
        calls.append(len(frames))
        return augment_frames(frames, kinds, rng)

    monkeypatch.setattr(trex.train_reward, "augment_frames", counting)
    config = reward_config(
        synthetic_demos, tmp_path / "run", "train.augment=[shift,color]", "train.epochs=2", "data.pairs_per_epoch=64"
    )
    trex.train_reward.train(config)
    # 64 pairs in minibatches of 16, 2 epochs: 8 training batches; validation and both evaluations never augment.
    assert len(calls) == 8
    with pytest.raises(ValueError, match="augment: unknown augmentation 'flip'; allowed shift, color"):
        reward_config(synthetic_demos, tmp_path / "other", "train.augment=[flip]")
