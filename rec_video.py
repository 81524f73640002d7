"""Record videos of a saved agent, a stored demonstration, or what a learned reward rewards.

    python rec_video.py runs/ppo-starpilot-nature-seed0 --episodes 4 --grid 4
    python rec_video.py runs/ppo-starpilot-nature-seed0 --reward-model runs/trex-starpilot-trex-seed0 --trace
    python rec_video.py --demo runs/ppo-starpilot-nature-seed0/demos --demo-id test-step_000000000-level200-ep0

PATH is a checkpoint file or a run folder of the suite (its checkpoints/latest.pt, whose config gives the
game and level splits), or a stable-baselines3 .zip Procgen model (with --game). Each frame is upscaled
(nearest neighbour) with an overlay under it: step, action, true return so far and, with --reward-model,
the learned reward of the step and its running sum. A multi-game agent plays --episodes episodes of each of
its games, shown side by side in one video, one place of the grid per game (--game GAME records one of them
alone). Writes an H.264 mp4 that plays in browsers, or a GIF; works headless. The logic lives in
procgen_common/video.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from procgen_common.agents import load_agent, resolve_checkpoint
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.config import closest
from procgen_common.env import GAMES, EnvConfig
from procgen_common.episodes import Episode
from procgen_common.evaluation import checkpoint_splits, run_folder
from procgen_common.runs import pick_device
from procgen_common.sb3_agent import load_sb3_agent
from procgen_common.video import episode_frames, game_tiles, record_episodes, trace_frames, write_video
from trex.demos import DemoSet
from trex.evaluate_reward import member_rewards
from trex.reward_net import load_reward_net


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python rec_video.py",
        description="Record an mp4 (or GIF) of a saved agent or a stored demo, with an overlay of step, action, "
        "true return and, with --reward-model, the learned reward; --trace draws the learned reward curve beside "
        "the frames.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python rec_video.py runs/ppo-starpilot-nature-seed0 --episodes 4 --grid 4\n"
        "  python rec_video.py runs/ppo-starpilot-nature-seed0 --levels 200 201 --reward-model "
        "runs/trex-starpilot-trex-seed0 --trace\n"
        "  python rec_video.py runs/ppo-coinrun+starpilot-nature-seed0 --episodes 2   # one place per game\n"
        "  python rec_video.py sb3_model.zip --game starpilot --gif\n"
        "  python rec_video.py --demo runs/ppo-starpilot-nature-seed0/demos --demo-id ID --reward-model MODEL",
    )
    parser.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="checkpoint file (.pt), run folder (uses checkpoints/latest.pt) or stable-baselines3 .zip model "
        "(needs --game); omit with --demo",
    )
    agent = parser.add_argument_group("playing an agent")
    agent.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help="episodes to record (default: the --grid cells, the number of --levels, or 1); several episodes "
        "follow one another, or fill the grid's cells in turn; a multi-game agent plays N of each game, one "
        "after another in the game's place",
    )
    agent.add_argument(
        "--split",
        default="test",
        help="levels to play: train (the training levels), test (the held-out range of the run's config; the "
        "default), a further held-out split of it (test@S, env.test_splits) or all (Procgen's full distribution); "
        "SB3 models use the default split (train 0-199, test 200-1199)",
    )
    agent.add_argument(
        "--levels",
        type=int,
        nargs="+",
        metavar="SEED",
        help="play these level seeds instead (episode k plays the k-th, cycling through the list)",
    )
    agent.add_argument(
        "--grid",
        type=int,
        default=1,
        metavar="N",
        help="play N episodes at once, shown as a grid (not for a multi-game agent: its grid has one place per game)",
    )
    agent.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampling")
    agent.add_argument(
        "--max-steps", type=int, metavar="N", help="cut each episode after N steps (default: the game's own limit)"
    )
    agent.add_argument("--seed", type=int, default=0, help="seed for the level order and sampled actions (default 0)")
    agent.add_argument(
        "--game",
        choices=GAMES,
        metavar="GAME",
        help=f"Procgen game of an SB3 .zip model ({', '.join(GAMES)}), or the one game of a multi-game agent to "
        "record alone",
    )
    agent.add_argument(
        "--distribution-mode",
        choices=["easy", "hard", "extreme", "memory", "exploration"],
        default="easy",
        help="Procgen mode of an SB3 .zip model (default easy)",
    )
    demo = parser.add_argument_group("rendering a stored demonstration")
    demo.add_argument("--demo", metavar="DEMO_DIR", help="demo folder written by trex.generate_demos")
    demo.add_argument("--demo-id", metavar="ID", help="the demo to render (a demo_id of the folder's index.csv)")
    reward = parser.add_argument_group("learned reward")
    reward.add_argument(
        "--reward-model",
        metavar="MODEL",
        help="reward model file or reward run folder (its reward_net.pt): adds the learned reward of each step "
        "and its running sum to the overlay",
    )
    reward.add_argument(
        "--trace",
        action="store_true",
        help="reward trace video: each frame beside the curve of the learned per-step reward so far "
        "(needs --reward-model)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        metavar="FILE.mp4",
        help="output file, .mp4 or .gif (default: <run folder>/videos/<checkpoint>-<split>.mp4, or "
        "<demo folder>/videos/<demo id>.mp4)",
    )
    output.add_argument("--gif", action="store_true", help="write a GIF instead of an H.264 mp4")
    output.add_argument("--scale", type=int, default=4, metavar="K", help="upscale frames K times (default 4)")
    output.add_argument("--fps", type=int, default=15, help="frames per second (default 15)")
    output.add_argument("--device", default="cpu", help="torch device for the agent and reward model (default cpu)")
    args = parser.parse_args(argv)

    if (args.path is None) == (args.demo is None):
        raise UserError("give either PATH (an agent) or --demo DEMO_DIR --demo-id ID (a stored demo)")
    if (args.demo is None) != (args.demo_id is None):
        raise UserError("--demo and --demo-id go together: the demo folder and the id of one demo in it")
    if args.demo is not None:
        for name, value in (("--episodes", args.episodes), ("--levels", args.levels), ("--max-steps", args.max_steps)):
            if value is not None:
                raise UserError(f"{name} plays an agent; a stored demo (--demo) is rendered as it was recorded")
        if args.grid != 1:
            raise UserError("--grid plays an agent; a stored demo (--demo) is one episode")
    for name, value, low, high in (
        ("--episodes", args.episodes, 1, 10_000),
        ("--grid", args.grid, 1, 64),
        ("--max-steps", args.max_steps, 1, 100_000),
        ("--scale", args.scale, 1, 16),
        ("--fps", args.fps, 1, 120),
    ):
        if value is not None and not low <= value <= high:
            raise UserError(f"{name} must be between {low} and {high}, got {value}")
    if args.trace and args.reward_model is None:
        raise UserError("--trace draws the learned reward: give --reward-model MODEL")
    if args.trace and args.grid != 1:
        raise UserError("--trace shows one episode at a time: drop --grid")
    if args.episodes is None:
        args.episodes = len(args.levels) if args.levels else args.grid
    if args.episodes < args.grid:
        raise UserError(f"--episodes {args.episodes} is fewer than the {args.grid} cells of --grid")
    if args.out is not None:
        suffix = Path(args.out).suffix.lower()
        if suffix not in (".mp4", ".gif"):
            raise UserError(f"--out: {args.out} must end in .mp4 or .gif")
        if args.gif and suffix != ".gif":
            raise UserError(f"--out: {args.out} is not a .gif but --gif was given")
    return args


def level_split(env_config: EnvConfig, level_seed: int) -> str:
    """Which split of ``env_config`` a level belongs to: 'train', a held-out one ('test', 'test@1200') or 'other'."""
    for split in ("train", *env_config.held_out_splits):
        start, count = env_config.level_range(split)
        if count and start <= level_seed < start + count:
            return split
    return "other"


def load_player(args, device):
    """``(agent, env_config, checkpoint file, run folder)`` from PATH (a suite checkpoint or an SB3 .zip)."""
    path = Path(args.path)
    if path.suffix == ".zip":
        if args.game is None:
            raise UserError(f"--game: {path} is an SB3 model, which does not record its game; pass --game GAME")
        agent, _ = load_sb3_agent(path, device)
        return agent, EnvConfig(game=args.game, distribution_mode=args.distribution_mode), path, path.parent
    agent, _, env_config = load_agent(path, device)
    if args.game is not None:
        if args.game not in env_config.game_list:
            raise UserError(f"--game: {args.game} was asked for but {path} plays {', '.join(env_config.game_list)}")
        env_config = env_config.for_game(args.game)  # one game of a multi-game agent
    checkpoint = resolve_checkpoint(path)
    return agent, env_config, checkpoint, run_folder(checkpoint)


def load_reward_fn(model: str, game: str, mode: str, device):
    """The learned per-step reward of ``model`` as a ``RewardFn``, checked to be for ``game`` and ``mode``."""
    net, checkpoint = load_reward_net(model)
    trained_on = checkpoint.get("demos", {})
    if (trained_on.get("game"), trained_on.get("distribution_mode")) != (game, mode):
        raise UserError(
            f"--reward-model: {model} learned from {trained_on.get('game')} ({trained_on.get('distribution_mode')}) "
            f"demos, but the video plays {game} ({mode})"
        )
    net = net.to(device)
    return lambda obs, actions: member_rewards(net, obs, actions, device).mean(0)


def load_demo_episode(folder: str, demo_id: str) -> tuple[Episode, DemoSet]:
    demo_set = DemoSet.open(folder)
    ids = [info.demo_id for info in demo_set.infos]
    if demo_id not in ids:
        raise UserError(
            f"--demo-id: no demo {demo_id!r} in {folder}{closest(demo_id, ids)}; its index.csv lists {len(ids)} "
            f"demos, e.g. {ids[0]}"
        )
    demo = demo_set.load(demo_set.infos[ids.index(demo_id)])
    info = demo.info
    return Episode(demo.obs, demo.actions, demo.rewards, info.level_seed, info.truncated, name=demo_id), demo_set


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device, "--device")
    suffix = ".gif" if args.gif else ".mp4"
    trace = "-trace" if args.trace else ""

    if args.demo is not None:
        episode, demo_set = load_demo_episode(args.demo, args.demo_id)
        if args.reward_model:
            reward_fn = load_reward_fn(args.reward_model, demo_set.game, demo_set.distribution_mode, device)
            episode = episode.with_learned_rewards(reward_fn)
        episodes = [episode]
        in_grid, places = episodes, 1
        out = Path(args.out) if args.out else demo_set.folder / "videos" / f"{args.demo_id}{trace}{suffix}"
        print(f"demo {args.demo_id}: {demo_set.game}, level {episode.level_seed}", file=sys.stderr)
    else:
        agent, env_config, checkpoint, run_dir = load_player(args, device)
        games = env_config.game_list
        if len(games) > 1 and args.grid != 1:
            raise UserError(
                f"--grid: a multi-game agent's video has one place per game ({', '.join(games)}); drop --grid, "
                "or record one game with --game GAME"
            )
        if len(games) > 1 and args.reward_model:
            raise UserError(
                f"--reward-model: a reward model scores one game but {checkpoint} plays {', '.join(games)}; "
                "pick that game with --game GAME"
            )
        if len(checkpoint_splits(env_config, args.split, str(checkpoint))) > 1:  # one the agent lacks: one line
            raise UserError(f"--split: a video plays one split; choose one of {', '.join(env_config.held_out_splits)}")
        reward_fn = None
        if args.reward_model:
            reward_fn = load_reward_fn(args.reward_model, env_config.game, env_config.distribution_mode, device)
        if args.levels is None and args.split == "test" and not env_config.held_out:
            print("note: this agent trained on every level (num_levels=0): no level is held out", file=sys.stderr)
        torch.manual_seed(args.seed)
        episodes = record_episodes(
            agent,
            env_config,
            args.split,
            args.episodes,
            levels=args.levels,
            num_envs=max(args.grid, min(args.episodes, 8)),
            seed=args.seed,
            deterministic=args.deterministic,
            max_steps=args.max_steps,
            reward_fn=reward_fn,
        )
        where = "levels" if args.levels else args.split
        out = Path(args.out) if args.out else run_dir / "videos" / f"{checkpoint.stem}-{where}{trace}{suffix}"
        for k, e in enumerate(episodes):
            name = f"level {e.level_seed} ({level_split(env_config, e.level_seed)})"
            episodes[k] = dataclasses.replace(e, name=f"{e.name} {name}" if len(games) > 1 else name)  # e.name: game
        # The grid's places: --grid, or one per game of a multi-game agent, whose episodes come game after game.
        in_grid, places = (game_tiles(episodes, len(games)), len(games)) if len(games) > 1 else (episodes, args.grid)

    if args.trace:
        frames = (frame for episode in episodes for frame in trace_frames(episode, args.scale))
    else:
        frames = episode_frames(in_grid, args.scale, cells=places)
    count = write_video(out, frames, args.fps)

    for k, episode in enumerate(episodes):
        learned = "" if episode.learned_rewards is None else f", learned return {episode.learned_rewards.sum():.3f}"
        cut = " (cut at --max-steps)" if episode.truncated else ""
        print(f"episode {k}: {episode.name}, return {episode.true_return:g}, length {episode.length}{cut}{learned}")
    print(f"wrote {out} ({count} frames at {args.fps} fps)")
    return {"out": str(out), "frames": count, "episodes": episodes}


if __name__ == "__main__":
    main()
