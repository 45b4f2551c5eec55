"""EnvPool as a training backend (``vec_env: envpool``, ``--vec-backend envpool``), where installed.

EnvPool steps Atari and MuJoCo environments in C++ threads. This adapter gives it the interface the
rollout expects from Gymnasium's vector environments with ``AutoresetMode.SAME_STEP``: a finished
environment is reset in the same step (EnvPool resets it on the *next* step otherwise) and its last
observation and episode statistics come back in ``final_obs`` / ``final_info``. Episode statistics count
whole games (the raw score, also under EnvPool's episodic life) as ``RecordEpisodeStatistics`` does.

With episodic life, a lost life ends the agent's episode and the game goes on: EnvPool continues it on that
environment's next step (whose action it ignores), where the wrapper stack continues it in the same step.

Only training uses EnvPool; evaluation keeps the Gymnasium/ale-py environments, so scores follow the
standard protocol. Atari preprocessing is EnvPool's own (noop-max, frame-skip 4 with max-pool, 84x84
grey, frame stack, fire reset, episodic life when training), the same steps as symrl's wrappers.
"""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from ..errors import SymrlError
from .registry import is_atari
from .settings import EnvSettings
from .vector import GameEpisodes
from .wrappers import discretization_grid, grid_actions


def envpool_task(cfg: EnvSettings) -> tuple[str, dict]:
    """EnvPool's task id and settings for ``cfg.env`` (``PongNoFrameskip-v4`` -> ``Pong-v5``)."""
    try:
        import envpool  # noqa: PLC0415
    except ImportError:
        raise SymrlError("--vec-backend envpool needs EnvPool; pip install envpool (or use --vec-backend sync)") from None

    name, kwargs = cfg.env, {}
    if is_atari(cfg):
        game = name.removeprefix("ALE/").removesuffix("NoFrameskip-v4").removesuffix("-v5")
        name = f"{game}-v5"
        kwargs = dict(episodic_life=cfg.episodic_life, reward_clip=False, noop_max=cfg.noop_max,
                      stack_num=cfg.frame_stack, img_height=84, img_width=84, gray_scale=True, use_fire_reset=True,
                      repeat_action_probability=0.25 if cfg.env.startswith("ALE/") else 0.0)
    if name not in envpool.list_all_envs():
        raise SymrlError(f"EnvPool has no task for {cfg.env}; use --vec-backend sync (EnvPool covers Atari and MuJoCo)")
    if cfg.env_kwargs:
        raise SymrlError("env_kwargs are not passed to EnvPool; drop them or use --vec-backend sync")
    return name, kwargs


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """``cfg.n_envs`` EnvPool environments with same-step autoreset."""

    def __init__(self, cfg: EnvSettings):
        self.cfg = cfg
        self.task, self.kwargs = envpool_task(cfg)
        self.atari = "episodic_life" in self.kwargs
        self.num_envs = cfg.n_envs
        self._make(cfg.seed)
        space = self.env.action_space
        self.grid = None
        if cfg.bins:
            self.grid = discretization_grid(space, cfg.bins, cfg.env)
            space = gym.spaces.MultiDiscrete(np.full(self.grid.shape[0], cfg.bins, dtype=np.int64))
        self.single_action_space = space
        self.single_observation_space = self.env.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def _make(self, seed: int) -> None:
        import envpool  # noqa: PLC0415

        self.env = envpool.make_gymnasium(self.task, num_envs=self.num_envs, seed=int(seed), **self.kwargs)
        self.seed = seed
        self.episodes = GameEpisodes(self.num_envs)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None and seed != self.seed:  # EnvPool is seeded when built
            self.env.close()
            self._make(seed)
        obs, _ = self.env.reset()
        self.episodes.reset()
        return obs, {}

    def step(self, actions: np.ndarray):
        if self.grid is not None:
            actions = grid_actions(self.grid, np.asarray(actions, np.int64))
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
        done = terminated | truncated
        game_over = (info["terminated"].astype(bool) | truncated) if self.atari else done
        infos = self.episodes.step(info["reward"] if self.atari else reward, done, game_over, obs)
        # A lost life (episodic life) ends the agent's episode but not the game: EnvPool continues the game on this
        # env's next step, which ignores its action. An explicit reset() here would restart the whole game.
        restart = (done & game_over) if self.atari else done
        if restart.any():
            ids = np.flatnonzero(restart)
            fresh, fresh_info = self.env.reset(ids.astype(np.int32))
            obs = obs.copy()
            obs[fresh_info["env_id"]] = fresh
        return obs, reward.astype(np.float64), terminated, truncated, infos

    def close_extras(self, **kwargs) -> None:
        self.env.close()
