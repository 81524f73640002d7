"""The one episode player: demos (``trex.generate_demos``), evaluation and videos all play through
``play_episodes``, differing only in what each slot plays next (the caller's ``next_job``): on which env, with
which agent and how much epsilon noise (D-REX, Brown et al. 2019b).

Frame ``t`` of an episode is the frame action ``t`` was chosen on: on the step that ends an episode the env
already shows the next episode's first frame, which is never stored (see ``procgen_common.env``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from procgen_common.env import NUM_ACTIONS

MAX_LEVEL_SEED = 2**31 - 3  # Procgen seeds are int32; a one-level env also needs seed + 1 for its test range


@dataclass(frozen=True)
class Episode:
    """One played (or stored) episode of ``T`` steps: ``obs[t]`` is the frame ``actions[t]`` was chosen on."""

    obs: np.ndarray | None
    """Pre-action frames, uint8 ``(T, 64, 64, 3)``, or None where the player kept no frames."""
    actions: np.ndarray
    """Actions, int64 ``(T,)``."""
    rewards: np.ndarray
    """True rewards, float32 ``(T,)``: ``rewards[t]`` is what action ``t`` earned."""
    level_seed: int
    """The Procgen level the episode was played on (-1 where unknown)."""
    truncated: bool = False
    """True when the episode was cut at ``max_steps`` instead of ended by the game."""
    learned_rewards: np.ndarray | None = None
    """Learned reward of each step, float64 ``(T,)``, or None without a reward model."""
    name: str = ""
    """A label for summaries (e.g. a demo id)."""
    job: Any = None
    """The ``Job.label`` it was played for (the caller's own: a demo job, an episode number)."""

    def __post_init__(self):
        T = len(self.actions)
        if (self.obs is not None and self.obs.shape[0] != T) or len(self.rewards) != T or T == 0:
            raise ValueError(f"obs, actions and rewards must share a length >= 1; got {T} actions")
        if self.learned_rewards is not None and len(self.learned_rewards) != T:
            raise ValueError(f"learned_rewards: length {len(self.learned_rewards)}, expected {T}")

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def true_return(self) -> float:
        return float(self.rewards.sum(dtype=np.float64))

    def with_learned_rewards(self, reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Episode:
        """A copy with ``learned_rewards`` computed by ``reward_fn(frames, actions)``."""
        learned = np.asarray(reward_fn(self.obs, self.actions), dtype=np.float64).reshape(-1)
        return dataclasses.replace(self, learned_rewards=learned)


@dataclass(frozen=True)
class Job:
    """What a slot plays next."""

    label: Any = None
    """Handed back as ``Episode.job``."""
    agent: int = 0
    """Key of the agent that plays it."""
    epsilon: float = 0.0
    """Probability of replacing each action by a uniformly random one."""
    env: VecEnv | None = None
    """A one-env env standing at an episode's first frame (reset, or just past an episode's end); None: go on
    with the slot's env (cut at ``max_steps``, it stands mid-episode)."""
    state: bytes | None = None
    """With a shared vector env: a Procgen state taken at an episode's first frame (``ProcgenVecEnv.get_state``)
    that the slot's row is set to first, so each row can play any level; None: go on with the row as it stands."""


def as_lists(obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray, infos: list) -> tuple:
    """A vector env step's rewards and done flags as Python lists: the player reads them one row at a time, where
    numpy scalars cost about a microsecond each."""
    return obs, rewards.tolist(), dones.tolist(), infos


def play_episodes(
    agents: Callable[[int], Any],
    num_slots: int,
    next_job: Callable[[int, Episode | None], Job | None],
    env: VecEnv | None = None,
    deterministic: bool = False,
    max_steps: int | None = None,
    keep_frames: bool = True,
    rng: np.random.Generator | None = None,
    idle_act: bool = True,
) -> Iterator[Episode]:
    """Play ``num_slots`` episodes at a time in one batched step loop; yield each whole as it ends (step by step,
    slots in index order within a step). ``next_job(slot, None)`` gives a slot its first job, ``next_job(slot,
    episode)`` its next one; None: nothing left. The slots are the rows of the vector env ``env`` (a job's
    ``state`` moves its row to another level), or (``env`` None) each plays on its jobs' one-env envs; the caller
    builds and closes envs. ``agents(k)`` gives the agent of ``Job.agent == k``; each step forwards one batch per
    agent in key order, its state (None or one row per slot) kept per slot; actions are then replaced with
    probability ``Job.epsilon`` by uniform ones from ``rng``.
    With ``idle_act`` a slot with nothing left keeps acting and stepping (its episodes dropped), so the batch
    keeps one shape and sampled actions do not depend on when slots finish; without, it leaves the batch.
    """
    envs: list[VecEnv | None] = [env] * num_slots
    jobs: list[Job | None] = [None] * num_slots
    agent_of = np.zeros(num_slots, dtype=np.int64)  # the agent key of each slot's current (or last) job
    active = np.zeros(num_slots, dtype=bool)  # slots in the batch: playing, or idle but acting
    loaded: dict[int, tuple[Any, Any]] = {}  # agent key -> (agent, state with one row per slot)
    obs = np.zeros((num_slots, 64, 64, 3), dtype=np.uint8)
    if env is not None:
        obs[:] = env.reset()
    buffers: list[tuple[list, list, list]] = [([], [], []) for _ in range(num_slots)]

    def start(slot: int, ended: Episode | None) -> None:
        job = jobs[slot] = next_job(slot, ended)
        buffers[slot] = ([], [], [])
        if job is None:
            active[slot] = idle_act and active[slot]
            return
        if job.env is not None:
            assert env is None, "a slot of a shared vector env cannot change envs"
            envs[slot], obs[slot] = job.env, job.env.get_images()[0]
        if job.state is not None:
            assert env is not None, "a state is restored on a row of the shared vector env"
            obs[slot] = env.set_state([job.state], [slot])[0]
        agent_of[slot], active[slot] = job.agent, True
        if job.agent not in loaded:
            agent = agents(job.agent)
            loaded[job.agent] = agent, agent.initial_state(num_slots)

    for slot in range(num_slots):
        start(slot, None)
    while any(job is not None for job in jobs):
        acting = np.flatnonzero(active)
        for k in [k for k in loaded if k not in agent_of[acting]]:
            del loaded[k]
        actions = np.zeros(num_slots, dtype=np.int64)
        for k in sorted(loaded):
            agent, state = loaded[k]
            mine = acting[agent_of[acting] == k].tolist()
            episode_start = np.array([not buffers[i][1] for i in mine])
            given = None if state is None else state[mine]
            chosen, new_state = agent.act(obs[mine], given, episode_start, deterministic)
            if state is not None:
                state[mine] = new_state
            actions[mine] = np.asarray(chosen, dtype=np.int64)
        playing = [i for i in acting if jobs[i] is not None]
        epsilons = np.array([jobs[i].epsilon for i in playing])
        if epsilons.any():
            noisy = np.array(playing)[rng.random(len(playing)) < epsilons]
            actions[noisy] = rng.integers(0, NUM_ACTIONS, len(noisy))

        if env is not None:
            env.step_async(actions)
            results = dict.fromkeys(acting.tolist(), as_lists(*env.step_wait()))
        else:
            for i in acting:
                envs[i].step_async(actions[i : i + 1])
            results = {i: as_lists(*envs[i].step_wait()) for i in acting.tolist()}
        chosen = actions.tolist()
        for slot in acting.tolist():
            next_obs, reward, done, info = results[slot]
            row = slot if env is not None else 0
            frames, acts, rewards = buffers[slot]
            if keep_frames and jobs[slot] is not None:
                frames.append(obs[slot].copy())
            acts.append(chosen[slot])
            rewards.append(reward[row])
            obs[slot] = next_obs[row]
            cut = max_steps is not None and len(acts) >= max_steps and jobs[slot] is not None
            if jobs[slot] is None or not (done[row] or cut):
                buffers[slot] = ([], [], []) if done[row] else buffers[slot]  # an idle slot's episode is dropped
                continue
            episode = Episode(
                np.stack(frames) if keep_frames else None,
                np.array(acts, dtype=np.int64),
                np.array(rewards, dtype=np.float32),
                int(info[row]["level_seed"]),
                truncated=not done[row],
                job=jobs[slot].label,
            )
            yield episode
            start(slot, episode)
