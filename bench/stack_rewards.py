"""One ensemble from several reward models: an agent on it trains on the mean of their rewards.

    python bench/stack_rewards.py OUT.pt MODEL MODEL [MODEL ...]

The models must share a game and a network (e.g. the same bench/trex_levers.py variant with different seeds); the
ensemble's recorded per-frame mean, which reward.center subtracts, is the mean of theirs. OUT must not exist yet.
It prints how many distinct training-level demos the models learned from together: models trained with different
seeds draw different demos, so an ensemble of them can learn from more demos than each one did.
"""

from __future__ import annotations

from procgen_common.cli import OneLineParser, main_guard
from trex.reward_net import load_reward_net, stack_reward_nets


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python bench/stack_rewards.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the ensemble's reward_net.pt to write (a new file: an existing one is refused)")
    parser.add_argument("models", nargs="+", help="reward model files (.pt) or reward run folders, 2 or more")
    args = parser.parse_args(argv)
    out = stack_reward_nets(args.models, args.out)
    _, checkpoint = load_reward_net(out)
    members = [len(load_reward_net(model)[1].get("demo_ids", [])) for model in args.models]
    print(
        f"{out}: {len(members)} models, learned from {len(checkpoint.get('demo_ids', []))} distinct training-level "
        f"demos together ({', '.join(map(str, members))} each)"
    )


if __name__ == "__main__":
    main()
