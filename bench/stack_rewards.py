"""One ensemble from several reward models: an agent on it trains on the mean of their rewards.

    python bench/stack_rewards.py OUT.pt MODEL MODEL [MODEL ...]

The models must share a game and a network (e.g. the same bench/trex_levers.py variant with different seeds); the
ensemble's recorded per-frame mean, which reward.center subtracts, is the mean of theirs. OUT must not exist yet.
"""

from __future__ import annotations

from procgen_common.cli import OneLineParser, main_guard
from trex.reward_net import stack_reward_nets


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python bench/stack_rewards.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the ensemble's reward_net.pt to write (a new file: an existing one is refused)")
    parser.add_argument("models", nargs="+", help="reward model files (.pt) or reward run folders, 2 or more")
    args = parser.parse_args(argv)
    print(stack_reward_nets(args.models, args.out))


if __name__ == "__main__":
    main()
