"""What does a learned reward pay for? Its per-frame reward on a demo set, by rung and by the frames that earn points.

    python bench/reward_per_frame.py MODEL DEMO_DIR [--split test|train|all]

For every rung of the demos (checkpoint and noise level): the true return, the episode length, the learned return
and the learned reward per frame (mean, and its spread within an episode); then, over all frames, the mean learned
reward on the frames whose action earned a true reward against the others. A reward whose per-frame mean is the same
on every rung ranks episodes by their length; one that pays more on the frames that earn points has learned the task.
"""

from __future__ import annotations

import numpy as np
import torch

from procgen_common.cli import OneLineParser, main_guard
from trex.demos import DemoSet, load_demo
from trex.generate_demos import index_order
from trex.reward_net import load_reward_net


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python bench/reward_per_frame.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="reward model file (.pt) or reward run folder")
    parser.add_argument("demo_dir", help="demo folder (trex.generate_demos)")
    parser.add_argument(
        "--split", choices=["test", "train", "all"], default="test", help="demos to score (default test)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net, _ = load_reward_net(args.model)
    demos = DemoSet.open(args.demo_dir)
    rungs: dict[tuple, list] = {}
    earning, other = [], []
    for info in sorted(demos.infos, key=index_order):
        if args.split != "all" and info.split != args.split:
            continue
        demo = load_demo(demos.folder / info.file)
        with torch.no_grad():
            reward = net(torch.as_tensor(demo.obs), torch.as_tensor(demo.actions)).float().mean(0).numpy()
        rungs.setdefault((info.checkpoint, info.epsilon), []).append(
            (info.episode_return, info.length, reward.sum(), reward.mean(), reward.std())
        )
        earning.append(reward[demo.rewards > 0])
        other.append(reward[demo.rewards <= 0])
    print(f"{'checkpoint':<22} {'epsilon':>7} {'demos':>5} {'return':>7} {'length':>7} {'learned':>8} "
          f"{'per frame':>9} {'within-ep std':>13}")  # fmt: skip
    for (checkpoint, epsilon), rows in rungs.items():
        m = np.mean(rows, 0)
        print(f"{checkpoint:<22} {epsilon:>7g} {len(rows):>5} {m[0]:>7.2f} {m[1]:>7.1f} {m[2]:>8.2f} {m[3]:>9.4f} "
              f"{m[4]:>13.4f}")  # fmt: skip
    everything = np.concatenate(earning + other)
    earning, other = np.concatenate(earning), np.concatenate(other)
    print(f"all {len(everything)} frames: {everything.mean():.4f} ± {everything.std():.4f} "
          f"(min {everything.min():.4f}); "
          f"frames that earn points {earning.mean() if len(earning) else float('nan'):.4f} ({len(earning)}), "
          f"the others {other.mean():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
