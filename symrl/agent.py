"""A trained agent: load it from a run directory and act with it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np

from . import runs
from .config import Config
from .envs.make import make_eval_env
from .envs.normalize import ObsNormalizer
from .errors import SymrlError
from .evaluation import default_deterministic, evaluate, make_eval_envs
from .policies import ActorCritic


class Agent:
    """A policy with its (frozen) observation normaliser and the config it was trained with.

    Actions are those of :meth:`make_env`'s environment: for a discretised run (``bins``) they are bin
    indices of a MultiDiscrete space; :meth:`make_env` maps them to continuous values.
    """

    def __init__(self, policy: ActorCritic, obs_norm: ObsNormalizer, config: Config):
        self.policy, self.obs_norm, self.config = policy.eval(), obs_norm, config

    @classmethod
    def load(cls, path: str | Path) -> "Agent":
        """Load ``model.pt`` from a run directory (or the file itself)."""
        path = Path(path)
        file = path / runs.MODEL if path.is_dir() else path
        if path.is_dir() and not file.exists() and (path / runs.CHECKPOINT).exists():
            file = path / runs.CHECKPOINT  # an unfinished run: act with its latest checkpoint
        if not file.exists():
            raise SymrlError(f"no saved model in {path} (looked for {runs.MODEL}); is this a finished symrl run?")
        if not path.is_dir() and path.suffix != ".pt":
            raise SymrlError(f"{path} is not a run directory or a symrl model file (.pt); pass the --out directory of a "
                             "symrl run")
        state = runs.safe_torch_load(file)
        if isinstance(state, dict) and "config" not in state and "value_model" in state:
            raise SymrlError(f"{path} is a language-model (symrl rlhf) run; its evaluations are in {runs.EVAL} and "
                             f"{runs.SAMPLES}/, and `symrl report` reads them")
        try:
            config = Config(**state["config"])
            env = make_eval_env(config)
            policy = ActorCritic(env.observation_space, env.action_space, config)
            policy.load_state_dict(state["policy"])
            obs_norm = ObsNormalizer(env.observation_space.shape, config.norm_obs, config.clip_obs)
            obs_norm.load_state_dict(state["obs_norm"])
            env.close()
        except (KeyError, TypeError, RuntimeError) as exc:
            raise SymrlError(f"{file} is not a compatible symrl model ({exc.__class__.__name__}: {exc})") from None
        except SymrlError as exc:  # e.g. a config value this version refuses
            raise SymrlError(f"{file}: {exc}") from None
        return cls(policy, obs_norm, config)

    def make_env(self, render_mode: Optional[str] = None) -> gym.Env:
        """A clean environment with the wrappers this agent was trained with (discretisation, Atari)."""
        return make_eval_env(self.config, render_mode=render_mode)

    def act(self, obs: np.ndarray, deterministic: Optional[bool] = None) -> np.ndarray:
        """Action(s) for one observation or a batch (one action, or an array of them); deterministic by default
        except on Atari. Stochastic actions draw from torch's global generator (``torch.manual_seed``)."""
        if deterministic is None:
            deterministic = default_deterministic(self.config)
        if isinstance(obs, tuple) and len(obs) == 2 and isinstance(obs[1], dict):
            raise SymrlError("act() got an (observation, info) pair: env.reset() returns both; pass the observation")
        obs = np.asarray(obs)
        shape = self.policy_obs_shape
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise SymrlError(f"expected an observation of shape {shape} or a batch of shape (N, {', '.join(map(str, shape))}), "
                             f"got {obs.shape}; observations come from agent.make_env()")
        if obs.dtype.kind not in "biuf" or (obs.dtype.kind == "f" and not np.isfinite(obs).all()):
            raise SymrlError("the observation holds NaN, infinite or non-numeric values; observations come from "
                             "agent.make_env() (check the environment or your preprocessing)")
        batch = obs[None] if single else obs
        actions = self.policy.act_numpy(self.obs_norm(batch), deterministic)
        return actions[0] if single else actions

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: Optional[bool] = None):
        """Stable-Baselines3's ``predict``: ``(action, None)`` (no recurrent state), so SB3 tools such as
        ``evaluate_policy`` take an Agent; ``deterministic=None`` is :meth:`act`'s default."""
        return self.act(observation, deterministic), None

    def evaluate(self, episodes: int = 10, seed: int = 0, deterministic: Optional[bool] = None) -> np.ndarray:
        """Returns of ``episodes`` clean evaluation episodes; the same ``seed`` gives the same returns (it seeds the
        environments and, for stochastic evaluation, the sampled actions)."""
        for name, value, least in (("episodes", episodes, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise SymrlError(f"evaluate() needs {name} to be a whole number >= {least}, got {value!r}")
        if deterministic is None:
            deterministic = default_deterministic(self.config)
        envs = make_eval_envs(self.config, min(episodes, 16))
        try:
            return evaluate(self.policy, envs, self.obs_norm, episodes, deterministic, seed)
        finally:
            envs.close()

    @property
    def policy_obs_shape(self) -> tuple:
        return tuple(self.obs_norm.rms.mean.shape)


def load(path: str | Path) -> Agent:
    """Load a trained :class:`Agent` from a run directory."""
    return Agent.load(path)
