"""Update steps: one screen each for the A2C and PPO families (the symmetric versions included)."""

from .a2c import a2c_update
from .ppo import ppo_update

__all__ = ["a2c_update", "ppo_update"]
