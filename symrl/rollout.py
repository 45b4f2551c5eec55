"""Preallocated rollout storage and the collection loop.

Per step: act without autograd, step the vector environment, push the training reward through its
pipeline (raw -> sign clip (Atari) -> flip noise -> running normalisation -> Gaussian/uniform noise),
and record ``next_values``: the value of the state after the step, which is ``V(final obs)`` for an
episode cut by a time limit (bootstrapping) and 0 for one that terminated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from .envs.normalize import ObsNormalizer, RewardScaler
from .noise import RewardNoise
from .policies import ActorCritic


class RolloutBuffer:
    """``[T, N, ...]`` tensors for T steps of N environments, allocated once."""

    def __init__(self, n_steps: int, n_envs: int, obs_space: gym.Space, action_space: gym.Space, lp_shape: tuple):
        T, N = n_steps, n_envs
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        self.obs = torch.zeros((T, N, *obs_space.shape), dtype=obs_dtype)
        if isinstance(action_space, gym.spaces.Discrete):
            self.actions = torch.zeros((T, N), dtype=torch.long)
        elif isinstance(action_space, gym.spaces.MultiDiscrete):
            self.actions = torch.zeros((T, N, len(action_space.nvec)), dtype=torch.long)
        else:
            self.actions = torch.zeros((T, N, int(np.prod(action_space.shape))), dtype=torch.float32)
        self.log_probs = torch.zeros((T, N, *lp_shape))
        self.values = torch.zeros((T, N))
        self.rewards = torch.zeros((T, N))
        self.dones = torch.zeros((T, N))
        self.next_values = torch.zeros((T, N))


@dataclass
class RolloutStats:
    episode_returns: list = field(default_factory=list)
    episode_lengths: list = field(default_factory=list)


class Collector:
    """Steps the training environments with the current policy and fills a :class:`RolloutBuffer`."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        obs_norm: ObsNormalizer,
        reward_scaler: RewardScaler,
        noise: RewardNoise,
        sign_reward: bool,
        seed: int,
    ):
        self.envs, self.obs_norm, self.reward_scaler, self.noise = envs, obs_norm, reward_scaler, noise
        self.sign_reward = sign_reward
        space = envs.single_action_space
        self.clip_actions = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        raw_obs, _ = envs.reset(seed=seed)
        self.obs_norm.update(raw_obs)
        self.obs = self.obs_norm(raw_obs)

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(obs))

    @torch.inference_mode()
    def collect(self, policy: ActorCritic, buf: RolloutBuffer) -> RolloutStats:
        stats = RolloutStats()
        bootstrap = torch.zeros_like(buf.values)  # V(final obs) where an episode was truncated
        for t in range(buf.values.shape[0]):
            obs_t = self._tensor(self.obs)
            actions, log_prob, value = (x.cpu() for x in policy.act(obs_t))
            env_actions = actions.numpy()
            if self.clip_actions is not None:  # Gaussian samples are unbounded; the stored action is not clipped
                env_actions = np.clip(env_actions, *self.clip_actions)
            raw_obs, raw_reward, terminated, truncated, infos = self.envs.step(env_actions)
            done = terminated | truncated

            reward = np.sign(raw_reward) if self.sign_reward else raw_reward.astype(np.float64)
            reward = self.noise.before_normalization(reward)
            reward = self.reward_scaler(reward, done)
            reward = self.noise.after_normalization(reward)

            buf.obs[t] = obs_t
            buf.actions[t] = actions
            buf.log_probs[t] = log_prob
            buf.values[t] = value
            buf.rewards[t] = torch.from_numpy(np.asarray(reward, dtype=np.float32))
            buf.dones[t] = torch.from_numpy(done.astype(np.float32))

            cut = np.flatnonzero(truncated & ~terminated)
            if cut.size:
                final_obs = np.stack([infos["final_obs"][i] for i in cut])
                bootstrap[t, cut] = policy.value(self._tensor(self.obs_norm(final_obs))).cpu()
            self._record_episodes(infos, stats)

            self.obs_norm.update(raw_obs)
            self.obs = self.obs_norm(raw_obs)

        last_value = policy.value(self._tensor(self.obs)).cpu()
        buf.next_values[:-1] = buf.values[1:]
        buf.next_values[-1] = last_value
        buf.next_values = torch.where(buf.dones.bool(), bootstrap, buf.next_values)
        return stats

    @staticmethod
    def _record_episodes(infos: dict, stats: RolloutStats) -> None:
        final = infos.get("final_info")
        if not final or "episode" not in final:
            return
        mask = final["_episode"]
        stats.episode_returns += final["episode"]["r"][mask].astype(float).tolist()
        stats.episode_lengths += final["episode"]["l"][mask].astype(int).tolist()
