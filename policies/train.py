"""Train an agent on the true reward or on a learned T-REX reward: one trainer for every algorithm.

    python -m policies.train -c configs/policy-ppo-learned.yaml reward.model=runs/trex-starpilot-trex-seed0

``agent.algo`` picks the learner from ``policies.registry``: ``ppo`` (the demonstrator's PPO,
``baseline_agent.train``), ``ppo_gru`` (recurrent PPO, ``policies.ppo_gru``), ``rainbow`` (Rainbow DQN,
``policies.rainbow``) or ``sb3_ppo`` (stable-baselines3's PPO, a reference for cross-checks).
``reward.source=learned`` puts the reward model ``reward.model`` on the training env
(``policies.reward_wrapper``); the true return is still logged (``charts/episodic_return``) beside the
learned one (``charts/learned_return``), and the held-out evaluation always plays the game's true reward.
A key set that the chosen algorithm or reward source never reads is refused with one line naming it.

The run folder and checkpoints are the foundation's (config.yaml, progress.csv, tb/,
checkpoints/step_<step>.pt and latest.pt, ``train.resume=true``), so ``test_policy.py RUN`` evaluates
every algorithm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from baseline_agent.train import Config as BaselineConfig
from policies.ppo_gru import GRUConfig
from policies.rainbow import RainbowConfig
from policies.registry import ALGORITHMS
from policies.reward_wrapper import RewardConfig, reward_wrapper
from procgen_common.cli import main_guard, train_main
from procgen_common.config import Checked
from procgen_common.runs import pick_device

Algo = Literal[tuple(ALGORITHMS)]
_SECTIONS = [set(a.resume_sections) for a in ALGORITHMS.values()]
ALGORITHM_SECTIONS = set.union(*_SECTIONS) - set.intersection(*_SECTIONS)
"""The config sections some algorithms read and others never do (``ppo``, ``gru``, ``rainbow``)."""


def first_set(section, default) -> str | None:
    """The first field of a config section whose value differs from ``default``'s (one left at its default is not
    set), or None."""
    return next(
        (f.name for f in dataclasses.fields(section) if getattr(section, f.name) != getattr(default, f.name)), None
    )


@dataclass(frozen=True)
class AgentConfig(Checked):
    """Which algorithm learns the policy."""

    algo: Algo = "ppo"
    """'ppo': the demonstrator's PPO; 'ppo_gru': recurrent PPO with a GRU (gru.*); 'rainbow': Rainbow DQN
    (rainbow.*); 'sb3_ppo': stable-baselines3's PPO with the Nature CNN (a reference for cross-checks)."""


@dataclass(frozen=True)
class RunConfig(Checked):
    """Where outputs go."""

    dir: str | None = None
    """Run folder; null = runs/<agent.algo>-<game>-<reward.source>-seed<seed> (several games: <game>+<game>...)."""


@dataclass(frozen=True)
class Config(BaselineConfig):
    """Agent training on the true or a learned reward (policies.train). The env, model, ppo, train, eval and
    log sections are the demonstrator's; ppo.* applies to ppo, ppo_gru and sb3_ppo. A key set away from its
    default that the chosen algorithm or reward source never reads (ppo.* under rainbow, rainbow.* under ppo,
    reward.sigmoid with reward.source=env...) is refused.

    Reward scaling, the Procgen paper's division by a running std of discounted returns, is applied once, by
    one of two keys: ppo.reward_scaling (on by default) inside ppo, ppo_gru and sb3_ppo (sb3_ppo through SB3's
    own VecNormalize, the same computation), or reward.scale for rainbow on a learned reward, in the reward
    wrapper (rainbow has none of its own). reward.scale is refused under the PPO agents, so the two never both
    apply. The learned reward is squashed by one key, reward.sigmoid."""

    run: RunConfig = field(default_factory=RunConfig)
    """Where outputs go."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """Which algorithm learns the policy."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The reward the agent trains on."""
    gru: GRUConfig = field(default_factory=GRUConfig)
    """Recurrent core (agent.algo=ppo_gru)."""
    rainbow: RainbowConfig = field(default_factory=RainbowConfig)
    """Rainbow DQN (agent.algo=rainbow)."""

    @property
    def steps_per_iteration(self) -> int:
        """Environment steps between two rows of progress.csv (and checkpoint opportunities)."""
        if self.agent.algo == "rainbow":
            return self.env.num_envs * self.rainbow.log_every
        return self.batch_size

    @property
    def run_dir(self) -> Path:
        if self.run.dir:
            return Path(self.run.dir)
        return Path("runs") / f"{self.agent.algo}-{self.env.label}-{self.reward.source}-seed{self.train.seed}"

    def validate(self) -> None:
        algo = self.agent.algo
        self._refuse_unused_keys()
        if algo == "rainbow":
            self._validate_rainbow()
        else:
            super().validate()  # checkpoint spacing and minibatches of a PPO update
        if algo == "ppo_gru" and self.env.num_envs % self.ppo.num_minibatches:
            raise ValueError(
                f"ppo.num_minibatches: ppo_gru's minibatches are groups of whole environments, so "
                f"{self.ppo.num_minibatches} must divide env.num_envs = {self.env.num_envs}"
            )
        if algo == "sb3_ppo":
            if self.model.arch != "nature":
                raise ValueError("model.arch: sb3_ppo uses SB3's CnnPolicy, the Nature CNN; set model.arch=nature")
            if self.train.precision != "fp32":
                raise ValueError("train.precision: sb3_ppo runs in fp32 only; set train.precision=fp32")

    def _refuse_unused_keys(self) -> None:
        algo, reward = self.agent.algo, self.reward
        for fld in dataclasses.fields(self):
            if fld.name in ALGORITHM_SECTIONS and fld.name not in ALGORITHMS[algo].resume_sections:
                key = first_set(getattr(self, fld.name), fld.default_factory())
                if key:
                    raise ValueError(f"{fld.name}.{key} is set but agent.algo={algo} does not use it")
        if reward.scale and algo != "rainbow":
            raise ValueError(
                f"reward.scale: {algo} scales rewards itself (ppo.reward_scaling); leave reward.scale false"
            )
        default = RewardConfig()
        key = reward.source == "env" and first_set(reward, default)
        if reward.source == "length":  # 1 per frame: no model, nothing of a model's output applies (scaling does)
            key = first_set(
                reward, dataclasses.replace(default, source="length", scale=reward.scale, scale_clip=reward.scale_clip)
            )
        if key:
            raise ValueError(f"reward.{key} is set but reward.source={reward.source} does not use it")
        if not reward.scale and reward.scale_clip != default.scale_clip:
            raise ValueError("reward.scale_clip is set but reward.scale=false does not use it")

    def _validate_rainbow(self) -> None:
        r, n = self.rainbow, self.train.num_checkpoints
        per = self.steps_per_iteration
        if n > 1 and self.train.total_steps / (n - 1) < per:
            fit = self.train.total_steps // per + 1
            raise ValueError(
                f"train.num_checkpoints: {n} checkpoints are closer than one log interval ({per} steps = "
                f"env.num_envs x rainbow.log_every) over {self.train.total_steps} steps; at most {fit} fit"
            )
        slots = r.buffer_size // self.env.num_envs
        if slots < r.n_step + 2:
            raise ValueError(
                f"rainbow.buffer_size: {r.buffer_size} leaves {slots} steps per environment; n-step returns need "
                f"at least {r.n_step + 2} (>= {(r.n_step + 2) * self.env.num_envs} transitions)"
            )
        sampleable = (slots - r.n_step) * self.env.num_envs
        if r.learning_starts > sampleable:
            raise ValueError(
                f"rainbow.learning_starts: {r.learning_starts} is more than a full buffer can replay "
                f"({sampleable}); lower it or raise rainbow.buffer_size"
            )


def train(config: Config) -> Path:
    """Train the configured agent on the configured reward; returns the run folder.

    A bad reward model (missing, corrupt, not a reward model, another game) stops here before any work.
    """
    algorithm = ALGORITHMS[config.agent.algo]
    gamma = config.rainbow.gamma if algorithm.name == "rainbow" else config.ppo.gamma
    wrap_env = reward_wrapper(config.reward, config.env, gamma, pick_device(config.train.device))
    return algorithm.train(config, wrap_env, algorithm.resume_sections)


*_others, _last = ALGORITHMS
DESCRIPTION = f"""Train an agent ({", ".join(_others)} or {_last}) on a Procgen game's true reward or on a learned
T-REX reward model, logging the true and the learned episode returns side by side. Writes config.yaml,
progress.csv, tb/ and checkpoints/ to run.dir; evaluate the result with `python test_policy.py RUN`."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    train_main(
        "python -m policies.train",
        DESCRIPTION,
        Config,
        "python -m policies.train -c configs/policy-ppo-learned.yaml reward.model=runs/trex-starpilot-trex-seed0",
        train,
        argv,
    )


if __name__ == "__main__":
    main()
