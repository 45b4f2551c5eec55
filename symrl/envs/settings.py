"""What the environment code reads of a run's settings: :class:`EnvSettings`. A :class:`symrl.Config` has these
fields; the environments depend on this list, not on the config module (DESIGN: Envs never import Config)."""

from __future__ import annotations

from typing import Mapping, Protocol


class EnvSettings(Protocol):
    env: str  # a registered Gymnasium id
    env_kwargs: Mapping  # passed to gym.make
    preset: str  # the settings family (atari, minatar, mujoco, box2d, classic)
    bins: int  # > 0: each Box action dimension discretised into this many bins
    n_envs: int  # training environments
    vec_env: str  # sync, async, ale or envpool
    frame_stack: int  # Atari: frames stacked
    noop_max: int  # Atari: most no-op actions at a reset
    episodic_life: bool  # Atari training: a lost life ends the episode for the learner
    seed: int
    torch_threads: int  # > 0: the processes the training environments are split over
