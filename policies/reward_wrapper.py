"""The learned reward as an environment wrapper: any agent trains on a T-REX reward model unchanged.

``LearnedRewardVecEnv`` is a stable-baselines3 ``VecEnvWrapper`` (so it also works under SB3's
algorithms) that replaces each step's reward with the reward model's output for **the frame the
action was chosen on**: the frames T-REX learned from are the pre-action frames of demonstrations
(``trex.demos``). At an episode end the vector env has already reset, so the observation it returns
is the next episode's first frame; scoring that frame as the last step of the old episode was one of
the reasons policies on the learned reward failed in the earlier study of T-REX on Procgen (2020)
this suite descends from. The wrapper keeps the observation it last returned and scores that; for
``ProcgenVecEnv`` it equals ``infos[i]['terminal_observation']`` on the step that ends an episode.

Per step, in order: every ensemble member scores the frames in one no-grad batch; the members are
combined into ``mean - std_coef * std``, less a constant ``offset``; optionally squashed by a sigmoid (the
original T-REX trained PPO on sigmoid(r)); optionally divided by a running std of discounted learned returns
(the Procgen paper's reward scaling, ``baseline_agent.ppo.RewardScaler``). The scoring runs in ``step_async``,
while Procgen's C++ threads step the environments.

The true reward stays visible: ``infos[i]['true_reward']`` every step, and on the step that ends an
episode ``infos[i]['episode']`` gets ``learned_r`` (the episode's learned return, before the running
scaling, which changes over training) beside the true return ``r``, as imitation's
``RewardVecEnvWrapper`` keeps ``original_env_rew``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from baseline_agent.ppo import RewardScaler
from procgen_common.cli import UserError
from procgen_common.config import Checked, bounded
from procgen_common.env import EnvConfig
from trex.reward_net import RewardNet, load_reward_net


@dataclass(frozen=True)
class RewardConfig(Checked):
    """The reward the agent trains on: the game's own, a learned T-REX reward model's, or episode length's."""

    source: Literal["env", "learned", "length"] = "env"
    """'env': the game's reward; 'learned': the reward model in reward.model; 'length': 1 per frame, the reward of
    the episode-length baseline (T-REX's ranking by length, as a reward an agent can follow), against which a learned
    reward that only detects length shows no gain. The true reward is logged under 'learned' and 'length'."""
    model: str | None = None
    """The reward model for source=learned: a reward_net.pt file or a trex.train_reward run folder."""
    sigmoid: bool = False
    """Squash each learned reward with a sigmoid, as the original T-REX trained PPO on sigmoid(r): the one switch
    that squashes it here (refused for a model whose output is already bounded, reward_net.output)."""
    offset: float = 0.0
    """Subtracted from every learned reward (before the sigmoid). The ranking loss cannot see a constant per frame, so
    a model's per-frame mean is arbitrary, and a positive one pays the agent for every step it survives: set this to
    the reward's per-frame mean on the demos (bench/reward_per_frame.py prints it) to take that bonus away."""
    center: bool = False
    """Also subtract the model's mean reward per frame over the demos it learned from (recorded in its file by
    trex.train_reward): reward.offset without measuring it, so the agent is not paid for surviving."""
    std_coef: float = bounded(0.0, 0.0)
    """For an ensemble: reward = mean - std_coef * std over its members (0 = the mean; > 0 penalises frames
    the members disagree on)."""
    scale: bool = False
    """Divide learned rewards by a running std of discounted learned returns (the Procgen paper's reward
    scaling), for rainbow, which has none of its own; the PPO agents scale every reward with ppo.reward_scaling
    instead, and refuse this key, so the scaling never applies twice."""
    scale_clip: float = bounded(10.0, 0.0, low_open=True)
    """With scale: clip scaled rewards to [-scale_clip, scale_clip]."""
    batch_size: int = bounded(1024, 1)
    """Most frames the reward model scores in one forward pass."""

    def validate(self) -> None:
        if self.source == "learned" and not self.model:
            raise ValueError(
                "model: not set; reward.source=learned needs a reward model (a reward_net.pt file or a "
                "trex.train_reward run folder)"
            )
        if self.source == "length" and self.model:
            raise ValueError("model: reward.source=length pays 1 per frame and reads no reward model; unset it")


def combine_members(members: torch.Tensor, std_coef: float) -> torch.Tensor:
    """Ensemble rewards ``(K, B)`` -> ``mean - std_coef * std`` over members, ``(B,)`` (population std)."""
    mean = members.mean(0)
    if std_coef == 0.0 or members.shape[0] == 1:
        return mean
    return mean - std_coef * members.std(0, correction=0)


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replaces rewards with a reward model's score of the pre-action frame; true rewards stay in the infos.

    ``reward_net(frames, actions)`` maps uint8 frames ``(B, 64, 64, 3)`` (and int64 actions ``(B,)``,
    used when ``reward_net.config.use_action``) to rewards of every ensemble member, float ``(K, B)``,
    as ``trex.reward_net.RewardNet`` does. Its running scaler is saved in checkpoints under ``checkpoint_key``
    (``procgen_common.training_run``).
    """

    checkpoint_key = "reward_wrapper"

    def __init__(
        self,
        venv: VecEnv,
        reward_net: torch.nn.Module,
        *,
        sigmoid: bool = False,
        offset: float = 0.0,
        std_coef: float = 0.0,
        scale: bool = False,
        gamma: float = 0.99,
        clip: float = 10.0,
        batch_size: int = 1024,
        device: torch.device | str = "cpu",
    ):
        super().__init__(venv)
        self.device = torch.device(device)
        self.reward_net = reward_net.eval().to(self.device)
        self.use_action = bool(getattr(getattr(reward_net, "config", None), "use_action", False))
        self.sigmoid, self.offset, self.std_coef, self.batch_size = sigmoid, offset, std_coef, batch_size
        self.scaler = RewardScaler(self.num_envs, gamma, clip) if scale else None
        self._prev_obs: np.ndarray | None = None
        self._learned: np.ndarray | None = None
        self._learned_returns = np.zeros(self.num_envs, dtype=np.float64)

    @torch.no_grad()
    def score(self, frames: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """Learned rewards of uint8 frames ``(B, 64, 64, 3)`` (before running scaling), float32 ``(B,)``."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            x = torch.as_tensor(frames[chunk], device=self.device)
            a = torch.as_tensor(actions[chunk], device=self.device).long() if self.use_action else None
            reward = combine_members(self.reward_net(x, a).float(), self.std_coef) - self.offset
            if self.sigmoid:
                reward = torch.sigmoid(reward)
            out.append(reward)
        return torch.cat(out).cpu().numpy().astype(np.float32)

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._prev_obs = np.array(obs, copy=True)
        self._learned_returns[:] = 0.0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        assert self._prev_obs is not None, "reset() the env before stepping it"
        self.venv.step_async(actions)
        # The reward of this step depends only on the frame the action was chosen on (and the action),
        # never on what the step returns (after an auto-reset that is the next episode's first frame).
        self._learned = self.score(self._prev_obs, np.asarray(actions).reshape(self.num_envs))

    def step_wait(self):
        obs, true_rewards, dones, infos = self.venv.step_wait()
        learned = self._learned
        self._learned_returns += learned
        for i, info in enumerate(infos):
            info["true_reward"] = float(true_rewards[i])
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                infos[i]["episode"]["learned_r"] = float(self._learned_returns[i])
            self._learned_returns[i] = 0.0
        rewards = self.scaler(learned, dones) if self.scaler is not None else learned
        # A copy: the next step's reward scores exactly the frame the agent is given now.
        self._prev_obs = np.array(obs, copy=True)
        return obs, rewards, dones, infos

    def state_dict(self) -> dict:
        """The running reward scaler's state (empty without scaling), for resumable checkpoints."""
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


class LengthReward(torch.nn.Module):
    """1 for every frame: a stand-in reward model whose episode return is the episode's length."""

    def forward(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(1, len(frames), device=frames.device)


def load_reward_model(config: RewardConfig, env: EnvConfig) -> tuple[RewardNet, float]:
    """The reward model of ``config.model``, checked to come from demos of ``env``'s game and mode, and the offset
    to subtract from its rewards (``reward.offset``, plus its recorded per-frame mean with ``reward.center``).

    A missing, corrupt or foreign file raises ``CheckpointError``; a model of another game ``UserError``.
    """
    if not Path(config.model).exists():
        raise UserError(
            f"reward.model: {config.model} does not exist; train a reward model (python -m trex.train_reward -c "
            "configs/trex-reward-cpu.yaml) or set reward.model=PATH (a reward_net.pt or a trex.train_reward run folder)"
        )
    net, checkpoint = load_reward_net(config.model)
    demos = checkpoint.get("demos") or {}
    game, mode = demos.get("game"), demos.get("distribution_mode")
    if game is not None and env.game_list != [game]:
        key = "env.games" if env.games else "env.game"
        raise UserError(f"reward.model: {config.model} learned from {game} demos, but {key} is {env.label}")
    if config.sigmoid and net.config.output != "raw":
        raise UserError(
            f"reward.sigmoid: {config.model} already bounds its output (reward_net.output={net.config.output}); "
            "squashing it again would flatten its differences, so leave reward.sigmoid=false"
        )
    offset = config.offset
    if config.center:
        recorded = checkpoint.get("reward_per_frame")
        if not isinstance(recorded, dict) or "mean" not in recorded:
            raise UserError(
                f"reward.center: {config.model} records no per-frame mean (it was trained before trex.train_reward "
                "recorded one); retrain it, or set reward.offset to the mean bench/reward_per_frame.py prints"
            )
        offset += float(recorded["mean"])
    if mode is not None and mode != env.distribution_mode:
        print(
            f"note: reward.model learned from {mode}-mode demos; env.distribution_mode is {env.distribution_mode}",
            file=sys.stderr,
        )
    return net, offset


def reward_wrapper(
    config: RewardConfig, env: EnvConfig, gamma: float, device: torch.device | str
) -> Callable[[VecEnv], VecEnv] | None:
    """``wrap_env(env)`` putting the learned (or the length) reward on a training env, or None for the env's own
    reward.

    The reward model is loaded here, so a bad ``reward.model`` stops before any work.
    """
    if config.source == "env":
        return None
    net, offset = (LengthReward(), 0.0) if config.source == "length" else load_reward_model(config, env)
    return partial(
        LearnedRewardVecEnv,
        reward_net=net,
        sigmoid=config.sigmoid,
        offset=offset,
        std_coef=config.std_coef,
        scale=config.scale,
        gamma=gamma,
        clip=config.scale_clip,
        batch_size=config.batch_size,
        device=device,
    )
