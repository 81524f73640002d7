"""The suite's algorithms, one entry each: what defines an algorithm, in one place.

An entry names the algorithm (``agent.algo``, and the ``algo`` its checkpoints carry), its own config section
beside the shared ones, its trainer, its checkpoint loader and the config sections a resume must keep.
``policies.train`` takes its ``agent.algo`` choices, its dispatch and its resume checks from ``ALGORITHMS``.

How checkpoints find their loader: ``procgen_common.agents.load_agent`` serves callers that never import this
package (``test_policy.py``, ``rec_video.py``, and ``trex.generate_demos``, which sits below it and may not),
so a hook that this module filled on import would leave them unable to load a ppo_gru, rainbow or sb3_ppo
checkpoint. The loaders are instead declared as entry points of the group ``procgen_trex.agents`` in
pyproject.toml, read from the installed package's metadata (``pip install -e .``, as install.sh does) and
imported only when a checkpoint of that kind is loaded: the shared layer names no module of this one, and
every caller loads every kind with no import of ours. tests/policies/test_registry.py checks that the entry
points name exactly these loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import baseline_agent.train
from policies import ppo_gru, rainbow, sb3_ppo
from procgen_common.agents import load_ppo_agent

Trainer = Callable[..., Path]
"""``train(config, wrap_env, must_match) -> run folder``: ``config`` a ``policies.train.Config``, ``wrap_env`` the
learned reward's wrapper or None, ``must_match`` the config sections a resume must keep."""


@dataclass(frozen=True)
class Algorithm:
    """One algorithm of the suite."""

    name: str
    """``agent.algo``, and the ``algo`` its checkpoints carry."""
    section: str | None
    """Its own config section (``gru``, ``rainbow``), or None where the shared ``ppo`` section is all it needs."""
    train: Trainer
    """Trains it and returns the run folder."""
    load_agent: Callable[..., object]
    """``load_agent(checkpoint, device) -> agent``: rebuilds a saved agent (``procgen_common.agents``)."""
    resume_sections: Sequence[str]
    """Config sections that must equal the saved run's for a resume (the reward too: another reward model
    would silently change what the agent learns): every section its results depend on, so ``policies.train``
    refuses a key set in a section that some algorithms read and this one does not (ppo.* under rainbow)."""


def _sections(*own: str) -> tuple[str, ...]:
    """Resume sections: the env and the model, an algorithm's own sections, then the agent and the reward."""
    return ("env", "model", *own, "agent", "reward")


_ALL = (  # name, section, train, load_agent, resume_sections
    Algorithm("ppo", None, baseline_agent.train.train, load_ppo_agent, _sections("ppo")),
    Algorithm("ppo_gru", "gru", ppo_gru.train, ppo_gru.load_ppo_gru_agent, _sections("ppo", "gru")),
    Algorithm("rainbow", "rainbow", rainbow.train, rainbow.load_rainbow_agent, _sections("rainbow")),
    Algorithm("sb3_ppo", None, sb3_ppo.train, sb3_ppo.load_sb3_ppo_agent, _sections("ppo")),
)
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in _ALL}
"""Every algorithm by name, in the order ``agent.algo``'s choices list them."""
