"""Shared check for the fast environment paths: training on them leaves the weights the serial wrapper stack does."""

from __future__ import annotations

import torch

import symrl
import symrl.trainer
from symrl.envs.make import make_wrapper_stack_envs


def assert_trains_like_the_wrapper_stack(monkeypatch, cfg, make_envs) -> tuple[symrl.Trainer, symrl.Trainer]:
    """Run ``cfg`` on ``make_envs(cfg)`` and on the serial wrapper stack; assert bit-identical final weights that
    differ from the initial ones. Returns both trainers (run and closed)."""
    monkeypatch.setattr(symrl.trainer, "make_train_envs", make_envs)
    fast = symrl.Trainer(cfg)
    fast.run()
    monkeypatch.setattr(symrl.trainer, "make_train_envs", make_wrapper_stack_envs)
    plain = symrl.Trainer(cfg)
    plain.run()
    for (name, a), b in zip(fast.policy.state_dict().items(), plain.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    initial = symrl.Trainer(cfg)  # the updates did change the initial weights
    assert not all(torch.equal(a, initial.policy.state_dict()[k]) for k, a in fast.policy.state_dict().items())
    initial.envs.close()
    return fast, plain
