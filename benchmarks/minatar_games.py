"""PPO with the minatar preset on each of the five MinAtar games: training steps per second (``Trainer.run``, evaluation
off), one game after another in this process. Run it in two checkouts to compare code before and after a change.

    python benchmarks/minatar_games.py                     # the cores the run may claim (2 on the dev machine)
    taskset -c 0 python benchmarks/minatar_games.py --torch-threads 1   # one core, as a study's runs get
"""

from __future__ import annotations

import argparse
import time

import symrl
from symrl.trainer import Trainer

GAMES = ["Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6, help="PPO iterations of 8,192 steps per game")
    parser.add_argument("--torch-threads", type=int, default=0, help="> 0: the run's torch_threads (and cores)")
    parser.add_argument("--games", nargs="+", default=GAMES, choices=GAMES)
    args = parser.parse_args()
    steps = args.iterations * 8192
    print("| game | steps/s |\n|---|---|")
    for game in args.games:
        cfg = symrl.make_config("ppo", f"MinAtar/{game}-v1", total_steps=steps, eval_episodes=0, progress=False,
                                tensorboard=False, seed=0, torch_threads=args.torch_threads)
        trainer = Trainer(cfg)
        start = time.perf_counter()
        trainer.run()
        print(f"| {game} | {steps / (time.perf_counter() - start):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
