"""Tests of symrl.envs: action discretisation, environment construction, the registry and normalisers.

Real Gymnasium environments throughout (classic control, Box2D, ale-py Atari) and two tiny custom
environments for Box action spaces whose bounds differ per dimension or are unbounded.
"""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import symrl
from symrl.config import make_config
from symrl.envs import env_spec, make_eval_env, make_train_envs
from symrl.envs.make import build_env
from symrl.envs.normalize import ObsNormalizer, RewardScaler, RunningMeanStd
from symrl.envs.wrappers import DiscretizeAction, EpisodicLife, FireReset
from symrl.errors import SymrlError


class BoxActionEnv(gym.Env):
    """A one-state environment with a Box action space; it records the last action it received."""

    def __init__(self, low, high):
        self.action_space = gym.spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32))
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.last_action = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.last_action = np.array(action, copy=True)
        return np.zeros(1, np.float32), 0.0, False, False, {}


def wrapper_types(env: gym.Env) -> list[type]:
    """The classes of every wrapper in ``env``'s chain, outermost first."""
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


# ---------------------------------------------------------------------------------------------------
# DiscretizeAction


def test_discretize_pendulum_bins():
    """Pendulum [-2, 2] with K=11: index 0 -> -2, 5 -> 0, 10 -> 2, k -> linspace(-2, 2, 11)[k]."""
    env = DiscretizeAction(gym.make("Pendulum-v1"), 11)
    assert env.action_space == gym.spaces.MultiDiscrete([11])
    assert env.action(np.array([0])) == pytest.approx([-2.0])
    assert env.action(np.array([5])) == pytest.approx([0.0], abs=1e-7)
    assert env.action(np.array([10])) == pytest.approx([2.0])
    grid = np.linspace(-2.0, 2.0, 11)
    for k in range(11):
        out = env.action(np.array([k]))
        assert out.shape == (1,)
        assert out[0] == pytest.approx(grid[k], abs=1e-6)
    env.reset(seed=0)
    env.step(np.array([3]))  # a real step with a discrete action goes through
    env.close()


def test_discretize_lunar_lander_continuous():
    """LunarLanderContinuous (2-D [-1, 1]): each dimension maps through its own linspace."""
    env = DiscretizeAction(gym.make("LunarLanderContinuous-v3"), 7)
    assert env.action_space == gym.spaces.MultiDiscrete([7, 7])
    grid = np.linspace(-1.0, 1.0, 7)
    np.testing.assert_allclose(env.action(np.array([0, 6])), [grid[0], grid[6]], atol=1e-6)
    np.testing.assert_allclose(env.action(np.array([2, 5])), [grid[2], grid[5]], atol=1e-6)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()


def test_discretize_per_dimension_bounds():
    """Different bounds per dimension: bin k of dimension i is linspace(low_i, high_i, K)[k], passed to the env."""
    low, high, k_bins = [-1.0, 0.0, -0.5], [1.0, 5.0, 0.25], 5
    inner = BoxActionEnv(low, high)
    env = DiscretizeAction(inner, k_bins)
    assert env.action_space == gym.spaces.MultiDiscrete([k_bins] * 3)
    grids = [np.linspace(lo, hi, k_bins) for lo, hi in zip(low, high, strict=True)]
    env.reset(seed=0)
    for index in ([0, 0, 0], [4, 4, 4], [1, 2, 3], [3, 0, 4]):
        env.step(np.array(index))
        want = [grids[i][k] for i, k in enumerate(index)]
        np.testing.assert_allclose(inner.last_action, want, atol=1e-6)
        assert inner.last_action.shape == (3,)
        assert inner.action_space.contains(inner.last_action.astype(np.float32))


def test_discretize_keeps_matrix_action_shape():
    """A 2x2 Box becomes MultiDiscrete([K]*4) and actions are reshaped back to 2x2 in row-major order."""
    low = np.array([[-1.0, 0.0], [2.0, -3.0]])
    high = np.array([[1.0, 1.0], [4.0, 3.0]])
    inner = BoxActionEnv(low, high)
    env = DiscretizeAction(inner, 3)
    assert env.action_space == gym.spaces.MultiDiscrete([3] * 4)
    env.reset()
    env.step(np.array([0, 1, 2, 1]))
    np.testing.assert_allclose(inner.last_action, [[-1.0, 0.5], [4.0, 0.0]], atol=1e-6)


def test_discretize_rejects_discrete_actions():
    """A Discrete action space (CartPole) raises SymrlError."""
    with pytest.raises(SymrlError, match="Box"):
        DiscretizeAction(gym.make("CartPole-v1"), 11)


@pytest.mark.parametrize("low, high", [([-np.inf], [1.0]), ([0.0, -1.0], [1.0, np.inf])])
def test_discretize_rejects_unbounded_box(low, high):
    """A Box with an infinite bound raises SymrlError."""
    with pytest.raises(SymrlError, match="finite"):
        DiscretizeAction(BoxActionEnv(low, high), 11)


# ---------------------------------------------------------------------------------------------------
# build_env / make_train_envs / make_eval_env


def test_cartpole_spaces():
    """CartPole training and evaluation envs keep Box(4,) observations and Discrete(2) actions."""
    cfg = make_config("ppo", "CartPole-v1", n_envs=3)
    envs = make_train_envs(cfg)
    try:
        assert envs.num_envs == 3
        assert envs.single_observation_space.shape == (4,)
        assert envs.single_action_space == gym.spaces.Discrete(2)
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (3, 4)
    finally:
        envs.close()
    env = make_eval_env(cfg)
    assert env.observation_space.shape == (4,)
    assert env.action_space == gym.spaces.Discrete(2)
    assert gym.wrappers.RecordEpisodeStatistics in wrapper_types(env)
    env.close()


def test_bins_apply_to_train_and_eval_envs():
    """bins=11 on Pendulum discretises both the training and the evaluation environments."""
    cfg = make_config("ppo", "Pendulum-v1", n_envs=2, bins=11)
    envs = make_train_envs(cfg)
    try:
        assert envs.single_action_space == gym.spaces.MultiDiscrete([11])
        envs.reset(seed=0)
        envs.step(np.array([[0], [10]]))
    finally:
        envs.close()
    env = make_eval_env(cfg)
    assert env.action_space == gym.spaces.MultiDiscrete([11])
    assert DiscretizeAction in wrapper_types(env)
    env.close()
    plain = make_eval_env(make_config("ppo", "Pendulum-v1"))
    assert isinstance(plain.action_space, gym.spaces.Box)
    plain.close()


def test_bins_on_discrete_env_is_an_error():
    """bins on a Discrete-action env (CartPole) fails with SymrlError when the env is built."""
    cfg = make_config("ppo", "CartPole-v1", bins=11)
    with pytest.raises(SymrlError):
        make_eval_env(cfg)


def test_atari_observation_uint8_stack():
    """Pong (ale-py) training observations are uint8 stacks of four 84x84 frames."""
    cfg = make_config("ppo", "PongNoFrameskip-v4", n_envs=1)
    envs = make_train_envs(cfg)
    try:
        space = envs.single_observation_space
        assert space.shape == (4, 84, 84) and space.dtype == np.uint8
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
        assert envs.single_action_space == gym.spaces.Discrete(6)
    finally:
        envs.close()
    env = make_eval_env(cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    env.close()


def test_episodic_life_only_on_training_envs():
    """EpisodicLife wraps training Atari envs only; FireReset both, for a FIRE game (Breakout)."""
    cfg = make_config("ppo", "BreakoutNoFrameskip-v4")
    assert cfg.episodic_life
    train, evaluation = build_env(cfg, train=True), build_env(cfg, train=False)
    train_types, eval_types = wrapper_types(train), wrapper_types(evaluation)
    assert EpisodicLife in train_types and EpisodicLife not in eval_types
    assert FireReset in train_types and FireReset in eval_types
    for types in (train_types, eval_types):
        # the episode statistics see full games: RecordEpisodeStatistics sits below EpisodicLife
        assert types.index(gym.wrappers.RecordEpisodeStatistics) > types.index(FireReset)
        assert gym.wrappers.AtariPreprocessing in types and gym.wrappers.FrameStackObservation in types
    assert train_types.index(gym.wrappers.RecordEpisodeStatistics) > train_types.index(EpisodicLife)
    no_life = build_env(make_config("ppo", "BreakoutNoFrameskip-v4", episodic_life=False), train=True)
    assert EpisodicLife not in wrapper_types(no_life)
    for env in (train, evaluation, no_life):
        env.close()


def test_fire_reset_only_for_fire_games():
    """Freeway (NOOP, UP, DOWN) gets no FireReset; Breakout does."""
    freeway = build_env(make_config("ppo", "FreewayNoFrameskip-v4"), train=True)
    assert FireReset not in wrapper_types(freeway)
    freeway.close()
    breakout = build_env(make_config("ppo", "BreakoutNoFrameskip-v4"), train=False)
    assert FireReset in wrapper_types(breakout)
    breakout.close()


def test_episodic_life_ends_training_episode_on_life_loss():
    """Breakout training env: losing a life terminates; reset continues the same game (lives kept)."""
    env = build_env(make_config("ppo", "BreakoutNoFrameskip-v4"), train=True)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    assert ale.lives() == 5
    rng = np.random.default_rng(0)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if terminated or truncated:
            break
    assert terminated and ale.lives() == 4
    assert "episode" not in info  # the game itself goes on: no full-episode statistics yet
    env.reset()
    assert ale.lives() == 4
    env.close()


def test_same_step_autoreset_puts_final_obs_in_infos():
    """Training envs reset in the same step: final_obs (the terminal state) is in infos, obs is a reset."""
    cfg = make_config("ppo", "CartPole-v1", n_envs=2)
    envs = make_train_envs(cfg)
    try:
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(500):
            obs, _, terminated, truncated, infos = envs.step(rng.integers(0, 2, 2))
            if np.any(terminated | truncated):
                break
        done = terminated | truncated
        assert done.any()
        assert "final_obs" in infos
        np.testing.assert_array_equal(infos["_final_obs"], done)
        for i in np.flatnonzero(done):
            final = infos["final_obs"][i]
            assert abs(final[0]) > 2.4 or abs(final[2]) > 0.2094  # CartPole's termination bounds
            assert np.all(np.abs(obs[i]) <= 0.05)  # a fresh reset state
            assert "episode" in infos["final_info"]
    finally:
        envs.close()


def test_async_vector_env_same_step_autoreset():
    """vec_env=async builds an AsyncVectorEnv with the same spaces and same-step autoreset."""
    cfg = make_config("ppo", "CartPole-v1", n_envs=2, vec_env="async")
    envs = make_train_envs(cfg)
    try:
        assert isinstance(envs, gym.vector.AsyncVectorEnv)
        assert envs.single_action_space == gym.spaces.Discrete(2)
        envs.reset(seed=0)
        for _ in range(500):
            obs, _, terminated, truncated, infos = envs.step(np.array([0, 1]))
            if np.any(terminated | truncated):
                break
        done = terminated | truncated
        np.testing.assert_array_equal(infos["_final_obs"], done)
        assert np.all(np.abs(obs[done]) <= 0.05)
    finally:
        envs.close()


# ---------------------------------------------------------------------------------------------------
# registry


def test_env_spec_known_id():
    """A registered id returns its spec."""
    assert env_spec("CartPole-v1").id == "CartPole-v1"
    assert str(env_spec("PongNoFrameskip-v4").entry_point).startswith("ale_py")


@pytest.mark.parametrize("env_id, suggestion", [("CartPol-v1", "CartPole-v1"), ("ALE/Pongg-v5", "ALE/Pong-v5")])
def test_env_spec_near_miss_suggests(env_id, suggestion):
    """An unknown id close to a registered one raises SymrlError with 'did you mean'."""
    with pytest.raises(SymrlError) as info:
        env_spec(env_id)
    message = str(info.value)
    assert "did you mean" in message and suggestion in message


def test_env_spec_unknown_id_without_match():
    """An id far from any registered one raises SymrlError too."""
    with pytest.raises(SymrlError, match="unknown environment"):
        env_spec("zzzzzzzz-v9")


def test_make_config_unknown_env():
    """make_config on an unknown env raises SymrlError suggesting the close id."""
    with pytest.raises(SymrlError, match="CartPole-v1"):
        make_config("ppo", "CartPol-v1")


# ---------------------------------------------------------------------------------------------------
# normalisation


def _with_prior(data: np.ndarray, prior_count: float = 1e-4):
    """Mean and variance of ``data`` merged with RunningMeanStd's prior (mean 0, var 1, count eps)."""
    n = data.shape[0]
    m, v = data.mean(axis=0), data.var(axis=0)
    total = prior_count + n
    mean = m * n / total
    var = (prior_count + v * n + m**2 * prior_count * n / total) / total
    return mean, var


def test_running_mean_std_matches_numpy():
    """RunningMeanStd over uneven batches equals np.mean / np.var of their concatenation."""
    rng = np.random.default_rng(0)
    batches = [rng.normal([1.0, -3.0, 10.0], [0.5, 2.0, 4.0], size=(n, 3)) for n in (1, 7, 100, 3, 250)]
    rms = RunningMeanStd((3,))
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)
    mean, var = _with_prior(data)
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(rms.var, var, rtol=1e-10)
    assert rms.count == pytest.approx(len(data) + 1e-4)


def test_obs_normalizer_frozen_application_and_clipping():
    """Applying the normaliser never changes its statistics; outputs are clipped float32 z-scores."""
    rng = np.random.default_rng(1)
    norm = ObsNormalizer((2,), enabled=True, clip=5.0)
    data = rng.normal([2.0, -1.0], [3.0, 0.1], size=(500, 2))
    norm.update(data)
    mean, var = norm.rms.mean.copy(), norm.rms.var.copy()
    obs = np.array([[2.0, -1.0], [5.0, -0.9], [1000.0, -1000.0]])
    out = norm(obs)
    np.testing.assert_array_equal(norm.rms.mean, mean)
    np.testing.assert_array_equal(norm.rms.var, var)
    assert out.dtype == np.float32
    expected = np.clip((obs - mean) / np.sqrt(var + 1e-8), -5.0, 5.0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_array_equal(out[2], [5.0, -5.0])
    assert np.all(np.abs(out[:2]) < 5.0)


def test_obs_normalizer_disabled_is_identity():
    """A disabled normaliser returns observations unchanged and keeps no statistics."""
    norm = ObsNormalizer((3,), enabled=False)
    obs = np.array([[100.0, -5.0, 0.5]])
    norm.update(obs)
    assert norm(obs) is obs
    assert norm.rms.count == pytest.approx(1e-4)


def _reference_scaled(rewards, dones, gamma, clip=10.0, eps=1e-8):
    """Scale each step's rewards by the std of all discounted returns seen so far (numpy reference)."""
    returns, seen, out = np.zeros(rewards.shape[1]), [], []
    for r, d in zip(rewards, dones, strict=True):
        returns = returns * gamma + r
        seen.append(returns.copy())
        _, var = _with_prior(np.concatenate(seen))
        out.append(np.clip(r / np.sqrt(var + eps), -clip, clip))
        returns = np.where(d, 0.0, returns)
    return np.stack(out)


def test_reward_scaler_divides_by_return_std():
    """RewardScaler divides by the running std of the discounted return, resetting it at episode ends."""
    rng = np.random.default_rng(2)
    steps, n_envs, gamma = 200, 3, 0.9
    rewards = rng.normal(1.0, 2.0, (steps, n_envs))
    dones = rng.random((steps, n_envs)) < 0.05
    scaler = RewardScaler(n_envs, gamma, enabled=True)
    got = np.stack([scaler(r, d) for r, d in zip(rewards, dones, strict=True)])
    np.testing.assert_allclose(got, _reference_scaled(rewards, dones, gamma), rtol=1e-9)
    assert not np.allclose(got, rewards)
    np.testing.assert_array_equal(scaler.returns[dones[-1]], 0.0)


def test_reward_scaler_clips_and_disabled_identity():
    """Scaled rewards are clipped to +-clip; a disabled scaler returns rewards unchanged."""
    scaler = RewardScaler(1, 0.99, enabled=True, clip=2.0)
    for _ in range(50):
        scaler(np.array([0.01]), np.array([False]))
    assert scaler(np.array([1e6]), np.array([False]))[0] == 2.0
    off = RewardScaler(2, 0.99, enabled=False)
    rewards = np.array([5.0, -7.0])
    assert off(rewards, np.array([True, False])) is rewards


def _torch_round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_normalizer_state_dicts_round_trip_weights_only():
    """Obs and reward normaliser states survive torch.save / torch.load(weights_only=True)."""
    rng = np.random.default_rng(3)
    norm = ObsNormalizer((4,), enabled=True)
    norm.update(rng.normal(5.0, 2.0, (64, 4)))
    state = _torch_round_trip(norm.state_dict())
    assert isinstance(state["mean"], torch.Tensor) and isinstance(state["var"], torch.Tensor)
    restored = ObsNormalizer((4,), enabled=True)
    restored.load_state_dict(state)
    obs = rng.normal(5.0, 2.0, (8, 4))
    np.testing.assert_array_equal(restored(obs), norm(obs))
    assert restored.rms.count == norm.rms.count

    scaler = RewardScaler(2, 0.99, enabled=True)
    for _ in range(30):
        scaler(rng.normal(0.0, 1.0, 2), np.array([False, False]))
    scaler(rng.normal(0.0, 1.0, 2), np.array([True, True]))  # returns back to 0 for a fair comparison
    restored_scaler = RewardScaler(2, 0.99, enabled=True)
    restored_scaler.load_state_dict(_torch_round_trip(scaler.state_dict()))
    np.testing.assert_array_equal(restored_scaler.rms.mean, scaler.rms.mean)
    np.testing.assert_array_equal(restored_scaler.rms.var, scaler.rms.var)
    rewards = np.array([0.5, -1.5])
    np.testing.assert_array_equal(restored_scaler(rewards, np.array([False, False])), scaler(rewards, np.array([False, False])))


def test_serial_vector_env_matches_gymnasium_sync_vector_env():
    """symrl's lean vector env steps exactly like Gymnasium's SyncVectorEnv in SAME_STEP mode:
    same observations, rewards, flags, final observations and episode statistics."""
    from symrl.envs.vector import SerialVectorEnv

    cfg = make_config("ppo", "CartPole-v1", n_envs=3)
    fns = [lambda: build_env(cfg, True) for _ in range(3)]
    ours = SerialVectorEnv(fns)
    ref = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_a, _ = ours.reset(seed=5)
    obs_b, _ = ref.reset(seed=5)
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(300):
        actions = rng.integers(0, 2, 3)
        a, b = ours.step(actions), ref.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        done = a[2] | a[3]
        if done.any():
            finished += int(done.sum())
            for i in np.flatnonzero(done):
                np.testing.assert_array_equal(a[4]["final_obs"][i], b[4]["final_obs"][i])
            ep_a, ep_b = a[4]["final_info"], b[4]["final_info"]
            np.testing.assert_array_equal(ep_a["_episode"], ep_b["_episode"])
            np.testing.assert_array_equal(ep_a["episode"]["r"][ep_a["_episode"]], ep_b["episode"]["r"][ep_b["_episode"]])
        else:
            assert a[4] == {}
    assert finished >= 10
    assert ours.single_action_space == ref.single_action_space
    ours.close()
    ref.close()


def test_module_prefixed_env_ids_import_the_module_that_registers_them(tmp_path, monkeypatch):
    """``module:EnvName-v0`` as in gym.make: how a sweep's worker processes find an environment a package registers."""
    (tmp_path / "symrl_test_plugin.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('SymrlPluginCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=50)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = symrl.train(algo="ppo", env="symrl_test_plugin:SymrlPluginCartPole-v0", total_steps=256, n_steps=64,
                         n_envs=2, eval_episodes=1, eval_freq=256, progress=False, tensorboard=False)
    assert result.steps == 256 and 0 < result.final_return <= 50
    with pytest.raises(SymrlError, match="cannot import 'no_such_plugin'"):
        symrl.make_config("ppo", "no_such_plugin:Env-v0")
