"""Tests of GAE, advantage normalisation and the sign-change diagnostic against hand computations.

Arrays are ``[T, N]`` (T steps of N environments). ``next_values[t]`` is V(s_{t+1}) while the episode
goes on, V(final observation) on truncation and 0 on termination; ``dones[t]`` stops the recursion.
"""

from __future__ import annotations

import math

import pytest
import torch

from symrl.advantages import compute_gae, normalize_advantages, sign_change_ratio

DT = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)


def reference_gae(rewards, values, next_values, dones, gamma, lam):
    """Obviously-correct GAE on python lists of lists ([T][N]), one environment at a time."""
    t_len, n_env = len(rewards), len(rewards[0])
    adv = [[0.0] * n_env for _ in range(t_len)]
    for j in range(n_env):
        running = 0.0
        for t in reversed(range(t_len)):
            delta = rewards[t][j] + gamma * next_values[t][j] - values[t][j]
            if dones[t][j]:
                running = 0.0  # the next step belongs to another episode
            running = delta + gamma * lam * running
            adv[t][j] = running
    return adv


def t(x):
    return torch.tensor(x, dtype=DT)


def test_gae_hand_example_with_termination_and_truncation():
    """gamma = lambda = 0.5 (gamma*lambda = 1/4); numbers worked out by hand, exact in binary.

    env 0: no episode end, bootstrap V = 2 after the last step.
      deltas = [0.5, -0.5, 1.5, 1.0]; A3 = 1, A2 = 1.75, A1 = -0.0625, A0 = 0.484375.
    env 1: terminated at t=1 (next value 0), truncated at t=3 (bootstrap V(final obs) = 4).
      deltas = [-0.5, 1.0, -1.5, 2.0]; A3 = 2, A2 = -1, A1 = 1 (recursion stopped), A0 = -0.25.
    """
    rewards = t([[1, 1], [0, 2], [2, 0], [1, 1]])
    values = t([[1, 2], [1, 1], [1, 2], [1, 1]])
    next_values = t([[1, 1], [1, 0], [1, 1], [2, 4]])
    dones = torch.tensor([[0, 0], [0, 1], [0, 0], [0, 1]], dtype=torch.bool)
    adv, ret = compute_gae(rewards, values, next_values, dones, gamma=0.5, gae_lambda=0.5)
    expected = t([[0.484375, -0.25], [-0.0625, 1.0], [1.75, -1.0], [1.0, 2.0]])
    torch.testing.assert_close(adv, expected, **TOL)
    torch.testing.assert_close(ret, expected + values, **TOL)
    # Termination: A = r - V exactly (no bootstrap). Truncation: A = r + gamma V_final - V.
    assert adv[1, 1].item() == 2.0 - 1.0
    assert adv[3, 1].item() == 1.0 + 0.5 * 4.0 - 1.0


@pytest.mark.parametrize("dones_dtype", [torch.bool, DT])
def test_gae_matches_reference_loop(dones_dtype):
    """Random rollout (T=6, N=3, random episode ends) against the python reference loop."""
    g = torch.Generator().manual_seed(0)
    T, N = 6, 3
    rewards = torch.randn(T, N, generator=g, dtype=DT)
    values = torch.randn(T, N, generator=g, dtype=DT)
    next_values = torch.randn(T, N, generator=g, dtype=DT)
    dones = torch.rand(T, N, generator=g) < 0.3
    assert dones.any() and (~dones).any()
    adv, ret = compute_gae(rewards, values, next_values, dones.to(dones_dtype), gamma=0.99, gae_lambda=0.95)
    ref = reference_gae(rewards.tolist(), values.tolist(), next_values.tolist(), dones.tolist(), 0.99, 0.95)
    torch.testing.assert_close(adv, t(ref), **TOL)
    torch.testing.assert_close(ret, t(ref) + values, **TOL)


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    """lambda = 1, episodes ending by termination: returns are discounted reward sums per episode."""
    gamma = 0.9
    g = torch.Generator().manual_seed(1)
    T = 5
    rewards = torch.randn(T, 2, generator=g, dtype=DT)
    values = torch.randn(T, 2, generator=g, dtype=DT)
    # env 0 terminates at t=2 and t=4; env 1 only at t=4. Next values are consistent (V(s_{t+1})).
    dones = torch.tensor([[0, 0], [0, 0], [1, 0], [0, 0], [1, 1]], dtype=torch.bool)
    next_values = torch.cat([values[1:], torch.zeros(1, 2, dtype=DT)])
    next_values[dones] = 0.0
    adv, ret = compute_gae(rewards, values, next_values, dones, gamma=gamma, gae_lambda=1.0)
    r = rewards.tolist()
    mc0 = [r[0][0] + gamma * r[1][0] + gamma**2 * r[2][0], r[1][0] + gamma * r[2][0], r[2][0],
           r[3][0] + gamma * r[4][0], r[4][0]]
    mc1 = [sum(gamma ** (k - s) * r[k][1] for k in range(s, T)) for s in range(T)]
    expected_ret = t([[a, b] for a, b in zip(mc0, mc1, strict=True)])
    torch.testing.assert_close(ret, expected_ret, **TOL)
    torch.testing.assert_close(adv, expected_ret - values, **TOL)


def test_gae_lambda_zero_is_one_step_td_error():
    """lambda = 0: advantages are r + gamma * next_value - value, whatever the dones."""
    g = torch.Generator().manual_seed(2)
    rewards, values, next_values = (torch.randn(4, 2, generator=g, dtype=DT) for _ in range(3))
    dones = torch.tensor([[0, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.bool)
    adv, _ = compute_gae(rewards, values, next_values, dones, gamma=0.97, gae_lambda=0.0)
    torch.testing.assert_close(adv, rewards + 0.97 * next_values - values, **TOL)


def test_gae_done_stops_recursion():
    """A reward after an episode end must not leak into the advantages of the previous episode."""
    rewards = t([[0.0], [0.0], [100.0]])
    values = torch.zeros(3, 1, dtype=DT)
    next_values = torch.zeros(3, 1, dtype=DT)
    dones = torch.tensor([[0], [1], [0]], dtype=torch.bool)
    adv, _ = compute_gae(rewards, values, next_values, dones, gamma=0.99, gae_lambda=0.95)
    torch.testing.assert_close(adv, t([[0.0], [0.0], [100.0]]), **TOL)
    adv_nodone, _ = compute_gae(rewards, values, next_values, torch.zeros_like(dones), gamma=0.99, gae_lambda=0.95)
    assert adv_nodone[0, 0].item() == pytest.approx(100.0 * (0.99 * 0.95) ** 2)


# --------------------------------------------------------------------------------------------------
# normalize_advantages
# --------------------------------------------------------------------------------------------------


def test_normalize_advantages_mean_zero_std_one():
    """(A - mean) / (std + 1e-8) with the unbiased std: mean 0, std 1."""
    g = torch.Generator().manual_seed(3)
    a = 3.0 + 2.5 * torch.randn(50, generator=g, dtype=DT)
    out = normalize_advantages(a)
    assert abs(out.mean().item()) < 1e-12
    assert out.std().item() == pytest.approx(1.0, abs=1e-7)
    torch.testing.assert_close(out, (a - a.mean()) / (a.std() + 1e-8), **TOL)


def test_normalize_advantages_hand_values():
    """[1, 2, 3, 10]: mean 4, squared deviations 9+4+1+36 = 50, unbiased std sqrt(50/3)."""
    out = normalize_advantages(t([1.0, 2.0, 3.0, 10.0]))
    s = math.sqrt(50.0 / 3.0)
    expected = [(x - 4.0) / (s + 1e-8) for x in (1.0, 2.0, 3.0, 10.0)]
    torch.testing.assert_close(out, t(expected), **TOL)


@pytest.mark.parametrize("mask_dtype", [DT, torch.bool])
def test_normalize_advantages_with_mask(mask_dtype):
    """With a mask: statistics over valid entries only, output 0 under mask = 0 (token matrix [B, T])."""
    g = torch.Generator().manual_seed(4)
    a = 5.0 + 3.0 * torch.randn(3, 4, generator=g, dtype=DT)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    a_junk = torch.where(valid, a, torch.full_like(a, 1e3))  # masked values must not enter the statistics
    out = normalize_advantages(a_junk, mask=valid.to(mask_dtype))
    assert torch.all(out[~valid] == 0)
    v = a[valid]
    torch.testing.assert_close(out[valid], (v - v.mean()) / (v.std() + 1e-8), **TOL)
    assert abs(out[valid].mean().item()) < 1e-12
    assert out[valid].std().item() == pytest.approx(1.0, abs=1e-7)


# --------------------------------------------------------------------------------------------------
# sign_change_ratio
# --------------------------------------------------------------------------------------------------


def test_sign_change_ratio_known_vectors():
    """[1, 2, 3, 10] -> mean 4, three entries become negative: 0.75. [-1, 2, 3, 10] -> mean 3.5: 0.5."""
    raw = t([1.0, 2.0, 3.0, 10.0])
    assert sign_change_ratio(raw, normalize_advantages(raw)).item() == pytest.approx(0.75)
    raw = t([-1.0, 2.0, 3.0, 10.0])
    assert sign_change_ratio(raw, normalize_advantages(raw)).item() == pytest.approx(0.5)
    # Direct: only sign comparisons matter.
    assert sign_change_ratio(t([1.0, -1.0, 2.0, -2.0]), t([-0.1, -3.0, 0.5, 4.0])).item() == pytest.approx(0.5)


def test_sign_change_ratio_with_mask():
    """With a mask only valid entries count (masked normalised entries are 0, which would count as changed)."""
    raw = t([1.0, 2.0, 3.0, 10.0, -5.0, 100.0])
    mask = t([1, 1, 1, 1, 0, 0])
    normed = normalize_advantages(raw, mask=mask)
    assert sign_change_ratio(raw, normed, mask=mask).item() == pytest.approx(0.75)
    assert sign_change_ratio(raw, normed).item() == pytest.approx(5 / 6)


def test_gae_accepts_bfloat16_and_keeps_the_dtype():
    """Language-model values often come in bfloat16, which NumPy lacks: GAE computes in float32."""
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(6, 3, generator=g) for _ in range(3))
    dones = torch.zeros(6, 3)
    dones[2, 1] = 1
    adv32, ret32 = compute_gae(r, v, nv, dones, 0.99, 0.95)
    adv16, ret16 = compute_gae(r.bfloat16(), v.bfloat16(), nv.bfloat16(), dones, 0.99, 0.95)
    assert adv16.dtype == ret16.dtype == torch.bfloat16
    torch.testing.assert_close(adv16.float(), adv32, rtol=0.03, atol=0.05)
