"""The fused Atari training games, split over processes, equal Gymnasium's wrapper stack step by step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from same_training import assert_steps_like_the_wrapper_stack, assert_trains_like_the_wrapper_stack

import symrl
from symrl.envs import make_train_envs
from symrl.envs.atari_game import AtariGamesVectorEnv
from symrl.envs.split import EnvStackShare
from symrl.envs.vector import SerialVectorEnv
from symrl.errors import SymrlError


def compare(cfg, steps: int, parts: int, seed: int = 3) -> dict:
    return assert_steps_like_the_wrapper_stack(cfg, AtariGamesVectorEnv(cfg, parts=parts), steps, seed)


def test_breakout_with_episodic_life_and_fire_reset_equals_the_wrapper_stack():
    cfg = symrl.make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=3)
    assert cfg.episodic_life
    seen = compare(cfg, steps=700, parts=2)
    # lives lost (terminated without a game over), whole games over, and points scored all happened
    assert seen["terminated"] > seen["games"] >= 1 and seen["reward"] > 0


def test_truncated_games_without_episodic_life_equal_the_wrapper_stack():
    cfg = symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2, episodic_life=False, noop_max=5,
                            env_kwargs={"max_num_frames_per_episode": 600})
    seen = compare(cfg, steps=400, parts=2)
    assert seen["truncated"] >= 2 and seen["games"] == seen["truncated"]


def test_sticky_actions_of_v5_games_equal_the_wrapper_stack():
    cfg = symrl.make_config("ppo", "ALE/Breakout-v5", n_envs=2)
    assert gym.spec("ALE/Breakout-v5").kwargs["repeat_action_probability"] > 0
    seen = compare(cfg, steps=300, parts=2)
    assert seen["terminated"] >= 1


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_the_number_of_worker_processes_does_not_change_the_games(parts):
    cfg = symrl.make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=3)
    reference = AtariGamesVectorEnv(cfg, parts=1)
    other = AtariGamesVectorEnv(cfg, parts=parts)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(reference.reset(seed=5)[0], other.reset(seed=5)[0])
    for _ in range(200):
        actions = rng.integers(0, 4, 3)
        for a, b in zip(reference.step(actions)[:4], other.step(actions)[:4], strict=True):
            np.testing.assert_array_equal(a, b)


def test_in_process_atari_training_uses_the_fused_games_unless_env_kwargs_need_the_wrappers():
    assert isinstance(make_train_envs(symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2)), AtariGamesVectorEnv)
    cfg = symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2, env_kwargs={"obs_type": "rgb"})
    envs = make_train_envs(cfg)
    assert isinstance(envs, SerialVectorEnv) or isinstance(envs.share, EnvStackShare)
    envs.close()


def test_a_stopped_worker_process_is_a_clear_error():
    envs = AtariGamesVectorEnv(symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2), parts=2)
    envs.reset(seed=0)
    process = envs._workers[0].process
    process.kill()
    process.join()
    with pytest.raises(SymrlError, match="worker process stopped"):
        envs.step(np.zeros(2, np.int64))
    envs.close()


def test_training_on_the_fused_games_leaves_the_same_weights_as_on_the_wrapper_stack(monkeypatch):
    """Two PPO iterations on Breakout: same rollouts, same updates, bit for bit."""
    cfg = symrl.make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=2, n_steps=32, batch_size=32, n_epochs=2,
                            total_steps=128, eval_episodes=0, progress=False, tensorboard=False, seed=1)
    fused, plain = assert_trains_like_the_wrapper_stack(monkeypatch, cfg, make_train_envs)
    assert isinstance(fused.envs, AtariGamesVectorEnv)
    assert isinstance(plain.envs, SerialVectorEnv)


def test_an_atari_run_after_an_mlp_run_in_the_same_process_gets_its_threads_back():
    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("needs 2 or more torch threads")
    try:
        mlp = symrl.Trainer(symrl.make_config("ppo", "CartPole-v1", n_envs=1, eval_episodes=0, tensorboard=False))
        assert torch.get_num_threads() == 1  # small MLPs run on one thread
        mlp.envs.close()
        cnn = symrl.Trainer(symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2, eval_episodes=0,
                                              tensorboard=False))
        assert torch.get_num_threads() == before
        assert cnn.envs.parts == min(2, before)
        cnn.envs.close()
    finally:
        torch.set_num_threads(before)


def _games_in_a_pool_worker() -> int:
    envs = AtariGamesVectorEnv(symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=2), parts=2)
    envs.reset(seed=0)
    for _ in range(5):
        envs.step(np.zeros(2, np.int64))
    workers = len(envs._workers)
    envs.close()
    return workers


def test_games_split_over_processes_inside_a_sweep_pool_worker():
    """The local sweep backend runs cells in a spawned ProcessPoolExecutor; its workers may start processes."""
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415
    from multiprocessing import get_context  # noqa: PLC0415

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(_games_in_a_pool_worker).result(timeout=120) == 1
