"""Bad input to policies.train: one line on stderr naming the problem, exit status 2, no traceback, no run
folder; and the presets in configs/ load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from policies.train import AgentConfig, Config, main
from procgen_common.checkpoint import save_checkpoint
from procgen_common.config import ConfigError, load_config
from tests.conftest import REPO, assert_one_line_error, run_cli
from tests.policies.conftest import policy_overrides, save_reward_model


def test_unknown_algo_suggests_the_closest_through_the_command():
    result = run_cli(["-m", "policies.train", "agent.algo=ppo_gr"], cwd=REPO)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "agent.algo", "'ppo_gr'", "did you mean 'ppo_gru'", "rainbow")


def _fails(capsys, run_dir: Path, args: list[str], *needles: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert not run_dir.exists()  # refused before any work


def test_learned_reward_without_a_model(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _fails(capsys, run_dir, policy_overrides(run_dir, "ppo", "reward.source=learned"), "reward.model", "not set")


def test_reward_model_that_does_not_exist(tmp_path, capsys):
    run_dir, missing = tmp_path / "run", tmp_path / "nowhere" / "reward_net.pt"
    args = policy_overrides(run_dir, "rainbow", "reward.source=learned", f"reward.model={missing}")
    _fails(capsys, run_dir, args, f"reward.model: {missing}", "does not exist")


def test_reward_model_folder_without_reward_net(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = policy_overrides(run_dir, "ppo", "reward.source=learned", f"reward.model={tmp_path}")
    _fails(capsys, run_dir, args, str(tmp_path / "reward_net.pt"), "does not exist")


def test_reward_model_file_that_is_not_a_checkpoint(tmp_path, capsys):
    run_dir, junk = tmp_path / "run", tmp_path / "reward_net.pt"
    junk.write_text("not a reward model")
    args = policy_overrides(run_dir, "ppo_gru", "reward.source=learned", f"reward.model={junk}")
    _fails(capsys, run_dir, args, str(junk), "not a readable checkpoint")


def test_reward_model_file_that_holds_a_policy(tmp_path, capsys):
    run_dir, policy = tmp_path / "run", tmp_path / "latest.pt"
    save_checkpoint(policy, {"algo": "ppo", "step": 0, "config": {}, "model": {}})
    args = policy_overrides(run_dir, "ppo", "reward.source=learned", f"reward.model={policy}")
    _fails(capsys, run_dir, args, str(policy), "'ppo' model, not a reward model")


def test_reward_model_of_another_game(tmp_path, capsys):
    run_dir = tmp_path / "run"
    coinrun = save_reward_model(tmp_path / "coinrun.pt", game="coinrun")
    args = policy_overrides(run_dir, "ppo", "reward.source=learned", f"reward.model={coinrun}")
    _fails(capsys, run_dir, args, "reward.model", "coinrun demos", "env.game is starpilot")


BAD_SETTINGS = {
    "scale-under-ppo": (["reward.scale=true"], ["reward.scale", "ppo.reward_scaling"]),
    "gru-minibatches": (
        ["agent.algo=ppo_gru", "ppo.num_steps=12", "ppo.num_minibatches=3"],
        ["ppo.num_minibatches", "env.num_envs = 4"],
    ),
    "rainbow-buffer": (["agent.algo=rainbow", "rainbow.buffer_size=8"], ["rainbow.buffer_size", "n-step"]),
    "rainbow-learning-starts": (
        ["agent.algo=rainbow", "rainbow.learning_starts=100000"],
        ["rainbow.learning_starts", "100000"],
    ),
    "rainbow-atoms": (["agent.algo=rainbow", "rainbow.v_min=5", "rainbow.v_max=5"], ["rainbow.v_min", "v_max"]),
    "sb3-impala": (["agent.algo=sb3_ppo", "model.arch=impala"], ["model.arch", "nature"]),
    "unknown-source": (["reward.source=true"], ["reward.source", "env, learned"]),
    "negative-std-coef": (["reward.std_coef=-1"], ["reward.std_coef", "out of range"]),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_bad_settings_are_refused_in_one_line(case, tmp_path):
    extra, needles = BAD_SETTINGS[case]
    with pytest.raises(ConfigError) as info:
        load_config(Config, None, policy_overrides(tmp_path / "run", "ppo", *extra))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


LEARNED = ["reward.source=learned", "reward.model=reward_net.pt"]
# (algorithm, overrides, the one line that refuses them): a key set away from its default that nothing reads.
UNUSED_KEYS = {
    "ppo-key-under-rainbow": ("rainbow", ["ppo.num_epochs=2"], "ppo.num_epochs is set but agent.algo=rainbow"),
    "ppo-scaling-under-rainbow": ("rainbow", ["ppo.reward_scaling=false"], "ppo.reward_scaling is set but agent"),
    "rainbow-key-under-ppo": ("ppo", ["rainbow.n_step=5"], "rainbow.n_step is set but agent.algo=ppo"),
    "rainbow-key-under-sb3": ("sb3_ppo", ["rainbow.gamma=0.9"], "rainbow.gamma is set but agent.algo=sb3_ppo"),
    "gru-key-under-ppo": ("ppo", ["gru.log_rnn_stats=true"], "gru.log_rnn_stats is set but agent.algo=ppo"),
    "gru-key-under-rainbow": ("rainbow", ["gru.hidden_size=8"], "gru.hidden_size is set but agent.algo=rainbow"),
    "sigmoid-on-the-game-reward": ("ppo", ["reward.sigmoid=true"], "reward.sigmoid is set but reward.source=env"),
    "model-on-the-game-reward": ("ppo_gru", ["reward.model=r.pt"], "reward.model is set but reward.source=env"),
    "scale-on-the-game-reward": ("rainbow", ["reward.scale=true"], "reward.scale is set but reward.source=env"),
    "clip-without-scale": ("rainbow", [*LEARNED, "reward.scale_clip=5"], "reward.scale_clip is set but reward.scale"),
    "sigmoid-on-length": (
        "ppo",
        ["reward.source=length", "reward.sigmoid=true"],
        "reward.sigmoid is set but reward.so",
    ),
    "center-on-length": (
        "ppo_gru",
        ["reward.source=length", "reward.center=true"],
        "reward.center is set but reward.s",
    ),
    "offset-on-length": ("rainbow", ["reward.source=length", "reward.offset=1"], "reward.offset is set but reward.sou"),
}


@pytest.mark.parametrize("case", UNUSED_KEYS)
def test_a_key_the_algorithm_or_reward_never_reads_is_refused_in_one_line(case, tmp_path):
    algo, extra, refusal = UNUSED_KEYS[case]
    with pytest.raises(ConfigError) as info:
        load_config(Config, None, policy_overrides(tmp_path / "run", algo, *extra))
    assert str(info.value).startswith(refusal) and "does not use it (in the defaults or the command line)" in str(
        info.value
    )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("algo", ["ppo", "ppo_gru", "rainbow", "sb3_ppo"])
def test_keys_at_their_defaults_are_not_set(algo, tmp_path):
    # What a saved config.yaml holds: every section spelled out, the unread ones at their defaults.
    defaults = ["ppo.num_epochs=3", "ppo.reward_scaling=true", "gru.hidden_size=256", "rainbow.n_step=3"]
    reward = ["reward.sigmoid=false", "reward.scale_clip=10", "reward.model=null"]
    config = load_config(Config, None, policy_overrides(tmp_path / "run", algo, *defaults, *reward))
    assert config.agent.algo == algo


def test_the_length_reward_takes_no_model_and_rainbow_may_scale_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^reward\.model: reward\.source=length pays 1 per frame and reads no"):
        load_config(
            Config, None, policy_overrides(tmp_path / "run", "ppo", "reward.source=length", "reward.model=r.pt")
        )
    scaled = ["reward.source=length", "reward.scale=true", "reward.scale_clip=5"]
    config = load_config(Config, None, policy_overrides(tmp_path / "run", "rainbow", *scaled))
    assert (config.reward.source, config.reward.scale, config.reward.scale_clip) == ("length", True, 5.0)


def test_switching_the_algorithm_through_replace_checks_the_keys_again(tmp_path):
    config = load_config(Config, None, policy_overrides(tmp_path / "run", "ppo"))  # sets ppo.num_steps=16
    with pytest.raises(ConfigError, match=r"^ppo\.num_steps is set but agent\.algo=rainbow does not use it$"):
        dataclasses.replace(config, agent=AgentConfig("rainbow"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.agent.algo = "rainbow"


def test_cli_refuses_an_unused_key_in_one_line(tmp_path):
    args = ["-m", "policies.train", "agent.algo=rainbow", "ppo.num_epochs=2", f"run.dir={tmp_path / 'run'}"]
    result = run_cli(args, cwd=REPO)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "error: ppo.num_epochs is set but agent.algo=rainbow does not use it")
    assert not (tmp_path / "run").exists()


def test_presets_load_and_name_their_run_folders():
    presets = sorted((REPO / "configs").glob("policy-*.yaml"))
    seen = set()
    for path in presets:
        config = load_config(Config, path)
        seen.add((config.agent.algo, config.reward.source))
        assert config.model.arch == "nature"
        assert config.run_dir == Path("runs") / f"{config.agent.algo}-starpilot-{config.reward.source}-seed0"
        if config.reward.source == "learned":
            assert config.reward.model
    assert {(a, s) for a in ("ppo", "ppo_gru", "rainbow") for s in ("env", "learned")} <= seen


def test_help_lists_the_policy_sections(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    keys = ("agent.algo", "reward.model", "reward.std_coef", "gru.hidden_size", "rainbow.replay_ratio", "ppo.gamma")
    for key in keys:
        assert key in out
