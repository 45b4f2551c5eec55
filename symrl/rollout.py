"""Preallocated rollout storage and the collection loop.

Per step: act without autograd, step the vector environment, push the training reward through its
pipeline (raw -> sign clip (Atari) -> flip noise -> running normalisation -> Gaussian/uniform noise),
and record ``next_values``: the value of the state after the step, which is ``V(final obs)`` for an
episode cut by a time limit (bootstrapping) and 0 for one that terminated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Optional

import gymnasium as gym
import numpy as np
import torch

from .envs.normalize import ObsNormalizer, RewardScaler
from .noise import RewardNoise
from .policies import ActorCritic, image_layout

if TYPE_CHECKING:
    from .fast import NumpyEngine


class RolloutBuffer:
    """``[T, N, ...]`` storage for T steps of N environments, allocated once.

    Each field is a torch tensor (what the update reads) and, under the same name in ``.np``, a NumPy
    view of the same memory (what the collection loop writes, without a torch call per step). Image
    frames ``[C, H, W]`` are stored channels-last in memory (the tensor keeps its ``[T, N, C, H, W]``
    shape): a minibatch gathered from them is already in the layout the CNN runs in, so no transposing
    copy per minibatch; the values are the same. Other observations are stored as float32: binary grids (MinAtar's
    bool observations) are converted once, when a step is written, so the update's minibatches need no conversion.
    """

    FIELDS = ("obs", "actions", "log_probs", "values", "rewards", "dones", "next_values")

    def __init__(self, n_steps: int, n_envs: int, obs_space: gym.Space, action_space: gym.Space, lp_shape: tuple):
        T, N = n_steps, n_envs
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        if obs_dtype == torch.uint8 and len(obs_space.shape) == 3 and not image_layout(obs_space.shape)[3]:
            C, H, W = obs_space.shape
            self.obs = torch.zeros((T, N, H, W, C), dtype=obs_dtype).permute(0, 1, 4, 2, 3)
        else:
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
        self.np = SimpleNamespace(**{name: getattr(self, name).numpy() for name in self.FIELDS})


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

    @torch.inference_mode()
    def collect(self, policy: ActorCritic, buf: RolloutBuffer, engine: Optional["NumpyEngine"] = None) -> RolloutStats:
        """One rollout of ``T`` steps into ``buf``; acts through ``engine`` (NumPy) when given."""
        stats = RolloutStats()
        act, value = _acting(policy, engine)
        store = buf.np
        bootstrap = np.zeros_like(store.values)  # V(final obs) where an episode was truncated
        for t in range(store.values.shape[0]):
            obs = self.obs
            actions, log_prob, values = act(obs)
            env_actions = actions
            if self.clip_actions is not None:  # Gaussian samples are unbounded; the stored action is not clipped
                env_actions = np.minimum(np.maximum(actions, self.clip_actions[0]), self.clip_actions[1])
            raw_obs, raw_reward, terminated, truncated, infos = self.envs.step(env_actions)
            done = terminated | truncated

            reward = np.sign(raw_reward) if self.sign_reward else np.asarray(raw_reward, dtype=np.float64)
            reward = self.noise.before_normalization(reward)
            reward = self.reward_scaler(reward, done)
            reward = self.noise.after_normalization(reward)

            store.obs[t] = obs
            store.actions[t] = actions
            store.log_probs[t] = log_prob
            store.values[t] = values
            store.rewards[t] = reward
            store.dones[t] = done

            self.obs_norm.update(raw_obs)
            self.obs = self.obs_norm(raw_obs)
            if done.any():  # final observations are normalised with the statistics updated by this step, as in SB3
                cut = np.flatnonzero(truncated & ~terminated)
                if cut.size:
                    final_obs = np.stack([infos["final_obs"][i] for i in cut])
                    bootstrap[t, cut] = value(self.obs_norm(final_obs))
                self._record_episodes(infos, stats)

        store.next_values[:-1] = store.values[1:]
        store.next_values[-1] = value(self.obs)
        np.copyto(store.next_values, bootstrap, where=store.dones.astype(bool))
        return stats

    @staticmethod
    def _record_episodes(infos: dict, stats: RolloutStats) -> None:
        final = infos.get("final_info")
        if not final or "episode" not in final:
            return
        mask = final["_episode"]
        stats.episode_returns += final["episode"]["r"][mask].astype(float).tolist()
        stats.episode_lengths += final["episode"]["l"][mask].astype(int).tolist()


def _acting(policy: ActorCritic, engine: Optional["NumpyEngine"]):
    """``(act, value)`` functions from NumPy observations to NumPy outputs."""
    if engine is not None:
        return engine.act, engine.value

    def act(obs: np.ndarray):
        actions, log_prob, values = policy.act(torch.from_numpy(np.ascontiguousarray(obs)))
        return actions.cpu().numpy(), log_prob.cpu().numpy(), values.cpu().numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        return policy.value(torch.from_numpy(np.ascontiguousarray(obs))).cpu().numpy()

    return act, value
