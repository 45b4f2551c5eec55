"""symrl: robust reinforcement learning with the symmetric RL loss (Byun & Perrault, ICML 2025).

Quick start::

    import symrl
    result = symrl.train(algo="sppo", env="CartPole-v1", total_steps=50_000, out="runs/cartpole")
    print(result.final_return)
    agent = symrl.load("runs/cartpole")
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
"""

import os
import sys

if "torch" not in sys.modules:  # read once, when PyTorch loads its OpenMP runtime (libgomp)
    # PyTorch's OpenMP threads spin for 300,000 rounds after each parallel region before they sleep; on a small
    # machine they then take the cores that Atari worker processes step games on (a rollout 20-30% slower on
    # 2 cores, benchmarks/RESULTS.md). A short spin keeps updates as fast. A value the user set is kept.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .agent import Agent, load  # noqa: E402
from .config import Config, make_config  # noqa: E402
from .errors import SymrlError, TrainingDiverged  # noqa: E402
from .losses import PolicyLoss, symmetric_a2c_loss, symmetric_ppo_loss  # noqa: E402
from .trainer import RunResult, Trainer, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Agent", "Config", "PolicyLoss", "RunResult", "SymrlError", "Trainer", "TrainingDiverged",
    "load", "make_config", "symmetric_a2c_loss", "symmetric_ppo_loss", "train", "__version__",
]
