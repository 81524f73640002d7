"""Image augmentation of reward-training frames, as pure seeded functions on uint8 batches.

A reward network that learns from the demos of a few levels can tell those levels apart by their look and rank
them instead of the behaviour in them; perturbing the frames it trains on is the cheapest regulariser against
that. Random shifts (RAD, Laskin et al. 2020; DrQ, Kostrikov et al. 2020) and colour changes improve held-out
returns of RL agents on Procgen (DrAC, Raileanu et al. 2021). Only the reward trainer augments; validation, the
held-out evaluation and the agents' learned reward always see the frames as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AUGMENTATIONS = ("shift", "color")
SHIFT_PAD = 4
"""Largest translation in pixels (RAD/DrQ pad 64x64 frames by 4, replicating the border, then crop)."""
COLOR_GAIN = 0.2
"""Per-channel gains are drawn from [1 - COLOR_GAIN, 1 + COLOR_GAIN]."""


def random_shift(frames: np.ndarray, rng: np.random.Generator, pad: int = SHIFT_PAD) -> np.ndarray:
    """Translate every frame by its own random offset in [-pad, pad] pixels on each axis, the border replicated.

    ``frames``: uint8 ``(N, H, W, C)``; returns a new array of the same shape and dtype.
    """
    n, height, width, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
    rows = dy[:, None] + np.arange(height)  # (N, H)
    cols = dx[:, None] + np.arange(width)  # (N, W)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_color(frames: np.ndarray, rng: np.random.Generator, gain: float = COLOR_GAIN) -> np.ndarray:
    """Scale each channel of every frame by its own random gain in [1 - gain, 1 + gain] (uint8 in, uint8 out)."""
    n, _, _, channels = frames.shape
    gains = rng.uniform(1 - gain, 1 + gain, (n, 1, 1, channels)).astype(np.float32)
    return np.clip(frames * gains + 0.5, 0, 255).astype(np.uint8)


def augment_frames(frames: np.ndarray, kinds: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Apply the augmentations ``kinds`` (names from ``AUGMENTATIONS``) in order; no kinds returns ``frames``."""
    for kind in kinds:
        if kind == "shift":
            frames = random_shift(frames, rng)
        elif kind == "color":
            frames = random_color(frames, rng)
        else:
            raise ValueError(f"augment: unknown augmentation {kind!r}; allowed {', '.join(AUGMENTATIONS)}")
    return frames
