"""Symmetric PPO with Stable-Baselines3: SPPO on CartPole, its scaled-PPO control, DSPPO on a continuous task.

    python examples/sb3_sppo.py --steps 50000 --seed 0

``SPPO`` is SB3's ``PPO`` with the symmetric policy loss; everything else (VecNormalize, callbacks,
save/load) is SB3's. Continuous tasks go through ``DiscretizeAction`` (11 bins per dimension).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from symrl.integrations.sb3 import SPPO, DiscretizeAction


def main(steps: int, seed: int) -> None:
    alpha, beta, z = 0.5, 1.0, -1.0
    settings = {
        "SPPO": {"alpha": alpha, "beta": beta, "z": z},
        # SPEC 1.1: SPPO's gradient is PPO's times alpha + beta |z|: the control that isolates that scale
        "scaled PPO": {"alpha": alpha + beta * abs(z), "beta": 0.0},
    }
    for name, kwargs in settings.items():
        # built just before training: SB3 seeds the global generators when a model is created
        model = SPPO("MlpPolicy", "CartPole-v1", seed=seed, **kwargs).learn(steps)
        mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
        print(f"{name:>10} on CartPole-v1 after {steps} steps: {mean:.1f} +- {std:.1f}")

    # DSPPO: Pendulum's torque in 11 bins, observations and rewards normalised as in the paper's MuJoCo runs
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=4, seed=seed, wrapper_class=DiscretizeAction,
                                    wrapper_kwargs={"bins": 11}))
    model = SPPO("MlpPolicy", env, alpha=0.5, beta=20.0, z=-1.0, n_steps=256, gamma=0.9, seed=seed).learn(steps)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "dsppo_pendulum.zip")
        loaded = SPPO.load(Path(tmp) / "dsppo_pendulum.zip", env=env)
    print(f"DSPPO on Pendulum-v1: action space {loaded.action_space}, beta {loaded.beta} (saved and loaded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.seed)
