"""Build training (vectorised) and evaluation environments from a run's settings (:class:`~symrl.envs.settings.EnvSettings`).

Atari: ale-py's game with Gymnasium's ``AtariPreprocessing`` (noop-max, frame-skip 4 with max-pool,
84x84 grey) and ``FrameStackObservation``, plus symrl's ``EpisodicLife`` (training only) and
``FireReset``. Reward sign-clipping, noise and normalisation are applied by the rollout, not here, so
evaluation environments see the raw game score. In-process training (``vec_env: sync``) splits the environments
over a process per core (:mod:`symrl.envs.split`); Atari games run there with the wrapper stack fused into
:class:`~symrl.envs.atari_game.AtariGame` s, MinAtar games as :mod:`symrl.envs.minatar_games` steps them.
"""

from __future__ import annotations

import functools
import weakref

import gymnasium as gym

from ..errors import SymrlError
from ..threads import available_threads, claim_cores
from .atari_game import AtariGamesVectorEnv, fused_games_apply
from .minatar_games import MinAtarGamesVectorEnv, fused_minatar_apply
from .registry import env_family, gym_make, is_atari
from .settings import EnvSettings
from .split import EnvStackShare, SplitVectorEnv
from .vector import SerialVectorEnv
from .wrappers import DiscretizeAction, EpisodicLife, FireReset, MinAtarFrames


def build_env(cfg: EnvSettings, train: bool, render_mode: str | None = None) -> gym.Env:
    """One environment with the family's wrappers; ``train`` adds the training-only ones."""
    kwargs = dict(cfg.env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if is_atari(cfg):
        kwargs.setdefault("frameskip", 1)  # AtariPreprocessing does the frame-skip with max-pooling
        env = gym_make(cfg.env, **kwargs)
        try:
            env = gym.wrappers.AtariPreprocessing(env, noop_max=cfg.noop_max, frame_skip=4, screen_size=84)
        except gym.error.DependencyNotInstalled:
            raise SymrlError("Atari preprocessing needs OpenCV; pip install opencv-python-headless") from None
        env = gym.wrappers.RecordEpisodeStatistics(env)  # full-game score, below EpisodicLife
        if train and cfg.episodic_life:
            env = EpisodicLife(env)
        if FireReset.needed(env):
            env = FireReset(env)
        env = gym.wrappers.FrameStackObservation(env, cfg.frame_stack)
    else:
        env = gym.wrappers.RecordEpisodeStatistics(gym_make(cfg.env, **kwargs))
        if render_mode == "rgb_array" and env_family(cfg.env) == "minatar":
            env = MinAtarFrames(env)  # videos (symrl eval --video)
    if cfg.bins:
        env = DiscretizeAction(env, cfg.bins)
    return env


def _train_env_fn(cfg: EnvSettings):
    """A picklable constructor of one training environment."""
    return functools.partial(build_env, cfg, True)


def _train_env_fns(cfg: EnvSettings) -> list:
    return [_train_env_fn(cfg)] * cfg.n_envs


def make_wrapper_stack_envs(cfg: EnvSettings) -> SerialVectorEnv:
    """The training environments as Gymnasium wrapper stacks, stepped one after the other in this process: the
    reference the split environments and the fused Atari games are checked and timed against."""
    return SerialVectorEnv(_train_env_fns(cfg))


def make_train_envs(cfg: EnvSettings) -> gym.vector.VectorEnv:
    """``cfg.n_envs`` training environments; finished episodes reset in the same step (final obs in info)."""
    mode = gym.vector.AutoresetMode.SAME_STEP
    if cfg.vec_env == "ale":
        from .ale_vector import AleVectorEnv  # noqa: PLC0415

        return AleVectorEnv(cfg)
    if cfg.vec_env == "envpool":
        from .envpool_backend import EnvPoolVectorEnv  # noqa: PLC0415

        return EnvPoolVectorEnv(cfg)
    if cfg.vec_env == "async":
        return gym.vector.AsyncVectorEnv(_train_env_fns(cfg), autoreset_mode=mode)
    # the cores other runs have not claimed (symrl.threads.claim_cores), held until the environments close
    # (the NumPy engine's update uses a second one too: symrl.fast.critic)
    claim = claim_cores(min(cfg.n_envs, available_threads(cfg.torch_threads)), fixed=cfg.torch_threads > 0)
    parts = claim.granted
    try:
        if is_atari(cfg) and fused_games_apply(cfg):  # the same games without the wrapper layers
            envs = AtariGamesVectorEnv(cfg, parts=parts)
        elif fused_minatar_apply(cfg):
            envs = MinAtarGamesVectorEnv(cfg, parts=parts)
        elif parts > 1:  # the same environments, stepped side by side on the cores
            envs = make_split_envs(cfg, parts)
        else:
            envs = make_wrapper_stack_envs(cfg)
    except BaseException:
        claim.release()
        raise
    envs.core_claim = claim  # released by close() (SerialVectorEnv, SplitVectorEnv) or when the envs are collected
    weakref.finalize(envs, claim.release)
    return envs


def make_split_envs(cfg: EnvSettings, parts: int) -> SplitVectorEnv:
    """The training environments as Gymnasium wrapper stacks, split over this process and ``parts - 1`` workers."""
    return SplitVectorEnv(functools.partial(EnvStackShare, _train_env_fn(cfg)), cfg.n_envs, parts)


def make_eval_env(cfg: EnvSettings, render_mode: str | None = None) -> gym.Env:
    """A clean evaluation environment: no noise, no reward clipping, no episodic life."""
    return build_env(cfg, train=False, render_mode=render_mode)
