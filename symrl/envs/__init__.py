"""Environments: creation from a registered Gymnasium id, family wrappers, vector backends."""

from .make import make_eval_env, make_train_envs
from .registry import env_spec

__all__ = ["env_spec", "make_train_envs", "make_eval_env"]
