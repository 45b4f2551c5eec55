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
    with pytest.raises(ValueError, match="clip_eps_high = clip_eps_low"):
        SymmetricPolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28)


def test_dual_clip_turns_both_terms_off():
    """veRL's dual clip (clip_ratio_c, on by default): where A < 0 and the ratio exceeds c the PPO term is the constant
    -c * A, and the authors' mask turns the reverse term off there too; OpenRLHF's dual_clip does the same."""
    old = torch.log(torch.tensor([[0.2, 0.2, 0.2]]))
    log_prob = torch.log(torch.tensor([[0.8, 0.25, 0.8]])).requires_grad_()  # ratios 4, 1.25, 4
    adv = torch.tensor([[-1.0, -1.0, 1.0]])
    mask = torch.ones_like(adv)
    config = SimpleNamespace(clip_ratio=0.2, clip_ratio_c=3.0,
                             policy_loss={"symmetric_alpha": 0.5, "symmetric_beta": 0.4, "symmetric_z": -1.0})
    loss, metrics = symmetric_ppo_policy_loss(old, log_prob, adv, mask, "token-mean", config)
    loss.backward()
    assert log_prob.grad[0, 0] == 0 and log_prob.grad[0, 2] == 0  # dual-clipped; clipped above 1 + eps
    assert log_prob.grad[0, 1] != 0
    assert metrics["actor/pg_clipfrac_lower"] == pytest.approx(1 / 3)
    module = SymmetricPolicyLoss(0.2, 0.2, 3.0, alpha=0.5, beta=0.4)
    log_prob.grad = None
    module(log_prob, old, adv, action_mask=mask)[0].backward()
    assert log_prob.grad[0, 0] == 0 and log_prob.grad[0, 1] != 0
    # the first token's loss is the constant alpha * (-c * A) = 1.5 in both
    per_token = symmetric_ppo_policy_loss(old[:, :1], log_prob.detach()[:, :1], adv[:, :1], mask[:, :1], "token-mean",
                                          config)[0]
    assert float(per_token) == pytest.approx(0.5 * 3.0)


def test_unsupported_versions_name_the_supported_range():
    from symrl.errors import SymrlError
    from symrl.integrations.openrlhf import check_openrlhf_version
    from symrl.integrations.verl import check_verl_version

    check_verl_version("0.9.1")
    check_verl_version("0.9.0rc1")
    with pytest.raises(SymrlError, match=r">=0\.9,<0\.10.*found veRL 0\.10\.0"):
        check_verl_version("0.10.0")
    with pytest.raises(SymrlError, match=r">=0\.9,<0\.10.*found veRL 0\.8\.4"):
        check_verl_version("0.8.4")
    check_openrlhf_version("0.11.2")
    with pytest.raises(SymrlError, match=r">=0\.11,<0\.12.*found OpenRLHF 0\.10\.1"):
        check_openrlhf_version("0.10.1")


def test_openrlhf_constructor_order_and_unsupported_options():
    """OpenRLHF 0.11 builds PolicyLoss(clip_eps_low, clip_eps_high, dual_clip, token_level_loss, policy_loss_type, ...)."""
    module = SymmetricPolicyLoss(0.1, 0.1, 2.0, False, "ppo", alpha=1.0, beta=0.0)
    assert (module.clip_eps, module.dual_clip, module.token_level_loss) == (0.1, 2.0, False)
    with pytest.raises(ValueError, match="'ppo' only"):
        SymmetricPolicyLoss(policy_loss_type="gspo")
    with pytest.raises(ValueError, match="must be off/token/seq"):
        SymmetricPolicyLoss(is_correction_level="batch")
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        SymmetricPolicyLoss(dual_clip=0.5)
