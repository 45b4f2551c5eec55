"""Training environments split over processes step exactly as the serial wrapper stack does."""

from __future__ import annotations

import gc
import multiprocessing
import os
import time

import gymnasium as gym
import numpy as np
import pytest
from same_training import assert_trains_like_the_wrapper_stack

import symrl
import symrl.envs.split as split
from symrl.envs import make_train_envs
from symrl.envs.make import make_split_envs, make_wrapper_stack_envs
from symrl.envs.vector import SerialVectorEnv
from symrl.errors import SymrlError


def assert_same_step(a: tuple, b: tuple) -> None:
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    infos_a, infos_b = a[4], b[4]
    assert infos_a.keys() == infos_b.keys()
    if infos_a:
        np.testing.assert_array_equal(infos_a["_final_obs"], infos_b["_final_obs"])
        for i in np.flatnonzero(infos_a["_final_obs"]):
            np.testing.assert_array_equal(infos_a["final_obs"][i], infos_b["final_obs"][i])
        final_a, final_b = infos_a["final_info"], infos_b["final_info"]
        assert final_a.keys() == final_b.keys()
        np.testing.assert_array_equal(final_a["episode"]["r"], final_b["episode"]["r"])
        np.testing.assert_array_equal(final_a["episode"]["l"], final_b["episode"]["l"])


def compare(cfg, parts: int, steps: int, pause_every: int = 0) -> int:
    """Step the serial stack and the split envs with the same seeds and actions; the number of episodes ended."""
    serial, splits = make_wrapper_stack_envs(cfg), make_split_envs(cfg, parts)
    try:
        assert len(splits._shares) == min(parts, cfg.n_envs)
        np.testing.assert_array_equal(serial.reset(seed=5)[0], splits.reset(seed=5)[0])
        serial.action_space.seed(0)
        ended = 0
        for t in range(steps):
            actions = serial.action_space.sample()
            if pause_every and t % pause_every == 0:
                time.sleep(3 * split.SPIN_SECONDS)  # the worker goes to sleep and must be woken
            a, b = serial.step(actions), splits.step(actions)
            assert_same_step(a, b)
            ended += int(np.sum(a[2] | a[3]))
        return ended
    finally:
        serial.close()
        splits.close()


@pytest.mark.parametrize("parts", [2, 3])
def test_split_cartpole_equals_the_serial_stack_with_terminations(parts):
    assert compare(symrl.make_config("ppo", "CartPole-v1", n_envs=4), parts, steps=300, pause_every=37) >= 10


def test_split_mujoco_equals_the_serial_stack_with_truncations():
    cfg = symrl.make_config("a2c", "HalfCheetah-v4", n_envs=4, env_kwargs={"max_episode_steps": 40})
    assert compare(cfg, 2, steps=100) == 8


def test_split_with_pipe_signals_only_equals_the_serial_stack(monkeypatch):
    """Machines other than x86-64 Linux signal through the pipes alone."""
    monkeypatch.setattr(split, "SPIN_SIGNALS", False)
    assert compare(symrl.make_config("ppo", "CartPole-v1", n_envs=3), 2, steps=150, pause_every=50) >= 3


def test_a2c_on_split_envs_leaves_the_same_weights_as_on_the_serial_stack(monkeypatch):
    cfg = symrl.make_config("a2c", "HalfCheetah-v4", n_envs=4, total_steps=400, eval_episodes=0, progress=False,
                            tensorboard=False, seed=2)
    fast, _ = assert_trains_like_the_wrapper_stack(monkeypatch, cfg, lambda c: make_split_envs(c, 2))
    assert isinstance(fast.envs, split.SplitVectorEnv) and len(fast.envs._shares) == 2


def test_in_process_training_splits_over_the_cores_when_there_are_several_envs():
    two = make_train_envs(symrl.make_config("ppo", "CartPole-v1", n_envs=4, torch_threads=2))
    assert isinstance(two, split.SplitVectorEnv) and len(two._shares) == 2
    two.close()
    for cfg in (symrl.make_config("ppo", "CartPole-v1", n_envs=1, torch_threads=2),
                symrl.make_config("ppo", "CartPole-v1", n_envs=4, torch_threads=1)):
        assert isinstance(make_train_envs(cfg), SerialVectorEnv)


def test_runs_sharing_the_machine_split_over_the_cores_others_have_not_claimed(monkeypatch):
    """Two split runs on two cores spin-wait for workers the other run keeps off its core; a run therefore splits
    only over the cores that live runs of the same user have not claimed, at least 1, and gives them back at close."""
    import symrl.threads as threads

    monkeypatch.setattr(threads, "machine_cores", lambda: 2)
    monkeypatch.setattr("symrl.envs.make.available_threads", lambda torch_threads=0: torch_threads or 2)
    cfg = symrl.make_config("ppo", "CartPole-v1", n_envs=4)
    first = make_train_envs(cfg)
    assert isinstance(first, split.SplitVectorEnv) and first.parts == 2
    second = make_train_envs(cfg)  # both cores are claimed: in this process
    assert isinstance(second, SerialVectorEnv)
    fixed = make_train_envs(symrl.make_config("ppo", "CartPole-v1", n_envs=4, torch_threads=2))  # the user's choice wins
    assert isinstance(fixed, split.SplitVectorEnv) and fixed.parts == 2
    for envs in (first, second, fixed):
        envs.close()
    assert list(threads.CLAIMS.iterdir()) == [threads.CLAIMS / ".lock"]  # every claim released at close
    dropped = make_train_envs(cfg)
    assert dropped.parts == 2
    del dropped
    gc.collect()  # or when the environments are collected
    claim = threads.claim_cores(2)
    assert claim.granted == 2
    claim.release()

    # a claim whose process is gone does not count, and is removed
    child = multiprocessing.get_context("fork").Process(target=int)
    child.start()
    child.join()
    (threads.CLAIMS / f"{child.pid}-0").write_text("2")
    assert threads.claim_cores(2).granted == 2
    assert not (threads.CLAIMS / f"{child.pid}-0").exists()

    # a claims folder that others may write in (a shared temp folder where someone made it first) is not used
    before = set(threads.CLAIMS.iterdir())  # the claim of 2 cores above is still held
    threads.CLAIMS.chmod(0o777)
    assert threads.claim_cores(2).granted == 2 and threads.claim_cores(2).granted == 2  # the held claim not read
    assert set(threads.CLAIMS.iterdir()) == before  # and nothing written


MAIN_PROCESS = os.getpid()


class StepCountingEnv(gym.Env):
    """Counts its steps since the last reset in ``t``; the envs below misbehave at a given step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}


def split_envs_of(env_class: type, n_envs: int):
    """``n_envs`` of a test environment class (registered under its name), split over 2 processes and reset."""
    env_id = f"SymrlTest{env_class.__name__}-v0"
    gym.register(env_id, entry_point=env_class)
    envs = make_split_envs(symrl.make_config("ppo", env_id, n_envs=n_envs), 2)
    envs.reset(seed=0)
    return envs


def assert_a_worker_error_is_raised(env_class: type, message: str) -> None:
    """Stepping ``env_class`` split over 2 processes raises ``message`` (a regex) from the worker within 3 steps."""
    envs = split_envs_of(env_class, 2)
    with pytest.raises(SymrlError, match=message):
        for _ in range(3):
            envs.step(np.zeros(2, np.int64))
    envs.close()


class FailingEnv(StepCountingEnv):
    """Fails on its third step in a worker process: an error the main process must report."""

    def step(self, action):
        self.t += 1
        if self.t == 3 and os.getpid() != MAIN_PROCESS:
            raise RuntimeError("the simulator blew up")
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_an_error_in_a_worker_process_is_raised_in_the_main_process():
    assert_a_worker_error_is_raised(FailingEnv, "worker process failed: RuntimeError: the simulator blew up")


class BigInfoEnv(StepCountingEnv):
    """Episodes of 3 steps whose last info holds an RGB frame: more than a pipe buffer for a few envs."""

    def step(self, action):
        self.t += 1
        info = {"frame": np.full((84, 84, 3), self.t, np.uint8)} if self.t == 3 else {}
        return np.zeros(2, np.float32), 1.0, self.t == 3, False, info


@pytest.mark.timeout(60)  # it hung when the worker sent the report before signalling that it was done
def test_large_final_infos_do_not_block_the_worker():
    """A worker's report of finished episodes may exceed the pipe's buffer (64 KiB on Linux)."""
    envs = split_envs_of(BigInfoEnv, 8)
    try:
        for _ in range(2):
            envs.step(np.zeros(8, np.int64))
        infos = envs.step(np.zeros(8, np.int64))[4]
        assert infos["_final_info"].all()
        assert all(frame.shape == (84, 84, 3) and (frame == 3).all() for frame in infos["final_info"]["frame"])
    finally:
        envs.close()


class UnpicklableInfoEnv(BigInfoEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {"handle": lambda: None} if terminated else info


def test_an_unpicklable_final_info_is_a_clear_error():
    assert_a_worker_error_is_raised(UnpicklableInfoEnv, "worker process failed: .*pickle")


def test_stepping_before_reset_and_unsupported_reset_arguments_are_clear_errors():
    envs = make_split_envs(symrl.make_config("ppo", "CartPole-v1", n_envs=2), 2)
    with pytest.raises(SymrlError, match="reset"):
        envs.step(np.zeros(2, np.int64))
    with pytest.raises(SymrlError, match="one int"):
        envs.reset(seed=[1, 2])
    with pytest.raises(SymrlError, match="options"):
        envs.reset(seed=0, options={"low": 0.0})
    envs.close()


def test_workers_stop_when_the_envs_are_closed_or_dropped():
    envs = make_split_envs(symrl.make_config("ppo", "CartPole-v1", n_envs=2), 2)
    envs.reset(seed=0)
    process = envs._workers[0].process
    envs.close()
    assert not process.is_alive()
    dropped = make_split_envs(symrl.make_config("ppo", "CartPole-v1", n_envs=2), 2)
    dropped.reset(seed=0)
    process = dropped._workers[0].process
    del dropped
    gc.collect()
    assert not process.is_alive()
