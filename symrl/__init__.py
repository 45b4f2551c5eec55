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

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

# The public API, loaded on first use (PEP 562): `symrl --help` and `import symrl.cli` load no torch or Gymnasium.
_EXPORTS = {
    "Agent": "agent", "load": "agent", "Config": "config", "make_config": "config", "SymrlError": "errors",
    "TrainingDiverged": "errors", "PolicyLoss": "losses", "symmetric_a2c_loss": "losses",
    "symmetric_ppo_loss": "losses", "RunResult": "trainer", "Trainer": "trainer", "train": "trainer",
}
__all__ = [
    "Agent", "Config", "PolicyLoss", "RunResult", "SymrlError", "Trainer", "TrainingDiverged",
    "load", "make_config", "symmetric_a2c_loss", "symmetric_ppo_loss", "train", "__version__",
]

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .agent import Agent, load
    from .config import Config, make_config
    from .errors import SymrlError, TrainingDiverged
    from .losses import PolicyLoss, symmetric_a2c_loss, symmetric_ppo_loss
    from .trainer import RunResult, Trainer, train


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
