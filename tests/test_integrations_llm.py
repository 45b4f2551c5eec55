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
    """veRL 0.9's interface: (old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
    rollout_is_weights) -> (pg_loss, metrics)."""
    log_prob, old, adv, mask = _tensors()
    config = SimpleNamespace(clip_ratio=0.2, clip_ratio_low=None, clip_ratio_high=None,
                             policy_loss={"symmetric_alpha": 0.5, "symmetric_beta": 0.4, "symmetric_z": -1.0})
    loss, metrics = symmetric_ppo_policy_loss(old, log_prob, adv, mask, "token-mean", config)
    expected = symmetric_ppo_loss(log_prob, old, adv, clip_range=0.2, alpha=0.5, beta=0.4, z=-1.0, mask=mask)
    torch.testing.assert_close(loss, expected.loss)
    ratio = (log_prob - old).exp()
    smaller = (ratio.clamp(0.8, 1.2) * adv < ratio * adv).float()  # where the clipped surrogate is the smaller
    assert metrics["actor/pg_clipfrac"] == pytest.approx(float((smaller * mask).sum() / mask.sum()))
    assert metrics["actor/pg_clipfrac_lower"] == 0.0  # no dual clip
    assert {"actor/ppo_kl", "actor/reverse_loss"} <= set(metrics)
    doubled, _ = symmetric_ppo_policy_loss(old, log_prob, adv, mask, "token-mean", config,
                                           rollout_is_weights=torch.full_like(adv, 2.0))
    torch.testing.assert_close(doubled, 2 * expected.loss)
    loss.backward()
    assert torch.isfinite(log_prob.grad).all() and (log_prob.grad[mask == 0] == 0).all()
    if not register():  # without veRL, its other aggregations are not available
        with pytest.raises(ValueError, match="token-mean"):
            symmetric_ppo_policy_loss(old, log_prob, adv, mask, "seq-mean-token-sum", config)
    with pytest.raises(ValueError, match="clip_ratio_low = clip_ratio_high"):
        symmetric_ppo_policy_loss(old, log_prob, adv, mask, "token-mean",
                                  SimpleNamespace(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28))


def test_openrlhf_policy_loss_signature_and_value():
    """OpenRLHF 0.11's interface: PolicyLoss(clip_eps_low, clip_eps_high, token_level_loss) called with the
    global batch sizes, returning (loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio)."""
    log_prob, old, adv, mask = _tensors()
    module = SymmetricPolicyLoss(clip_eps_low=0.2, clip_eps_high=0.2, alpha=0.5, beta=0.4)
    loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio = module(log_prob, old, adv, action_mask=mask)
    expected = symmetric_ppo_loss(log_prob, old, adv, clip_range=0.2, alpha=0.5, beta=0.4, mask=mask)
    torch.testing.assert_close(loss, expected.loss)
    ratio = (log_prob - old).exp()
    smaller = (ratio.clamp(0.8, 1.2) * adv < ratio * adv).float()  # where the clipped surrogate is the smaller
    torch.testing.assert_close(clip_ratio, (smaller * mask).sum() / mask.sum())
    assert vllm_kl is None and is_filter_ratio is None and torch.isfinite(ppo_kl)
    assert set(module.last_stats) == {"clip_fraction", "approx_kl", "rl_loss", "reverse_loss"}
    # this rank's half of a global batch on 2 data-parallel ranks: sum / global tokens * dp_size
    tokens = float(mask.sum())
    sharded = module(log_prob, old, adv, action_mask=mask, dp_size=2, batch_num_tokens=2 * tokens)[0]
    torch.testing.assert_close(sharded, expected.loss)
    # per-sequence aggregation: the mean over sequences of each sequence's token mean
    per_sequence = SymmetricPolicyLoss(token_level_loss=False, alpha=0.5, beta=0.4)(log_prob, old, adv, action_mask=mask)[0]
    by_hand = torch.stack([symmetric_ppo_loss(log_prob[i], old[i], adv[i], clip_range=0.2, alpha=0.5, beta=0.4,
                                              mask=mask[i]).loss for i in range(len(mask)) if mask[i].sum() > 0]).mean()
    torch.testing.assert_close(per_sequence, by_hand)
    with_rollout = module(log_prob, old, adv, action_mask=mask, rollout_log_probs=old + 0.01)
    torch.testing.assert_close(with_rollout[0], loss)  # no importance correction, as OpenRLHF with it off
    assert with_rollout[3:] == (None, None)
    with pytest.raises(ValueError, match="negative"):
        SymmetricPolicyLoss(z=1.0)
    with pytest.raises(ValueError, match="one clip_eps_low"):
        SymmetricPolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28)
