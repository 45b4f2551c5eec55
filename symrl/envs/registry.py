"""Look up Gymnasium ids (with ale-py's Atari games and MinAtar's games registered) and turn failures into clear
errors."""

from __future__ import annotations

import difflib
import functools
import importlib

import gymnasium as gym

from ..errors import SymrlError, first_line
from .settings import EnvSettings


@functools.lru_cache(maxsize=None)
def _register_ale() -> bool:
    try:
        import ale_py  # noqa: PLC0415
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


@functools.lru_cache(maxsize=None)
def _register_minatar() -> bool:
    """MinAtar's five games as ``MinAtar/<Game>-v0`` (all 6 actions) and ``-v1`` (the game's minimal action set).

    Done on the first id that names MinAtar, not for every id: importing minatar imports matplotlib and seaborn
    (about 2 s). Each process registers them itself, so sweep workers and environment processes find them too."""
    try:
        import minatar.gym  # noqa: PLC0415
    except ImportError:
        return False
    if "MinAtar/Breakout-v1" not in gym.registry:  # the user may have registered them (registering twice warns)
        minatar.gym.register_envs()
    return True


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a :class:`SymrlError` that suggests close ids.

    ``module:EnvName-v0`` imports ``module`` first, as ``gym.make`` does: the way to use an environment that a
    package registers in the worker processes of a sweep, which do not run the script that registered it. ale-py's
    Atari ids and MinAtar's (``MinAtar/Breakout-v1``) need no prefix."""
    _register_ale()
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SymrlError(f"cannot import {module!r}, which should register {env_id!r} ({exc}); "
                             "check that it is installed or on PYTHONPATH") from None
    if "minatar" in env_id.lower() and not _register_minatar():
        raise SymrlError(f"{env_id} is a MinAtar game and needs the minatar package; pip install minatar")
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.registry for the registered ids"
        raise SymrlError(f"unknown environment id {env_id!r}; {hint}") from None


def gym_make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with missing optional dependencies reported as one actionable line."""
    env_spec(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as exc:  # e.g. mujoco-py for v3 MuJoCo ids, jax for phys2d
        raise SymrlError(f"{env_id} needs a package that is not installed ({first_line(exc)}); install it "
                         "or use another version of the environment") from None
    except TypeError as exc:
        raise SymrlError(f"{env_id} rejected env_kwargs {kwargs} ({exc}); they come from the preset and --set "
                         "env_kwargs=...: choose the preset of this environment's family or fix env_kwargs") from None


def env_family(env_id: str) -> str:
    """The family of a registered id, from its entry point: atari, minatar, mujoco, box2d or classic (anything
    else). The one place symrl decides it: the config's preset and the Atari wrappers follow from it."""
    entry = str(env_spec(env_id).entry_point)
    if entry.startswith("ale_py"):
        return "atari"
    if entry.startswith("minatar"):
        return "minatar"
    if "envs.mujoco" in entry:
        return "mujoco"
    if "envs.box2d" in entry:
        return "box2d"
    return "classic"


def is_atari(settings: EnvSettings) -> bool:
    """An ale-py game, or any environment run with the atari preset (its wrappers and evaluation protocol)."""
    return settings.preset == "atari" or env_family(settings.env) == "atari"


def has_box_actions(env_id: str, env_kwargs: dict) -> bool:
    """Whether the environment's actions are continuous (a ``Box``); it builds the environment once to see."""
    env = gym_make(env_id, **env_kwargs)
    try:
        return isinstance(env.action_space, gym.spaces.Box)
    finally:
        env.close()
