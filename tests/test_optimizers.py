"""symrl's TensorFlow-like RMSprop (the authors' Atari A2C optimiser) against Stable-Baselines3's, which the
authors used, and against the closed form of its first step."""

from __future__ import annotations

import pytest
import torch

from symrl.optimizers import RMSpropTFLike


def test_first_step_closed_form():
    """v starts at 1: v1 = alpha + (1 - alpha) g^2, and the step is lr g / sqrt(v1 + eps), not torch's ~10 lr."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = RMSpropTFLike([p], lr=0.1, alpha=0.99, eps=1e-5)
    g = torch.tensor([0.5, -2.0, 1e-3])
    p.grad = g.clone()
    opt.step()
    expected = -0.1 * g / torch.sqrt(0.99 + 0.01 * g**2 + 1e-5)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-9)


def test_equals_stable_baselines3_rmsprop_tf_like():
    sb3_rmsprop = pytest.importorskip("stable_baselines3.common.sb2_compat.rmsprop_tf_like")
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(4, 5)), torch.nn.Parameter(torch.randn(5))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours = RMSpropTFLike(ours, lr=7e-4, alpha=0.99, eps=1e-5)
    opt_theirs = sb3_rmsprop.RMSpropTFLike(theirs, lr=7e-4, alpha=0.99, eps=1e-5)
    for step in range(20):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn_like(a) * (100.0 if step == 5 else 1.0)
            b.grad = a.grad.clone()
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    restored = RMSpropTFLike(theirs, lr=7e-4)
    restored.load_state_dict(opt_ours.state_dict())  # checkpoints round-trip
    assert torch.equal(restored.state[theirs[0]]["square_avg"], opt_ours.state[ours[0]]["square_avg"])
