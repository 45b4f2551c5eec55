"""Measure the uniform-random policy's mean episode return of environments, for symrl/anchors.yaml.

    python scripts/measure_random_scores.py CartPole-v1 Acrobot-v1 --episodes 100

Episode i is reset with seed i and its actions are drawn from the action space seeded with i, so the numbers
are reproducible. Prints one YAML line per environment, to paste under ``random`` in symrl/anchors.yaml.
"""

from __future__ import annotations

import argparse

import numpy as np

from symrl.envs.registry import gym_make


def random_return(env_id: str, episodes: int) -> float:
    env = gym_make(env_id)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("envs", nargs="+")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    for env_id in args.envs:
        print(f"{env_id}: {{random: {random_return(env_id, args.episodes):.4g}}}  # {args.episodes} episodes, seeds 0-{args.episodes - 1}")


if __name__ == "__main__":
    main()
