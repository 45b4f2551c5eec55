"""A lean in-process vector environment (symrl's ``vec_env: sync``).

Gymnasium's ``SyncVectorEnv`` merges every sub-environment's ``info`` dict into arrays on every step
and deep-copies the batched observation; for one fast MuJoCo environment that costs about as much as the
simulator. This one does only what training needs: it steps each environment, resets finished ones in the
same step (Gymnasium's ``AutoresetMode.SAME_STEP``), and reports infos only for environments that
finished: ``final_obs`` / ``final_info`` with their ``_``-masks, in Gymnasium's layout. Per-step infos of
unfinished environments are not collected.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space


class SerialVectorEnv(gym.vector.VectorEnv):
    """``n`` environments stepped one after the other in this process."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        first = self.envs[0]
        self.metadata = dict(first.metadata, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.spec = first.spec
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        space = self.single_observation_space
        self._obs = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        self._rewards = np.zeros(self.num_envs, np.float64)
        self._terminated = np.zeros(self.num_envs, bool)
        self._truncated = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: Optional[int | Sequence[int]] = None, options: Optional[dict] = None):
        seeds = [None] * self.num_envs if seed is None else (
            [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed))
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            self._obs[i], info = env.reset(seed=seeds[i], options=options)
            infos = self._add_info(infos, info, i)
        return self._obs.copy(), infos

    def step(self, actions: np.ndarray):
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            self._rewards[i], self._terminated[i], self._truncated[i] = reward, terminated, truncated
            if terminated or truncated:
                infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, i)
                obs, _ = env.reset()
            self._obs[i] = obs
        return self._obs.copy(), self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos

    def close_extras(self, **kwargs) -> None:
        for env in self.envs:
            env.close()
