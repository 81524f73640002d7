"""Agents trained on the true or a learned (T-REX) reward: the reward wrapper, recurrent PPO, Rainbow DQN."""

# procgen_common first: it imports the old gym quietly, before stable-baselines3 would with a banner on stderr.
import procgen_common  # noqa: F401
