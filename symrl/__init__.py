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

from .agent import Agent, load
from .config import Config, make_config
from .errors import SymrlError, TrainingDiverged
from .losses import PolicyLoss, symmetric_a2c_loss, symmetric_ppo_loss
from .trainer import RunResult, Trainer, train

__version__ = "0.1.0"

__all__ = [
    "Agent", "Config", "PolicyLoss", "RunResult", "SymrlError", "Trainer", "TrainingDiverged",
    "load", "make_config", "symmetric_a2c_loss", "symmetric_ppo_loss", "train", "__version__",
]
