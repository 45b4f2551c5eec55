"""A lean in-process vector environment (``vec_env: sync`` with one environment or one core; the serial reference
that :mod:`symrl.envs.split` is checked against).

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

    core_claim = None  # the symrl.threads.CoreClaim make_train_envs took for them, released at close

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
        if self.core_claim is not None:  # the cores make_train_envs claimed for these environments
            self.core_claim.release()


class GameEpisodes:
    """Whole-game episode statistics for the C++ vector backends (EnvPool, ALE).

    Their training episodes may end at a lost life (episodic life) while the game goes on; like
    ``RecordEpisodeStatistics`` below symrl's ``EpisodicLife``, a return and length are reported only when
    the game itself is over, counting the raw score. :meth:`step` builds the rollout's infos in the layout of
    :class:`SerialVectorEnv`: ``final_obs`` / ``final_info`` with their ``_``-masks, only where an episode ended.
    """

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def step(self, raw_reward: np.ndarray, done: np.ndarray, game_over: np.ndarray, final_obs: np.ndarray) -> dict:
        """``final_obs[i]``: the last observation of environment ``i`` (read only where ``done``)."""
        self.returns += raw_reward
        self.lengths += 1
        over = done & game_over
        infos = finished_infos(done, over, final_obs, self.returns, self.lengths)
        self.returns[over] = 0.0
        self.lengths[over] = 0
        return infos


def finished_infos(done: np.ndarray, game_over: np.ndarray, final_obs: np.ndarray, returns: np.ndarray,
                   lengths: np.ndarray) -> dict:
    """The rollout's infos in :class:`SerialVectorEnv`'s layout: ``final_obs`` (copied from ``final_obs[i]``) and
    ``final_info`` with their ``_``-masks where an episode ended (``done``), and the game's ``episode`` return and
    length where the game is over (``game_over``, a subset of ``done``)."""
    if not done.any():
        return {}
    finals = np.empty(len(done), dtype=object)
    for i in np.flatnonzero(done):
        finals[i] = final_obs[i].copy()
    episode = {"r": np.where(game_over, returns, 0.0), "l": np.where(game_over, lengths, 0)}
    return {"final_obs": finals, "_final_obs": done.copy(),
            "final_info": {"episode": episode, "_episode": game_over.copy()}, "_final_info": done.copy()}
