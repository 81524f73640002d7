"""Shared pieces of the suite: the Procgen vector env, networks, configs, checkpoints and logging."""

import contextlib
import io

# Procgen and stable-baselines3 import the old `gym`, which prints a deprecation banner on stderr.
# Importing it once here, quietly, keeps that third-party notice out of every command's output.
with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(ImportError):
    import gym  # noqa: F401
