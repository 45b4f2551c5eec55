"""Tests of the training-time noise (SPEC section 3) and of where the rollout applies it.

Unit tests check parsing, the statistics of each noise kind and seeding; the Collector tests run real
CartPole / Pendulum environments and check the reward pipeline order (raw -> sign clip -> flip ->
normalisation -> Gaussian/uniform) and the time-limit bootstrap stored in ``buffer.next_values``.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from symrl.config import make_config
from symrl.envs import make_train_envs
from symrl.envs.normalize import ObsNormalizer, RewardScaler
from symrl.errors import SymrlError
from symrl.noise import AdvantageNoise, NoiseSpec, RewardNoise, parse_adv_noise, parse_reward_noise
from symrl.policies import ActorCritic
from symrl.rollout import Collector, RolloutBuffer

N_LARGE = 1_000_000


# ---------------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gaussian:0.05", NoiseSpec("gaussian", 0.05)),
        ("uniform:0.5", NoiseSpec("uniform", 0.5)),
        ("flip:0.1", NoiseSpec("flip", 0.1)),
        ("flip:0", NoiseSpec("flip", 0.0)),
        ("flip:1", NoiseSpec("flip", 1.0)),
        (" FLIP:0.25", NoiseSpec("flip", 0.25)),
        ("gaussian:1e-2", NoiseSpec("gaussian", 0.01)),
    ],
)
def test_parse_reward_noise_valid(spec, expected):
    """Valid reward-noise specs parse to (kind, value)."""
    assert parse_reward_noise(spec) == expected


@pytest.mark.parametrize("spec", [None, "", "none", "None", "null"])
def test_parse_noise_none(spec):
    """No spec (None, empty, 'none', 'null') means no noise."""
    assert parse_reward_noise(spec) is None
    assert parse_adv_noise(spec) is None


def test_parse_adv_noise_valid():
    """The advantage noise accepts flip:P only."""
    assert parse_adv_noise("flip:0.2") == NoiseSpec("flip", 0.2)


def test_noise_spec_str():
    """A NoiseSpec prints back as the spec string."""
    assert str(NoiseSpec("gaussian", 0.05)) == "gaussian:0.05"
    assert parse_reward_noise(str(NoiseSpec("flip", 0.1))) == NoiseSpec("flip", 0.1)


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian",
        "gauss:0.1",
        "flip:1.5",
        "gaussian:-1",
        "uniform:abc",
        "flip:-0.1",
        "gaussian:nan",
        "uniform:inf",
        ":0.1",
        "flip:",
    ],
)
def test_parse_reward_noise_malformed(spec):
    """Malformed reward-noise specs raise SymrlError starting with 'malformed'."""
    with pytest.raises(SymrlError) as info:
        parse_reward_noise(spec)
    assert str(info.value).startswith("malformed")


@pytest.mark.parametrize("spec", ["gaussian:0.1", "uniform:0.1", "flip", "flip:2", "flip:x"])
def test_parse_adv_noise_malformed(spec):
    """Advantage noise other than flip:P in [0, 1] raises SymrlError starting with 'malformed'."""
    with pytest.raises(SymrlError) as info:
        parse_adv_noise(spec)
    assert str(info.value).startswith("malformed")


# ---------------------------------------------------------------------------------------------------
# statistics


def _reward_noise(spec: str, seed: int = 0) -> RewardNoise:
    return RewardNoise(parse_reward_noise(spec), np.random.default_rng(seed))


def test_gaussian_noise_statistics_after_normalization_only():
    """Gaussian noise: before_normalization is the identity; after it adds N(0, sigma^2)."""
    sigma = 0.05
    noise = _reward_noise(f"gaussian:{sigma}")
    rewards = np.random.default_rng(123).normal(3.0, 2.0, N_LARGE)
    np.testing.assert_array_equal(noise.before_normalization(rewards.copy()), rewards)
    added = noise.after_normalization(rewards.copy()) - rewards
    assert abs(added.mean()) < 5 * sigma / np.sqrt(N_LARGE)
    assert added.std() == pytest.approx(sigma, rel=0.01)
    assert np.all(added != 0.0)


def test_uniform_noise_statistics():
    """Uniform noise lies in [-v, v] with mean 0 and variance v^2/3, after normalisation only."""
    v = 0.5
    noise = _reward_noise(f"uniform:{v}")
    rewards = np.zeros(N_LARGE)
    np.testing.assert_array_equal(noise.before_normalization(rewards.copy()), rewards)
    added = noise.after_normalization(rewards)
    assert added.min() >= -v and added.max() <= v
    assert added.min() < -0.99 * v and added.max() > 0.99 * v
    assert abs(added.mean()) < 0.005
    assert added.var() == pytest.approx(v**2 / 3, rel=0.01)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_flip_noise_statistics(p):
    """Flip: r -> 1 - r with frequency p on sign-clipped rewards (-1 -> 2, 0 -> 1, 1 -> 0)."""
    noise = _reward_noise(f"flip:{p}")
    rewards = np.random.default_rng(7).integers(-1, 2, N_LARGE).astype(np.float64)
    out = noise.before_normalization(rewards.copy())
    flipped = out != rewards
    np.testing.assert_array_equal(out[flipped], 1.0 - rewards[flipped])
    assert set(np.unique(out[rewards == -1])) == {-1.0, 2.0}
    assert set(np.unique(out[rewards == 0])) == {0.0, 1.0}
    assert set(np.unique(out[rewards == 1])) == {1.0, 0.0}
    assert flipped.mean() == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / N_LARGE))
    np.testing.assert_array_equal(noise.after_normalization(out.copy()), out)


def test_flip_noise_extremes():
    """flip:1 flips every reward; flip:0 flips none."""
    rewards = np.array([-1.0, 0.0, 1.0, 0.5])
    np.testing.assert_array_equal(_reward_noise("flip:1").before_normalization(rewards), [2.0, 1.0, 0.0, 0.5])
    np.testing.assert_array_equal(_reward_noise("flip:0").before_normalization(rewards), rewards)


def test_no_reward_noise_is_identity():
    """Without a spec both stages return the rewards unchanged."""
    noise = RewardNoise(None, np.random.default_rng(0))
    rewards = np.array([1.0, -2.0, 3.5])
    np.testing.assert_array_equal(noise.before_normalization(rewards), rewards)
    np.testing.assert_array_equal(noise.after_normalization(rewards), rewards)


@pytest.mark.parametrize("p", [0.0, 0.2, 1.0])
def test_advantage_flip_statistics(p):
    """Advantage flip changes signs with frequency p and never magnitudes, dtype or shape."""
    noise = AdvantageNoise(parse_adv_noise(f"flip:{p}"), np.random.default_rng(0))
    adv = torch.randn(500, 400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = noise(adv.clone())
    assert out.shape == adv.shape and out.dtype == adv.dtype
    torch.testing.assert_close(out.abs(), adv.abs(), rtol=0, atol=0)
    flipped = (out != adv).double().mean().item()
    n = adv.numel()
    assert flipped == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert torch.all((out == adv) | (out == -adv))


def test_advantage_noise_none_is_identity():
    """No advantage noise returns the advantages unchanged."""
    adv = torch.tensor([1.0, -2.0, 0.5])
    torch.testing.assert_close(AdvantageNoise(None, np.random.default_rng(0))(adv), adv)


# ---------------------------------------------------------------------------------------------------
# seeding


@pytest.mark.parametrize("spec", ["gaussian:0.1", "uniform:0.3", "flip:0.5"])
def test_reward_noise_same_seed_same_draws(spec):
    """The same seed gives identical noise; a different seed gives different noise."""
    rewards = np.random.default_rng(5).integers(-1, 2, 1000).astype(np.float64)

    def draw(seed):
        noise = _reward_noise(spec, seed)
        return noise.after_normalization(noise.before_normalization(rewards.copy()))

    np.testing.assert_array_equal(draw(11), draw(11))
    assert not np.array_equal(draw(11), draw(12))


def test_advantage_noise_seeding():
    """Advantage flips are reproducible from the seed and differ across seeds."""
    adv = torch.arange(1, 1001, dtype=torch.float32)

    def draw(seed):
        return AdvantageNoise(parse_adv_noise("flip:0.5"), np.random.default_rng(seed))(adv)

    torch.testing.assert_close(draw(3), draw(3), rtol=0, atol=0)
    assert not torch.equal(draw(3), draw(4))


def test_generator_state_round_trip():
    """Restoring bit_generator.state reproduces the continuation of the noise stream."""
    noise = _reward_noise("gaussian:0.1", seed=9)
    rewards = np.zeros(100)
    noise.after_normalization(rewards)  # advance the stream
    state = copy.deepcopy(noise.rng.bit_generator.state)
    expected = noise.after_normalization(rewards)
    restored = _reward_noise("gaussian:0.1", seed=12345)
    restored.rng.bit_generator.state = state
    np.testing.assert_array_equal(restored.after_normalization(rewards), expected)

    adv_noise = AdvantageNoise(parse_adv_noise("flip:0.5"), np.random.default_rng(1))
    adv = torch.ones(1000)
    adv_noise(adv)
    adv_state = copy.deepcopy(adv_noise.rng.bit_generator.state)
    adv_expected = adv_noise(adv)
    other = AdvantageNoise(parse_adv_noise("flip:0.5"), np.random.default_rng(2))
    other.rng.bit_generator.state = adv_state
    torch.testing.assert_close(other(adv), adv_expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# the rollout's reward pipeline and time-limit bootstrap, on real environments

NOISE_SEED = 77


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small MLPs run fastest (and without thread contention) on one thread, as in the trainer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordSteps(gym.vector.VectorWrapper):
    """Keeps a deep copy of every vector step's (obs, reward, terminated, truncated, infos)."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = []

    def step(self, actions):
        out = self.env.step(actions)
        self.steps.append(copy.deepcopy(out))
        return out


def _collect(cfg, record: bool = False):
    """Wire a Collector as the trainer does, run one rollout; return (buffer, policy, envs)."""
    torch.manual_seed(cfg.seed)
    envs = make_train_envs(cfg)
    if record:
        envs = RecordSteps(envs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    policy = ActorCritic(obs_space, action_space, cfg)
    obs_norm = ObsNormalizer(obs_space.shape, cfg.norm_obs, cfg.clip_obs)
    scaler = RewardScaler(cfg.n_envs, cfg.gamma, cfg.norm_reward, cfg.clip_reward)
    noise = RewardNoise(parse_reward_noise(cfg.reward_noise), np.random.default_rng(NOISE_SEED))
    lp_shape = (len(action_space.nvec),) if isinstance(action_space, gym.spaces.MultiDiscrete) else ()
    buf = RolloutBuffer(cfg.n_steps, cfg.n_envs, obs_space, action_space, lp_shape)
    collector = Collector(envs, obs_norm, scaler, noise, cfg.sign_reward, cfg.seed)
    collector.collect(policy, buf)
    envs.close()
    return buf, policy, envs


def _cartpole(**overrides):
    base = dict(n_envs=8, n_steps=250, seed=0, sign_reward=True, norm_reward=False)
    base.update(overrides)
    return make_config("ppo", "CartPole-v1", **base)


@pytest.mark.parametrize("norm_reward", [False, True])
def test_collector_flip_all_before_normalization(norm_reward):
    """CartPole reward 1, sign clip, flip:1.0 -> every stored reward is 0 (flip precedes scaling)."""
    buf, _, _ = _collect(_cartpole(reward_noise="flip:1.0", norm_reward=norm_reward))
    assert torch.count_nonzero(buf.rewards) == 0


def test_collector_flip_draws_match_generator():
    """With flip:0.3 the stored rewards are 1 - flip mask drawn step by step from the seeded generator."""
    cfg = _cartpole(reward_noise="flip:0.3")
    buf, _, _ = _collect(cfg)
    rng = np.random.default_rng(NOISE_SEED)
    expected = np.stack([np.where(rng.random(cfg.n_envs) < 0.3, 0.0, 1.0) for _ in range(cfg.n_steps)])
    np.testing.assert_array_equal(buf.rewards.numpy(), expected.astype(np.float32))
    assert set(np.unique(buf.rewards.numpy())) == {0.0, 1.0}
    assert (buf.rewards == 0).double().mean().item() == pytest.approx(0.3, abs=0.04)


def test_collector_gaussian_without_normalization():
    """gaussian:0.1 and no reward scaling: stored reward - 1 is the generator's N(0, 0.1^2) draws."""
    sigma = 0.1
    cfg = _cartpole(reward_noise=f"gaussian:{sigma}", sign_reward=False)
    buf, _, _ = _collect(cfg)
    added = buf.rewards.double().numpy() - 1.0
    rng = np.random.default_rng(NOISE_SEED)
    expected = np.stack([rng.normal(0.0, sigma, cfg.n_envs) for _ in range(cfg.n_steps)])
    np.testing.assert_allclose(added, expected, atol=1e-6)
    assert added.std() == pytest.approx(sigma, rel=0.05)


def test_collector_gaussian_added_after_normalization():
    """With reward scaling on, Gaussian noise is added to the scaled reward (not scaled itself)."""
    sigma = 0.05
    cfg = _cartpole(reward_noise=f"gaussian:{sigma}", sign_reward=False, norm_reward=True)
    buf, _, _ = _collect(cfg)
    clean_scaler = RewardScaler(cfg.n_envs, cfg.gamma, True, cfg.clip_reward)
    clean = np.stack([clean_scaler(np.ones(cfg.n_envs), buf.dones[t].numpy().astype(bool)) for t in range(cfg.n_steps)])
    assert clean[-1].max() < 0.5  # scaling really happened (the discounted return's std grew past 2)
    added = buf.rewards.double().numpy() - clean
    rng = np.random.default_rng(NOISE_SEED)
    expected = np.stack([rng.normal(0.0, sigma, cfg.n_envs) for _ in range(cfg.n_steps)])
    np.testing.assert_allclose(added, expected, atol=1e-6)
    assert added.std() == pytest.approx(sigma, rel=0.05)


def test_collector_clean_rewards_without_noise():
    """No noise and no scaling: CartPole's stored rewards are exactly 1."""
    buf, _, _ = _collect(_cartpole(n_steps=50, sign_reward=False))
    assert torch.all(buf.rewards == 1.0)


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", dict(n_envs=4, n_steps=96, env_kwargs={"max_episode_steps": 15})),
        ("Pendulum-v1", dict(n_envs=2, n_steps=210, bins=11, norm_obs=False, norm_reward=False)),
    ],
)
def test_collector_truncation_bootstrap(env_id, overrides):
    """next_values: V(final obs) at truncations, 0 at terminations, values[t+1] (or V(last obs)) otherwise."""
    cfg = make_config("ppo", env_id, seed=3, **overrides)
    buf, policy, envs = _collect(cfg, record=True)
    steps = envs.steps
    assert len(steps) == cfg.n_steps
    n_trunc = n_term = 0
    with torch.no_grad():
        for t, (obs, _, terminated, truncated, infos) in enumerate(steps):
            for i in range(cfg.n_envs):
                got = buf.next_values[t, i].item()
                if terminated[i]:
                    n_term += 1
                    assert got == 0.0, (t, i)
                elif truncated[i]:
                    n_trunc += 1
                    assert infos["_final_obs"][i]
                    final = torch.as_tensor(np.asarray(infos["final_obs"][i], np.float32))[None]
                    want = policy.value(final).item()
                    reset_value = policy.value(torch.as_tensor(obs[i], dtype=torch.float32)[None]).item()
                    assert got == pytest.approx(want, abs=1e-5), (t, i)
                    assert got != pytest.approx(reset_value, abs=1e-6)
                    assert got != 0.0
                elif t + 1 < cfg.n_steps:
                    assert got == pytest.approx(buf.values[t + 1, i].item(), abs=1e-6), (t, i)
                else:
                    want = policy.value(torch.as_tensor(obs[i], dtype=torch.float32)[None]).item()
                    assert got == pytest.approx(want, abs=1e-5)
            np.testing.assert_array_equal(buf.dones[t].numpy(), (terminated | truncated).astype(np.float32))
    assert n_trunc > 0
    if env_id == "CartPole-v1":
        assert n_term > 0
    else:
        assert n_term == 0 and n_trunc == cfg.n_envs  # Pendulum only truncates, at step 200
