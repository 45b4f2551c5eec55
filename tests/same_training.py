"""Shared checks for the fast environment paths: they step like the serial wrapper stack, and training on them leaves
the weights it does."""

from __future__ import annotations

import numpy as np
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


def assert_steps_like_the_wrapper_stack(cfg, fused, steps: int, seed: int = 3) -> dict:
    """Step ``fused`` (a fast vector env for ``cfg``) and the serial wrapper stack with the same seeds and random
    actions; assert every output is equal; count what happened."""
    plain = make_wrapper_stack_envs(cfg)
    assert fused.single_observation_space == plain.single_observation_space
    assert fused.single_action_space == plain.single_action_space
    obs_p, _ = plain.reset(seed=seed)
    obs_f, _ = fused.reset(seed=seed)
    np.testing.assert_array_equal(obs_f, obs_p)
    rng = np.random.default_rng(seed)
    seen = {"reward": 0, "terminated": 0, "truncated": 0, "games": 0}
    for t in range(steps):
        actions = rng.integers(0, plain.single_action_space.n, cfg.n_envs)
        out_p, out_f = plain.step(actions), fused.step(actions)
        for name, a, b in zip(("obs", "reward", "terminated", "truncated"), out_f[:4], out_p[:4], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} differs at step {t}")
        info_p, info_f = out_p[4], out_f[4]
        assert ("final_obs" in info_f) == ("final_obs" in info_p), f"step {t}"
        if "final_obs" in info_p:
            done = info_p["_final_obs"]
            np.testing.assert_array_equal(info_f["_final_obs"], done)
            for i in np.flatnonzero(done):
                np.testing.assert_array_equal(info_f["final_obs"][i], info_p["final_obs"][i])
            ended_p = info_p["final_info"].get("_episode", np.zeros(cfg.n_envs, bool))
            ended_f = info_f["final_info"]["_episode"]
            np.testing.assert_array_equal(ended_f, ended_p, err_msg=f"game over differs at step {t}")
            for key in ("r", "l") if ended_p.any() else ():
                np.testing.assert_array_equal(info_f["final_info"]["episode"][key][ended_f],
                                              info_p["final_info"]["episode"][key][ended_p])
            seen["games"] += int(ended_p.sum())
        seen["reward"] += int(np.count_nonzero(out_p[1]))
        seen["terminated"] += int(out_p[2].sum())
        seen["truncated"] += int(out_p[3].sum())
    plain.close()
    fused.close()
    return seen
