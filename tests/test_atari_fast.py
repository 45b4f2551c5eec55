"""The Atari fast paths against the plain ones.

- ALE's C++ vector environment (``--vec-backend ale``) gives the rollout what the Gymnasium wrappers
  give it: same-step autoreset with the final observation, episodic life that ends the training
  episode while the game goes on, and whole-game raw scores in the episode statistics.
- Frames stored channels-last in the rollout buffer are the same values, and a PPO update on them
  leaves the same parameters as one on the same frames stored contiguously.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import symrl
from symrl.algos import ppo_update
from symrl.config import make_config
from symrl.envs import make_train_envs
from symrl.envs.ale_vector import AleVectorEnv, ale_settings
from symrl.errors import SymrlError
from symrl.policies import ActorCritic
from symrl.rollout import RolloutBuffer
from symrl.trainer import Trainer, make_optimizer


def test_settings_follow_the_registered_game():
    v4 = ale_settings(make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=4))
    assert v4["game"] == "breakout" and v4["repeat_action_probability"] == 0.0 and v4["num_envs"] == 4
    assert v4["frameskip"] == 4 and v4["maxpool"] and v4["stack_num"] == 4 and v4["noop_max"] == 30
    assert v4["life_loss_info"] and not v4["episodic_life"] and not v4["reward_clipping"]
    v5 = ale_settings(make_config("ppo", "ALE/Pong-v5", preset="atari", episodic_life=False))
    assert v5["repeat_action_probability"] == 0.25 and not v5["life_loss_info"]


def test_life_loss_ends_the_training_episode_and_games_are_counted_whole():
    cfg = make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=2, vec_env="ale")
    envs = make_train_envs(cfg)
    assert isinstance(envs, AleVectorEnv)
    assert envs.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    raw_total, life_ends, games = np.zeros(2), 0, []
    for _ in range(4000):
        obs, reward, terminated, truncated, infos = envs.step(rng.integers(0, 4, 2))
        raw_total += reward
        done = terminated | truncated
        if done.any():
            np.testing.assert_array_equal(infos["_final_obs"], done)
            for i in np.flatnonzero(done):
                assert infos["final_obs"][i].shape == (4, 84, 84)
            ended = infos["final_info"]["_episode"]
            life_ends += int((done & ~ended).sum())
            for i in np.flatnonzero(ended):  # a whole game: its raw score, reset counter
                games.append(infos["final_info"]["episode"]["r"][i])
                assert infos["final_info"]["episode"]["r"][i] == raw_total[i]
                assert infos["final_info"]["episode"]["l"][i] > 0
                raw_total[i] = 0.0
        if len(games) >= 2:
            break
    envs.close()
    assert len(games) >= 2
    assert life_ends >= 4 * len(games)  # Breakout: five lives per game, so four life losses before each game over
    assert reward.dtype == np.float64


def test_without_episodic_life_only_game_over_ends_an_episode():
    cfg = make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=1, vec_env="ale", episodic_life=False)
    envs = make_train_envs(cfg)
    envs.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(4000):
        _, _, terminated, truncated, infos = envs.step(rng.integers(0, 4, 1))
        if (terminated | truncated).any():
            break
    envs.close()
    assert terminated.all() and infos["final_info"]["_episode"].all()  # the first end is a game over


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ale_backed_run_trains_and_evaluates(tmp_path, precision):
    result = symrl.train(algo="sppo", env="PongNoFrameskip-v4", vec_env="ale", n_envs=2, n_steps=32,
                         batch_size=32, total_steps=128, eval_freq=128, eval_episodes=1, progress=False,
                         precision=precision, out=tmp_path / "pong")
    assert len(result.evaluations) == 1
    assert -21 <= result.final_return <= 21  # a real Pong score from the Gymnasium evaluation env
    agent = symrl.load(tmp_path / "pong")
    assert agent.config.precision == precision and agent.policy.autocast_dtype == (
        torch.bfloat16 if precision == "bf16" else None)


@pytest.mark.parametrize(("env", "overrides", "message"), [
    ("CartPole-v1", {}, "steps Atari games only"),
    ("PongNoFrameskip-v4", {"bins": 5}, "--bins discretises Box action spaces"),
    ("PongNoFrameskip-v4", {"env_kwargs": {"mode": 0}}, "env_kwargs are not passed"),
])
def test_unsupported_uses_are_clear_errors(env, overrides, message):
    with pytest.raises(SymrlError, match=message):
        symrl.train(algo="ppo", env=env, vec_env="ale", total_steps=64, progress=False, **overrides)


def test_buffer_stores_frames_channels_last_with_the_same_values():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buf = RolloutBuffer(3, 2, space, gym.spaces.Discrete(6), ())
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
    buf.np.obs[1] = frames
    assert buf.obs.shape == (3, 2, 4, 84, 84)
    assert torch.equal(buf.obs[1], torch.from_numpy(frames))
    flat = buf.obs.reshape(-1, 4, 84, 84)
    assert flat.is_contiguous(memory_format=torch.channels_last) and flat.data_ptr() == buf.obs.data_ptr()


def test_frames_given_channels_last_run_through_the_same_cnn():
    """[H, W, C] observations (CarRacing) are stored as they come and viewed as [C, H, W] by the CNN: the same
    features as the [C, H, W] network on the transposed frames, with the same weights."""
    from symrl.policies import NatureCNN, image_layout

    assert image_layout((96, 96, 3)) == (3, 96, 96, True) and image_layout((4, 84, 84)) == (4, 84, 84, False)
    with pytest.raises(SymrlError, match="needs image observations"):
        image_layout((84, 84))
    buf = RolloutBuffer(2, 2, gym.spaces.Box(0, 255, (96, 96, 3), np.uint8), gym.spaces.Discrete(5), ())
    assert buf.obs.is_contiguous()
    torch.manual_seed(0)
    chw = NatureCNN(3, 96, 96)
    hwc = NatureCNN(3, 96, 96, channels_last_input=True)
    hwc.load_state_dict(chw.state_dict())
    frames = torch.randint(0, 256, (5, 96, 96, 3), dtype=torch.uint8)
    torch.testing.assert_close(hwc(frames), chw(frames.permute(0, 3, 1, 2).contiguous()))


def test_update_on_channels_last_frames_equals_update_on_contiguous_frames():
    cfg = make_config("sppo", "PongNoFrameskip-v4", n_envs=2, n_steps=64, batch_size=32, n_epochs=2, seed=0)
    trainer = Trainer(cfg)
    trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
    batch = trainer._batch()
    assert batch.obs.is_contiguous(memory_format=torch.channels_last)
    plain = dataclasses.replace(batch, obs=batch.obs.contiguous())
    results = []
    for b in (batch, plain):
        torch.manual_seed(0)
        space = trainer.envs.single_observation_space
        policy = ActorCritic(space, trainer.envs.single_action_space, cfg)
        policy.load_state_dict(trainer.policy.state_dict())
        optimizer = make_optimizer(cfg, policy)
        torch.manual_seed(1)
        logs = ppo_update(policy, optimizer, b, cfg, cfg.clip_range)
        results.append((logs, [p.detach().clone() for p in policy.parameters()]))
    trainer.envs.close()
    (fast_logs, fast_params), (plain_logs, plain_params) = results
    for key, value in plain_logs.items():
        assert fast_logs[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    moved = max((p - q).abs().max().item() for p, q in zip(plain_params, trainer.policy.parameters(), strict=True))
    assert moved > 1e-5  # the update did change the parameters
    for a, b in zip(fast_params, plain_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_bodies_give_float32_outputs_and_gradients_close_to_float32():
    """precision=bf16 runs the Nature CNN under bfloat16 autocast: the outputs stay float32, differ from
    float32's (so autocast is in effect) by bfloat16 rounding only, and the gradients point the same way."""
    space, actions_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6)
    cfg = make_config("ppo", "PongNoFrameskip-v4")
    torch.manual_seed(0)
    fp32 = ActorCritic(space, actions_space, cfg)
    bf16 = ActorCritic(space, actions_space, cfg.replace(precision="bf16"))
    bf16.load_state_dict(fp32.state_dict())
    gen = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8, generator=gen)
    actions = torch.randint(0, 6, (64,), generator=gen)
    advantages = torch.randn(64, generator=gen)
    outputs, grads = [], []
    for policy in (fp32, bf16):
        log_prob, entropy, values = policy.evaluate(obs, actions)
        assert log_prob.dtype == values.dtype == torch.float32
        loss = -(log_prob * advantages).mean() + (values - 1.0).pow(2).mean() - 0.01 * entropy.mean()
        loss.backward()
        outputs.append(values.detach())
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
    assert not torch.equal(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0.05, atol=0.02)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine > 0.99


def test_bf16_runs_on_the_torch_path():
    from symrl.fast import make_engine  # noqa: PLC0415

    cfg = make_config("ppo", "CartPole-v1", precision="bf16")
    policy = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), cfg)
    assert make_engine(cfg, policy, make_optimizer(cfg, policy), np.random.default_rng(0)) is None
    with pytest.raises(SymrlError, match="engine=numpy computes in float32 only"):
        make_config("ppo", "CartPole-v1", precision="bf16", engine="numpy")
    with pytest.raises(SymrlError, match="precision must be one of fp32, bf16"):
        make_config("ppo", "CartPole-v1", precision="fp16")
