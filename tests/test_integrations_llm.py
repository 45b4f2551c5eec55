"""The GPU-framework plug-ins (veRL, OpenRLHF) called on tensors: the same loss as symrl.losses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from symrl.integrations.openrlhf import SymmetricPolicyLoss
from symrl.integrations.verl import register, symmetric_ppo_policy_loss
from symrl.losses import symmetric_ppo_loss


def _tensors():
    g = torch.Generator().manual_seed(0)
    log_prob = (-torch.rand(4, 7, generator=g) * 3).requires_grad_()
    old = log_prob.detach() + 0.3 * torch.randn(4, 7, generator=g)
    adv = torch.randn(4, 7, generator=g)
    mask = (torch.rand(4, 7, generator=g) > 0.3).float()
    return log_prob, old, adv, mask


def test_verl_policy_loss_signature_and_value():
    log_prob, old, adv, mask = _tensors()
    config = SimpleNamespace(clip_ratio=0.2, policy_loss={"symmetric_alpha": 0.5, "symmetric_beta": 0.4, "symmetric_z": -1.0})
    loss, clipfrac, kl, lower = symmetric_ppo_policy_loss(old, log_prob, adv, mask, "token-mean", config)
    expected = symmetric_ppo_loss(log_prob, old, adv, clip_range=0.2, alpha=0.5, beta=0.4, z=-1.0, mask=mask)
    torch.testing.assert_close(loss, expected.loss)
    torch.testing.assert_close(clipfrac, expected.clip_fraction)
    assert 0 <= float(lower) <= float(clipfrac) and float(kl) >= 0
    loss.backward()
    assert torch.isfinite(log_prob.grad).all() and (log_prob.grad[mask == 0] == 0).all()
    with pytest.raises(ValueError, match="token-mean"):
        symmetric_ppo_policy_loss(old, log_prob, adv, mask, "seq-mean-token-sum", config)
    assert register() in (True, False)  # registers only where veRL is installed


def test_openrlhf_policy_loss_signature_and_value():
    log_prob, old, adv, mask = _tensors()
    module = SymmetricPolicyLoss(clip_eps=0.2, alpha=0.5, beta=0.4)
    loss = module(log_prob, old, adv, action_mask=mask)
    expected = symmetric_ppo_loss(log_prob, old, adv, clip_range=0.2, alpha=0.5, beta=0.4, mask=mask)
    torch.testing.assert_close(loss, expected.loss)
    assert set(module.last_stats) == {"clip_fraction", "approx_kl", "rl_loss", "reverse_loss"}
    with pytest.raises(ValueError, match="negative"):
        SymmetricPolicyLoss(z=1.0)
