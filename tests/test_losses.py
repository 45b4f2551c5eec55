"""Closed-form tests of the symmetric RL policy losses (SPEC §1 and §1.1).

Every check compares ``symrl.losses`` against formulas written out here on synthetic categorical
policies (``log_prob = log_softmax(logits)[a]``), in float64, with fixed seeds. Gradients are taken
with respect to the logits and compared with the analytic softmax gradients
``d log p_a / d logits = onehot(a) - softmax(logits)``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from symrl.losses import masked_mean, symmetric_a2c_loss, symmetric_ppo_loss

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def make_policy(batch, k, seed, scale=1.0):
    """Random logits ``[*batch, k]`` (leaf, requires grad), actions ``[*batch]`` and advantages ``[*batch]``."""
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(*batch, k, generator=g, dtype=DT)).requires_grad_()
    actions = torch.randint(k, tuple(batch), generator=g)
    adv = torch.randn(*batch, generator=g, dtype=DT)
    return logits, actions, adv


def log_prob_of(logits, actions):
    """Log-probability of the taken action under the softmax policy."""
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def score(logits, actions):
    """Analytic d log p_a / d logits = onehot(a) - softmax(logits) (constant tensor)."""
    k = logits.shape[-1]
    return F.one_hot(actions, k).to(DT) - torch.softmax(logits.detach(), -1)


def grad(loss, x):
    """Gradient of a scalar loss with respect to ``x``."""
    (g,) = torch.autograd.grad(loss, x)
    return g


def ppo_case(ratios, advs, k=6, seed=0):
    """Logits/actions plus old log-probs built so that p / p_old equals ``ratios`` exactly."""
    n = len(ratios)
    logits, actions, _ = make_policy((n,), k, seed, scale=0.5)
    lp = log_prob_of(logits, actions).detach()
    r = torch.tensor(ratios, dtype=DT)
    old = lp - torch.log(r)
    adv = torch.tensor(advs, dtype=DT)
    return logits, actions, old, adv, r


def hand_active(r, adv, eps):
    """The authors' mask m_t: in the clip range, or the unclipped surrogate is the smaller one."""
    clipped = r.clamp(1 - eps, 1 + eps)
    return (((r >= 1 - eps) & (r <= 1 + eps)) | (r * adv <= clipped * adv)).to(DT)


# Known PPO cases for eps = 0.2: (ratio, advantage, m_t).
PPO_CASES = [
    (1.5, 1.0, 0.0),  # ratio above 1+eps, A > 0: clipped, no gradient
    (0.5, -1.0, 0.0),  # ratio below 1-eps, A < 0: clipped, no gradient
    (1.5, -1.0, 1.0),  # ratio above 1+eps, A < 0: the unclipped term is the min, gradient flows
    (0.5, 1.0, 1.0),  # ratio below 1-eps, A > 0: the unclipped term is the min
    (1.1, 0.7, 1.0),  # in range
    (0.9, -0.4, 1.0),  # in range
    (1.3, 2.0, 0.0),  # clipped
    (0.6, -0.3, 0.0),  # clipped
    (2.0, -0.5, 1.0),  # far out, but the unclipped term is the min
]
EPS = 0.2


# --------------------------------------------------------------------------------------------------
# A2C: values and gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,beta,z", [(1.0, 0.0, -1.0), (0.5, 1.0, -1.0), (0.3, 2.0, -6.0), (0.0, 1.0, -0.5)])
def test_a2c_values_match_spec_formulas(alpha, beta, z):
    """rl_loss = -mean(A log p), reverse_loss = -Z mean(A (1 - p)), loss = alpha*rl + beta*rev."""
    logits, actions, adv = make_policy((7,), 5, seed=1)
    lp = log_prob_of(logits, actions)
    out = symmetric_a2c_loss(lp, adv, alpha=alpha, beta=beta, z=z)
    p = [math.exp(v) for v in lp.tolist()]
    a = adv.tolist()
    rl = -sum(ai * math.log(pi) for ai, pi in zip(a, p, strict=True)) / len(a)
    rev = -z * sum(ai * (1 - pi) for ai, pi in zip(a, p, strict=True)) / len(a)
    assert out.rl_loss.item() == pytest.approx(rl, rel=1e-12)
    assert out.reverse_loss.item() == pytest.approx(rev, rel=1e-12)
    assert out.loss.item() == pytest.approx(alpha * rl + beta * rev, rel=1e-12, abs=1e-14)
    assert out.clip_fraction is None and out.approx_kl is None and out.active_fraction is None


def test_a2c_defaults_are_plain_a2c():
    """Defaults alpha=1, beta=0: loss is exactly the A2C policy loss."""
    logits, actions, adv = make_policy((6,), 4, seed=2)
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv)
    torch.testing.assert_close(out.loss, out.rl_loss, **TOL)


def test_a2c_gradient_is_analytic_softmax_gradient():
    """d L_A2C / d logits_i = -A_i (onehot_i - softmax_i) / N."""
    n = 9
    logits, actions, adv = make_policy((n,), 5, seed=3)
    g = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv).rl_loss, logits)
    expected = -adv[:, None] * score(logits, actions) / n
    torch.testing.assert_close(g, expected, **TOL)


def test_a2c_advantages_are_detached():
    """Advantages are constants: no gradient flows into them."""
    logits, actions, adv = make_policy((5,), 3, seed=4)
    adv = adv.clone().requires_grad_()
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv, beta=1.0)
    assert not out.loss.requires_grad or torch.autograd.grad(out.loss, adv, allow_unused=True)[0] is None


@pytest.mark.parametrize("z", [-1.0, -2.0, -6.0, -0.3])
def test_reverse_a2c_gradient_is_probability_weighted_a2c_gradient(z):
    """Per sample, grad L_rA2C = |Z| * p_i * grad L_A2C, and both match the closed forms."""
    n = 8
    logits, actions, adv = make_policy((n,), 6, seed=5)
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv, z=z)
    g_rl = grad(out.rl_loss, logits)
    g_rev = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv, z=z).reverse_loss, logits)
    p = log_prob_of(logits, actions).detach().exp()[:, None]
    torch.testing.assert_close(g_rev, abs(z) * p * g_rl, **TOL)
    # Closed form: Z * A_i * p_i * (onehot_i - softmax_i) / N.
    torch.testing.assert_close(g_rev, z * adv[:, None] * p * score(logits, actions) / n, **TOL)
    # Non-trivial: the per-sample weights differ, so it is not a global rescaling.
    assert p.std() > 0.01


@pytest.mark.parametrize("alpha,beta,z", [(1.0, 1.0, -1.0), (0.5, 2.0, -6.0)])
def test_sa2c_is_a2c_with_per_sample_weight(alpha, beta, z):
    """grad of SA2C = grad of A2C with per-sample weight (alpha + beta |Z| p_i)."""
    n = 10
    logits, actions, adv = make_policy((n,), 4, seed=6)
    g = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv, alpha=alpha, beta=beta, z=z).loss, logits)
    p = log_prob_of(logits, actions).detach().exp()
    w = alpha + beta * abs(z) * p
    expected = -(w * adv)[:, None] * score(logits, actions) / n
    torch.testing.assert_close(g, expected, **TOL)


def test_a2c_mae_variant():
    """MAE: reverse_loss = mean(A (1 - 2p)); its gradient equals RCE's with Z = -2."""
    n = 7
    logits, actions, adv = make_policy((n,), 5, seed=7)
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv, variant="mae")
    p = log_prob_of(logits, actions).detach().exp()
    torch.testing.assert_close(out.reverse_loss, (adv * (1 - 2 * p)).mean(), **TOL)
    g_mae = grad(out.reverse_loss, logits)
    g_rce = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv, z=-2.0).reverse_loss, logits)
    torch.testing.assert_close(g_mae, g_rce, **TOL)
    assert g_mae.abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# PPO: values, diagnostics and gradients
# --------------------------------------------------------------------------------------------------


def test_ppo_values_and_diagnostics_on_known_ratios():
    """rl/reverse loss, clip_fraction, approx_kl and active_fraction on hand-chosen ratios."""
    ratios, advs, ms = zip(*PPO_CASES, strict=True)
    logits, actions, old, adv, r = ppo_case(ratios, advs)
    z, alpha, beta = -1.0, 0.5, 1.0
    lp = log_prob_of(logits, actions)
    out = symmetric_ppo_loss(lp, old, adv, clip_range=EPS, alpha=alpha, beta=beta, z=z)
    n = len(ratios)
    p = lp.detach().exp().tolist()
    p_old = old.exp().tolist()
    rl = -sum(min(ri * ai, min(max(ri, 1 - EPS), 1 + EPS) * ai) for ri, ai in zip(ratios, advs, strict=True)) / n
    rev = -z * sum(m * a * (1 - pi) / po for m, a, pi, po in zip(ms, advs, p, p_old, strict=True)) / n
    assert out.rl_loss.item() == pytest.approx(rl, rel=1e-12)
    assert out.reverse_loss.item() == pytest.approx(rev, rel=1e-12)
    assert out.loss.item() == pytest.approx(alpha * rl + beta * rev, rel=1e-12)
    n_out = sum(1 for ri in ratios if not (1 - EPS <= ri <= 1 + EPS))
    assert out.clip_fraction.item() == pytest.approx(n_out / n, rel=1e-12)
    kl = sum((ri - 1) - math.log(ri) for ri in ratios) / n
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-10)
    assert out.active_fraction.item() == pytest.approx(sum(ms) / n, rel=1e-12)


def test_clip_fraction_and_approx_kl_simple():
    """ratios [0.5, 0.9, 1.0, 1.1, 1.5, 2.0], eps 0.2: clip_fraction 1/2, approx_kl = mean((r-1) - log r)."""
    ratios = [0.5, 0.9, 1.0, 1.1, 1.5, 2.0]
    logits, actions, old, adv, r = ppo_case(ratios, [1.0] * 6, seed=11)
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, clip_range=0.2)
    assert out.clip_fraction.item() == pytest.approx(0.5, rel=1e-12)
    expected_kl = sum((x - 1) - math.log(x) for x in ratios) / 6
    assert out.approx_kl.item() == pytest.approx(expected_kl, rel=1e-10)
    # All A > 0: inactive exactly where ratio > 1 + eps (1.5 and 2.0).
    assert out.active_fraction.item() == pytest.approx(4 / 6, rel=1e-12)


def test_ppo_gradient_closed_form():
    """d L_PPO / d logits_i = -m_i A_i r_i (onehot_i - softmax_i) / N; zero rows where m_i = 0."""
    ratios, advs, ms = zip(*PPO_CASES, strict=True)
    logits, actions, old, adv, r = ppo_case(ratios, advs)
    n = len(ratios)
    g = grad(symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, clip_range=EPS).rl_loss, logits)
    m = torch.tensor(ms, dtype=DT)
    expected = -(m * adv * r)[:, None] * score(logits, actions) / n
    torch.testing.assert_close(g, expected, **TOL)
    torch.testing.assert_close(m, hand_active(r, adv, EPS))  # the table itself is right


@pytest.mark.parametrize("z", [-1.0, -2.0, -6.0])
def test_reverse_ppo_gradient_is_scaled_ppo_gradient_on_active_set(z):
    """m=1: grad L_rPPO = |Z| grad L_PPO; m=0: exactly zero gradient."""
    ratios, advs, ms = zip(*PPO_CASES, strict=True)
    logits, actions, old, adv, r = ppo_case(ratios, advs)
    g_rl = grad(symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, clip_range=EPS, z=z).rl_loss, logits)
    g_rev = grad(
        symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, clip_range=EPS, z=z).reverse_loss, logits
    )
    torch.testing.assert_close(g_rev, abs(z) * g_rl, **TOL)
    inactive = torch.tensor(ms) == 0
    assert inactive.any() and (~inactive).any()
    assert torch.all(g_rev[inactive] == 0)
    assert torch.all(g_rev[~inactive].abs().sum(-1) > 0)


@pytest.mark.parametrize("alpha,beta,z", [(0.5, 1.0, -1.0), (0.5, 20.0, -1.0), (1.0, 0.5, -6.0)])
def test_sppo_gradient_equals_scaled_ppo(alpha, beta, z):
    """SPPO(alpha, beta, Z) has the gradient of PPO with policy coefficient c = alpha + beta |Z|."""
    n = 40
    logits, actions, adv = make_policy((n,), 5, seed=12, scale=0.7)
    g = torch.Generator().manual_seed(13)
    old = log_prob_of(logits, actions).detach() + 0.4 * torch.randn(n, generator=g, dtype=DT)
    c = alpha + beta * abs(z)
    sppo = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, alpha=alpha, beta=beta, z=z)
    assert sppo.active_fraction < 1.0  # some clipped samples, so the mask matters
    g_sppo = grad(sppo.loss, logits)
    g_scaled = grad(symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, alpha=c, beta=0.0).loss, logits)
    torch.testing.assert_close(g_sppo, g_scaled, **TOL)
    # And against a hand-written clipped PPO loss times c.
    lp = log_prob_of(logits, actions)
    ratio = (lp - old).exp()
    hand = -c * torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    torch.testing.assert_close(g_sppo, grad(hand, logits), **TOL)


def test_reverse_mask_none_differs_on_inactive_samples():
    """reverse_mask='none' keeps a gradient Z A r (e - pi)/N on samples where m = 0; same elsewhere."""
    ratios, advs, ms = zip(*PPO_CASES, strict=True)
    logits, actions, old, adv, r = ppo_case(ratios, advs)
    n, z = len(ratios), -1.0
    out_none = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, beta=1.0, z=z, reverse_mask="none")
    g_none = grad(out_none.reverse_loss, logits)
    g_ppo = grad(symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, z=z).reverse_loss, logits)
    inactive = torch.tensor(ms) == 0
    torch.testing.assert_close(g_none[~inactive], g_ppo[~inactive], **TOL)
    assert torch.all(g_none[inactive].abs().sum(-1) > 1e-4)
    expected = z * (adv * r)[:, None] * score(logits, actions) / n
    torch.testing.assert_close(g_none, expected, **TOL)
    # Value: -Z mean(A (1 - p) / p_old) with no mask.
    p = log_prob_of(logits, actions).detach().exp()
    torch.testing.assert_close(out_none.reverse_loss, -z * (adv * (1 - p) / old.exp()).mean(), **TOL)


@pytest.mark.parametrize("reverse_mask", ["ppo", "none"])
def test_ppo_mae_variant(reverse_mask):
    """MAE (A (1 - 2p) m / p_old) has the gradient of RCE with Z = -2."""
    ratios, advs, ms = zip(*PPO_CASES, strict=True)
    logits, actions, old, adv, r = ppo_case(ratios, advs)
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, variant="mae", reverse_mask=reverse_mask)
    m = torch.tensor(ms, dtype=DT) if reverse_mask == "ppo" else torch.ones(len(ms), dtype=DT)
    p = log_prob_of(logits, actions).detach().exp()
    torch.testing.assert_close(out.reverse_loss, (m * adv * (1 - 2 * p) / old.exp()).mean(), **TOL)
    g_mae = grad(out.reverse_loss, logits)
    g_rce = grad(
        symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, z=-2.0, reverse_mask=reverse_mask).reverse_loss,
        logits,
    )
    torch.testing.assert_close(g_mae, g_rce, **TOL)


def test_ppo_old_log_prob_is_detached():
    """old_log_prob is a constant even if it carries a graph."""
    logits, actions, adv = make_policy((6,), 4, seed=14)
    other = torch.zeros(6, dtype=DT, requires_grad=True)
    old = log_prob_of(logits, actions).detach() + 0.1 + other
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, beta=1.0)
    g = torch.autograd.grad(out.loss, other, allow_unused=True)[0]
    assert g is None or torch.all(g == 0)


# --------------------------------------------------------------------------------------------------
# Token-level masks [B, T]
# --------------------------------------------------------------------------------------------------

TOKEN_MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=DT)


def token_case(seed=20):
    logits, actions, adv = make_policy((3, 5), 7, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    old = log_prob_of(logits, actions).detach() + 0.3 * torch.randn(3, 5, generator=g, dtype=DT)
    return logits, actions, adv, old


@pytest.mark.parametrize("mask_dtype", [DT, torch.bool])
def test_a2c_token_mask_equals_flattened_valid_entries(mask_dtype):
    """Masked A2C on [B, T] equals the unmasked loss on the valid entries; masked logits get no gradient."""
    logits, actions, adv, _ = token_case()
    mask = TOKEN_MASK.to(mask_dtype)
    valid = TOKEN_MASK.bool()
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv, alpha=0.5, beta=1.5, mask=mask)
    flat = symmetric_a2c_loss(log_prob_of(logits, actions)[valid], adv[valid], alpha=0.5, beta=1.5)
    for f in ("loss", "rl_loss", "reverse_loss"):
        torch.testing.assert_close(getattr(out, f), getattr(flat, f), **TOL)
    g = grad(out.loss, logits)
    assert torch.all(g[~valid] == 0)
    torch.testing.assert_close(g, grad(flat.loss, logits), **TOL)


@pytest.mark.parametrize("mask_dtype", [DT, torch.bool])
def test_ppo_token_mask_equals_flattened_valid_entries(mask_dtype):
    """Masked PPO on [B, T]: all outputs equal the flat computation on valid entries; masked grads are zero."""
    logits, actions, adv, old = token_case()
    mask = TOKEN_MASK.to(mask_dtype)
    valid = TOKEN_MASK.bool()
    kw = dict(alpha=0.5, beta=1.0, z=-1.0, clip_range=0.2)
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, mask=mask, **kw)
    flat = symmetric_ppo_loss(log_prob_of(logits, actions)[valid], old[valid], adv[valid], **kw)
    for f in ("loss", "rl_loss", "reverse_loss", "clip_fraction", "approx_kl", "active_fraction"):
        torch.testing.assert_close(getattr(out, f), getattr(flat, f), **TOL)
    g = grad(out.loss, logits)
    assert torch.all(g[~valid] == 0)
    assert g[valid].abs().max() > 1e-3


def test_ppo_token_mask_diagnostics_by_hand():
    """clip_fraction and approx_kl with a mask are means over valid tokens only (python loop)."""
    logits, actions, adv, old = token_case(seed=30)
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, mask=TOKEN_MASK, clip_range=0.2)
    lp = log_prob_of(logits, actions).detach()
    ratios = [math.exp(a - b) for a, b, m in zip(lp.flatten().tolist(), old.flatten().tolist(),
                                                  TOKEN_MASK.flatten().tolist(), strict=True) if m]
    assert len(ratios) == 9
    clip = sum(1 for r in ratios if abs(r - 1) > 0.2) / len(ratios)
    kl = sum((r - 1) - math.log(r) for r in ratios) / len(ratios)
    assert 0 < clip < 1  # the case exercises both sides
    assert out.clip_fraction.item() == pytest.approx(clip, rel=1e-12)
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-10)
    # Unmasked statistics differ (so the mask is really used).
    unmasked = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, clip_range=0.2)
    assert unmasked.approx_kl.item() != pytest.approx(kl, rel=1e-6)


def test_masked_entries_values_do_not_matter():
    """Changing (finite) advantages and old log-probs under mask = 0 changes nothing."""
    logits, actions, adv, old = token_case(seed=40)
    valid = TOKEN_MASK.bool()
    adv2 = torch.where(valid, adv, torch.full_like(adv, 5.0))
    old2 = torch.where(valid, old, torch.full_like(old, -0.5))
    a = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, beta=1.0, mask=TOKEN_MASK)
    b = symmetric_ppo_loss(log_prob_of(logits, actions), old2, adv2, beta=1.0, mask=TOKEN_MASK)
    for f in ("loss", "clip_fraction", "approx_kl", "active_fraction"):
        torch.testing.assert_close(getattr(a, f), getattr(b, f), **TOL)


def test_masked_mean():
    """masked_mean: plain mean without mask, mean over mask==1 entries with it, 0 for an all-zero mask."""
    x = torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=DT)
    assert masked_mean(x, None).item() == pytest.approx(4.0)
    assert masked_mean(x, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=DT)).item() == pytest.approx(2.0)
    assert masked_mean(x, torch.zeros(4, dtype=DT)).item() == 0.0


def test_ppo_mask_robust_to_nonfinite_padding():
    """Padding whose old log-prob is very negative (e.g. -1e4) must not turn the masked loss into NaN."""
    logits, actions, adv, old = token_case(seed=50)
    valid = TOKEN_MASK.bool()
    old_padded = torch.where(valid, old, torch.full_like(old, -1e4))
    out = symmetric_ppo_loss(log_prob_of(logits, actions), old_padded, adv, beta=1.0, mask=TOKEN_MASK)
    ref = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, beta=1.0, mask=TOKEN_MASK)
    torch.testing.assert_close(out.loss, ref.loss, **TOL)
    torch.testing.assert_close(out.approx_kl, ref.approx_kl, **TOL)


# --------------------------------------------------------------------------------------------------
# Factorised policies: log_prob [N, D]
# --------------------------------------------------------------------------------------------------


def factorised_case(n=8, d=3, k=5, seed=60, scale=1.0, old_noise=0.15):
    logits, actions, adv = make_policy((n, d), k, seed=seed, scale=scale)
    adv = adv[:, 0].contiguous()
    g = torch.Generator().manual_seed(seed + 1)
    old = log_prob_of(logits, actions).detach() + old_noise * torch.randn(n, d, generator=g, dtype=DT)
    return logits, actions, adv, old


def test_factorised_default_is_joint():
    """Default: [N, D] log-probs are summed (joint probability) - equal to passing log_prob.sum(-1)."""
    logits, actions, adv, old = factorised_case()
    for kw in (dict(alpha=0.5, beta=1.0), dict(alpha=1.0, beta=2.0, variant="mae")):
        a = symmetric_a2c_loss(log_prob_of(logits, actions), adv, **kw)
        b = symmetric_a2c_loss(log_prob_of(logits, actions).sum(-1), adv, **kw)
        torch.testing.assert_close(a.loss, b.loss, **TOL)
        torch.testing.assert_close(grad(a.loss, logits), grad(b.loss, logits), **TOL)
        c = symmetric_ppo_loss(log_prob_of(logits, actions), old, adv, **kw)
        d = symmetric_ppo_loss(log_prob_of(logits, actions).sum(-1), old.sum(-1), adv, **kw)
        for f in ("loss", "rl_loss", "reverse_loss", "clip_fraction", "approx_kl", "active_fraction"):
            torch.testing.assert_close(getattr(c, f), getattr(d, f), **TOL)
        torch.testing.assert_close(grad(c.loss, logits), grad(d.loss, logits), **TOL)


@pytest.mark.parametrize("z", [-1.0, -6.0])
def test_factorised_per_dim_reverse_a2c(z):
    """per_dim_reverse: reverse_loss = mean_n sum_d -Z A_n (1 - p_nd); rl_loss stays joint."""
    logits, actions, adv, _ = factorised_case()
    out = symmetric_a2c_loss(log_prob_of(logits, actions), adv, beta=1.0, z=z, per_dim_reverse=True)
    lp = log_prob_of(logits, actions)
    hand_rev = (-z * adv[:, None] * (1 - lp.exp())).sum(-1).mean()
    torch.testing.assert_close(out.reverse_loss, hand_rev, **TOL)
    torch.testing.assert_close(out.rl_loss, -(adv * lp.sum(-1)).mean(), **TOL)
    torch.testing.assert_close(grad(out.reverse_loss, logits), grad(hand_rev, logits), **TOL)
    joint = symmetric_a2c_loss(log_prob_of(logits, actions), adv, beta=1.0, z=z)
    assert abs(joint.reverse_loss.item() - out.reverse_loss.item()) > 1e-3


@pytest.mark.parametrize("reverse_mask", ["ppo", "none"])
def test_factorised_per_dim_reverse_ppo(reverse_mask):
    """per_dim_reverse PPO: mean_n sum_d m_n A_n (-Z)(1 - p_nd) / p_old_nd, m_n from the JOINT ratio."""
    z = -1.0
    logits, actions, adv, old = factorised_case(seed=70, old_noise=0.2)
    out = symmetric_ppo_loss(
        log_prob_of(logits, actions), old, adv, beta=1.0, z=z, per_dim_reverse=True, reverse_mask=reverse_mask
    )
    lp = log_prob_of(logits, actions)
    r = (lp.detach().sum(-1) - old.sum(-1)).exp()
    m = hand_active(r, adv, 0.2) if reverse_mask == "ppo" else torch.ones_like(r)
    if reverse_mask == "ppo":
        assert 0 < m.mean() < 1  # both active and inactive samples
    hand = ((m * adv)[:, None] * (-z) * (1 - lp.exp()) / old.exp()).sum(-1).mean()
    torch.testing.assert_close(out.reverse_loss, hand, **TOL)
    torch.testing.assert_close(grad(out.reverse_loss, logits), grad(hand, logits), **TOL)


def test_joint_reverse_gradient_vanishes_with_joint_probability():
    """D=6, K=11 near-uniform: joint reverse grad = per-dim grad * prod_{d' != d} p_d' (~11^-5)."""
    n, d, k = 4, 6, 11
    logits, actions, adv, _ = factorised_case(n=n, d=d, k=k, seed=80, scale=0.01)
    g_joint = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv).reverse_loss, logits)
    g_dim = grad(symmetric_a2c_loss(log_prob_of(logits, actions), adv, per_dim_reverse=True).reverse_loss, logits)
    p = log_prob_of(logits, actions).detach().exp()  # [n, d]
    others = p.prod(-1, keepdim=True) / p  # prod over d' != d
    torch.testing.assert_close(g_joint, g_dim * others[..., None], rtol=1e-9, atol=1e-20)
    ratio = (g_joint.norm() / g_dim.norm()).item()
    assert ratio == pytest.approx(11.0**-5, rel=0.1)
    assert ratio < 1e-5
    # Per-dim closed form: Z A p_d (e_d - pi_d) / N with Z = -1.
    torch.testing.assert_close(g_dim, -(adv[:, None] * p)[..., None] * score(logits, actions) / n, **TOL)


# --------------------------------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error():
    """Unknown variant / reverse_mask and mismatched shapes are ValueErrors."""
    lp = torch.zeros(5, dtype=DT)
    adv = torch.zeros(5, dtype=DT)
    with pytest.raises(ValueError):
        symmetric_a2c_loss(lp, adv, variant="foo")
    with pytest.raises(ValueError):
        symmetric_ppo_loss(lp, lp, adv, variant="foo")
    with pytest.raises(ValueError):
        symmetric_ppo_loss(lp, lp, adv, reverse_mask="foo")
    with pytest.raises(ValueError):
        symmetric_a2c_loss(torch.zeros(4, dtype=DT), adv)
    with pytest.raises(ValueError):
        symmetric_ppo_loss(torch.zeros(4, dtype=DT), lp, adv)
    with pytest.raises(ValueError):
        symmetric_ppo_loss(lp, torch.zeros(4, dtype=DT), adv)
    with pytest.raises(ValueError):
        symmetric_a2c_loss(torch.zeros(5, 2, 3, dtype=DT), adv)  # two extra axes
    with pytest.raises(ValueError):
        symmetric_a2c_loss(lp, adv, mask=torch.ones(4, dtype=DT))
    with pytest.raises(ValueError):
        symmetric_ppo_loss(lp, lp, adv, mask=torch.ones(5, 1, dtype=DT))
    # a per-dimension log_prob must lead with the advantages' shape (not broadcast against them)
    with pytest.raises(ValueError, match=r"log_prob shape \(1, 5\)"):
        symmetric_a2c_loss(torch.zeros(1, 5, dtype=DT), adv)
    with pytest.raises(ValueError, match=r"log_prob shape \(5, 3\)"):
        symmetric_ppo_loss(torch.zeros(5, 3, dtype=DT), torch.zeros(5, 3, dtype=DT), torch.zeros(1, dtype=DT))
    with pytest.raises(ValueError, match="z .* must be negative"):
        symmetric_a2c_loss(lp, adv, z=0.5)
    with pytest.raises(ValueError, match="clip_range must be >= 0"):
        symmetric_ppo_loss(lp, lp, adv, clip_range=-0.2)


def _both(log_prob, advantages, **kw):
    """Both losses on the same inputs (the PPO one with old = new log-probs)."""
    yield lambda: symmetric_a2c_loss(log_prob, advantages, **kw)
    yield lambda: symmetric_ppo_loss(log_prob, log_prob if isinstance(log_prob, torch.Tensor) else torch.zeros(3),
                                     advantages, **kw)


@pytest.mark.parametrize("log_prob,advantages,kw,error,words", [
    (np.zeros(3), torch.zeros(3), {}, TypeError, "log_prob must be a torch.Tensor, got ndarray"),
    (torch.zeros(3), [0.0, 1.0, 2.0], {}, TypeError, "advantages must be a torch.Tensor, got list"),
    (torch.zeros(3, dtype=torch.long), torch.zeros(3), {}, TypeError, "log_prob must have a floating dtype"),
    (torch.zeros(3), torch.ones(3, dtype=torch.int32), {}, TypeError, "advantages must have a floating dtype"),
    (torch.zeros(3), torch.tensor([0.0, float("nan"), 1.0]), {}, ValueError, "advantages contain NaN"),
    (torch.zeros(3), torch.tensor([0.0, float("inf"), 1.0]), {}, ValueError, "advantages contain NaN or infinite"),
    (torch.zeros(0), torch.zeros(0), {}, ValueError, "the batch is empty"),
    (torch.zeros(3), torch.ones(3), {"alpha": float("nan")}, ValueError, "alpha and beta must be finite"),
    (torch.zeros(3), torch.ones(3), {"beta": float("inf")}, ValueError, "alpha and beta must be finite"),
    (torch.tensor([-0.5, 0.9, -1.0]), torch.ones(3), {"beta": 1.0}, ValueError, "log_prob has positive values"),
])
def test_inputs_the_losses_refuse_are_named(log_prob, advantages, kw, error, words):
    """Wrong types, integer dtypes, non-finite advantages or weights, empty batches and log densities (with the
    reverse term on) are refused with an error naming the input, not garbage or an AttributeError."""
    for loss in _both(log_prob, advantages, **kw):
        with pytest.raises(error, match=re.escape(words)):
            loss()


def test_what_the_input_checks_still_accept():
    """Log densities with beta=0 (a Gaussian PPO), non-finite advantages and positive log-probs in padding, and
    rounding just above 0 are fine."""
    density = torch.tensor([0.7, -0.2, 1.3])  # a continuous policy's log densities
    assert torch.isfinite(symmetric_ppo_loss(density, density, torch.ones(3)).loss)
    mask = torch.tensor([1.0, 1.0, 0.0])
    padded_adv = torch.tensor([0.5, -1.0, float("nan")])
    padded_lp = torch.tensor([-0.5, -1.0, 3.0])
    for loss in _both(padded_lp, padded_adv, beta=1.0, mask=mask):
        assert torch.isfinite(loss().loss)
    assert torch.isfinite(symmetric_a2c_loss(torch.tensor([1e-6, -1.0]), torch.ones(2), beta=1.0).loss)


@pytest.mark.parametrize("old_shape", [(5,), (5, 2)])
def test_factorised_old_log_prob_shape_mismatch_raises_value_error(old_shape):
    """log_prob [N, D] with old_log_prob of another shape should be a ValueError (now AttributeError/RuntimeError)."""
    lp = torch.zeros(5, 3, dtype=DT)
    adv = torch.zeros(5, dtype=DT)
    with pytest.raises(ValueError):
        symmetric_ppo_loss(lp, torch.zeros(*old_shape, dtype=DT), adv, per_dim_reverse=True)


# --------------------------------------------------------------------------------------------------
# numerics: joint log-probabilities far below float32's exp range (many action dimensions, long sequences)
# --------------------------------------------------------------------------------------------------


def _extreme_log_probs(dtype, dims=17, seed=0):
    """``[64, dims]`` per-dimension log-probs whose joint sums reach about -1,000 in half the rows (moderate in the
    other half), and new ones near them."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(64)[:, None] < 32
    old = torch.where(rows, -57.0 - 3.0 * torch.rand(64, dims, generator=g, dtype=torch.float64),
                      -10.0 * torch.rand(64, dims, generator=g, dtype=torch.float64))
    new = (old + 0.3 * torch.randn(64, dims, generator=g, dtype=torch.float64)).clamp(max=0.0)  # probabilities
    adv = torch.randn(64, generator=g, dtype=torch.float64)
    return new.to(dtype).requires_grad_(True), old.to(dtype), adv.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("per_dim_reverse", [False, True])
@pytest.mark.parametrize("reverse_mask", ["ppo", "none"])
def test_reverse_ppo_term_is_finite_down_to_joint_log_prob_minus_1000(dtype, per_dim_reverse, reverse_mask):
    new, old, adv = _extreme_log_probs(dtype)
    assert new.detach().sum(-1).min() < -900 and new.detach().sum(-1).float().exp().min() == 0  # exp underflows
    out = symmetric_ppo_loss(new, old, adv, alpha=0.5, beta=1.0, z=-1.0, reverse_mask=reverse_mask,
                             per_dim_reverse=per_dim_reverse)
    (grad,) = torch.autograd.grad(out.loss, new)
    assert torch.isfinite(out.loss) and torch.isfinite(out.reverse_loss) and torch.isfinite(grad).all()
    # the gradient is the closed form: alpha * PPO's + beta * Z * A * r (* m), r the joint or per-dimension ratio
    # (the ratio as the loss computes it, in the input's dtype: a bfloat16 sum near -1,000 is only good to ~4)
    adv64 = adv.double()
    ratio = (new.detach().sum(-1) - old.sum(-1)).exp().double()
    active = ((ratio - 1).abs() <= 0.2) | (ratio * adv64 <= ratio.clamp(0.8, 1.2) * adv64)
    weight = adv64 * (active.double() if reverse_mask == "ppo" else 1.0)
    ppo = -(adv64 * ratio * active.double())[:, None].expand(-1, new.shape[1])
    dim_ratio = (new.detach() - old).exp().double()
    rev_ratio = dim_ratio if per_dim_reverse else ratio[:, None].expand(-1, new.shape[1])
    expected = (0.5 * ppo + 1.0 * (-1.0) * weight[:, None] * rev_ratio) / 64
    # float32 sums of 17 log-probs near -1,000 carry ~1e-4 relative error into the ratio
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == torch.float32 else dict(rtol=0.1, atol=2e-3)
    torch.testing.assert_close(grad.double(), expected, **tol)


def test_reverse_ppo_value_and_gradient_unchanged_where_the_direct_formula_is_finite():
    """Where -Z (1 - p) / p_old can be computed directly (float64, log-probs in [-30, 0]), the overflow-safe form
    gives the same loss and gradient."""
    g = torch.Generator().manual_seed(3)
    old = -30.0 * torch.rand(256, generator=g, dtype=DT)
    new = (old + 0.3 * torch.randn(256, generator=g, dtype=DT)).clamp(max=0.0).requires_grad_(True)
    adv = torch.randn(256, generator=g, dtype=DT)
    for variant, z in (("rce", -1.7), ("mae", -1.0)):
        out = symmetric_ppo_loss(new, old, adv, alpha=0.0, beta=1.0, z=z, variant=variant, reverse_mask="none")
        p = new.exp()
        direct = (adv * ((-z * (1 - p)) if variant == "rce" else (1 - 2 * p)) / old.exp()).mean()
        torch.testing.assert_close(out.loss, direct, **TOL)
        torch.testing.assert_close(torch.autograd.grad(out.loss, new)[0], torch.autograd.grad(direct, new)[0], **TOL)


def test_numpy_engine_reverse_term_is_finite_and_matches_torch_far_below_minus_88():
    import numpy as np

    from symrl.fast.losses import ppo_loss_and_grad

    new, old, adv = _extreme_log_probs(torch.float32, seed=1)
    for per_dim_reverse in (False, True):
        kw = dict(clip_range=0.2, alpha=0.5, beta=1.0, z=-1.0, variant="rce", reverse_mask="ppo",
                  per_dim_reverse=per_dim_reverse)
        terms, grad = ppo_loss_and_grad(new.detach().numpy(), old.numpy(), adv.numpy(), **kw)
        out = symmetric_ppo_loss(new, old, adv, **{k: v for k, v in kw.items()})
        (torch_grad,) = torch.autograd.grad(out.loss, new)
        assert np.isfinite(terms["policy_loss"]) and np.isfinite(grad).all()
        assert terms["policy_loss"] == pytest.approx(float(out.loss), rel=1e-4)
        expected = torch_grad if per_dim_reverse else torch_grad[:, 0]  # the joint gradient, per sample
        np.testing.assert_allclose(grad, expected.numpy(), rtol=1e-3, atol=1e-6)  # float32 sums near -1,000


@pytest.mark.parametrize("settings, message", [
    (dict(alpha=-0.5), r"alpha and beta must be finite and >= 0"),
    (dict(beta=float("nan")), r"alpha and beta must be finite and >= 0"),
    (dict(z=0.0), r"z \(the reverse cross entropy's log 0\) must be negative"),
    (dict(z=float("-inf")), r"z .* must be negative and finite"),
    (dict(variant="nll"), r"variant must be 'rce' or 'mae'"),
    (dict(reverse_mask="all"), r"reverse_mask must be 'ppo' \(the authors' mask\) or 'none'"),
])
def test_one_settings_check_serves_the_losses_and_every_plug_in(settings, message):
    """symrl.losses.check_settings refuses what cannot work and names the setting as the caller spells it; the
    losses run the same check on their arguments."""
    from symrl.losses import check_settings

    with pytest.raises(ValueError, match=message):
        check_settings(**settings)
    with pytest.raises(ValueError, match="symmetric_" + message.split(" ")[0]):
        check_settings(**settings, prefix="symmetric_")
    log_prob = torch.log(torch.full((4,), 0.5))
    kwargs = {"alpha": 1.0, "beta": 1.0, "z": -1.0, "variant": "rce", **settings}
    with pytest.raises(ValueError, match=message):
        symmetric_ppo_loss(log_prob, log_prob, torch.ones(4), clip_range=0.2, **kwargs)
