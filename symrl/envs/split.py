"""Training environments split over this process and worker processes, stepped in lockstep.

One vector step: this process writes the actions into shared memory and signals the workers, steps its own share
of the environments while they step theirs, then waits for them. Threads cannot do this: Gymnasium's Python
``step`` and ale-py's emulator hold the GIL. A signal must be cheap: on a 2-core VM a pipe or thread hand-off costs
about 50 µs, more than a MuJoCo step. So on x86-64 Linux a signal is a counter in shared memory that the other side
spins on (x86 keeps stores in order, so the data written before the counter is there when the counter moves); a
side that has waited longer than :data:`SPIN_SECONDS` (a PyTorch update, an evaluation) sleeps on a pipe instead
and gets woken through it, and a worker whose last wait was that long sleeps at once, so that it does not take a
core from PyTorch. Elsewhere every signal goes through the pipes. Observations, rewards and flags go through shared
memory; only what is rare and irregular (the final ``info`` of a finished episode, an error) is pickled.

Each process's share is a :class:`Share`: environments that write their results into :class:`Buffers` rows.
:class:`EnvStackShare` holds Gymnasium environments; ``atari_game.AtariShare`` fused Atari games.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import sys
import time
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Optional, Protocol

import gymnasium as gym
import numpy as np

from ..errors import SymrlError
from .vector import finished_infos

SPIN_SECONDS = 0.002  # longer than an A2C update; far shorter than a PPO update
SPIN_SIGNALS = sys.platform == "linux" and platform.machine().lower() in ("x86_64", "amd64")
_STEP, _RESET, _CLOSE = 1, 2, 3  # commands
_OK, _PAYLOAD, _ERROR = 0, 1, 2  # replies
_NO_SEED = np.iinfo(np.int64).min
# the slots of one worker's row of control counters
_COMMAND, _KIND, _SEED, _DONE, _REPLY, _WORKER_ASLEEP, _MAIN_ASLEEP, _WIDTH = range(8)


class Buffers:
    """Shared memory for ``n`` environments' observations, final observations, rewards, flags and actions, plus
    one row of control counters per worker; built from the same raw arrays in every process."""

    def __init__(self, n: int, obs_space: gym.Space, action_space: gym.Space, workers: int, memory=None):
        self.layout = (n, obs_space, action_space, workers)
        arrays = {"obs": ((n, *obs_space.shape), obs_space.dtype), "final_obs": ((n, *obs_space.shape), obs_space.dtype),
                  "rewards": ((n,), np.float64), "terminated": ((n,), np.bool_), "truncated": ((n,), np.bool_),
                  "actions": ((n, *action_space.shape), action_space.dtype), "control": ((workers, _WIDTH), np.int64)}
        if memory is None:  # the raw arrays, created in the main process and handed to the workers
            context = _context()
            memory = {name: context.RawArray("b", max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize))
                      for name, (shape, dtype) in arrays.items()}
        self.memory = memory
        for name, (shape, dtype) in arrays.items():
            setattr(self, name, np.frombuffer(memory[name], dtype, int(np.prod(shape))).reshape(shape))


class Share(Protocol):
    """One process's share of the environments (``indices``): writes its rows of :class:`Buffers`."""

    observation_space: gym.Space
    action_space: gym.Space
    buffers: Buffers

    def reset(self, seed: Optional[int]) -> None:
        """Reset every environment, environment ``i`` with ``seed + i``; write ``buffers.obs``."""

    def step(self, actions: np.ndarray) -> dict[int, Any]:
        """Step every environment and reset finished ones; write the observations, rewards and flags (the last
        observation of a finished episode in ``final_obs``); return what each finished environment reports."""

    def close(self) -> None:
        """Close the environments."""


class EnvStackShare:
    """Gymnasium environments (``make_env()``), as :class:`~symrl.envs.vector.SerialVectorEnv` steps them: a finished
    environment reports the last item its ``step`` returned (a Gymnasium environment's ``info``)."""

    def __init__(self, make_env: Callable[[], gym.Env], indices: list[int]):
        self.indices = indices
        self.envs = [make_env() for _ in indices]
        self.observation_space, self.action_space = self.envs[0].observation_space, self.envs[0].action_space
        self.buffers: Buffers

    @staticmethod
    def _start(env: gym.Env, seed: Optional[int]) -> np.ndarray:
        """Reset one environment; its first observation."""
        return env.reset(seed=seed)[0]

    def reset(self, seed: Optional[int]) -> None:
        for env, i in zip(self.envs, self.indices, strict=True):
            self.buffers.obs[i] = self._start(env, None if seed is None else seed + i)

    def step(self, actions: np.ndarray) -> dict[int, Any]:
        b, finished = self.buffers, {}
        for env, i in zip(self.envs, self.indices, strict=True):
            obs, b.rewards[i], b.terminated[i], b.truncated[i], info = env.step(actions[i])
            if b.terminated[i] or b.truncated[i]:
                b.final_obs[i] = obs
                finished[i] = info
                obs = self._start(env, None)
            b.obs[i] = obs
        return finished

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _context():
    # fork: starts at once and re-runs nothing of the user's script (spawn would re-import its __main__)
    return multiprocessing.get_context("fork" if sys.platform == "linux" else None)


def _split(n: int, parts: int) -> list[list[int]]:
    return [list(map(int, share)) for share in np.array_split(np.arange(n), max(1, min(parts, n)))]


class SplitVectorEnv(gym.vector.VectorEnv):
    """``n_envs`` environments, split over this process and ``parts - 1`` workers: ``make_share(indices)`` builds
    each process's :class:`Share`. Same-step autoreset; the infos hold ``final_obs`` / ``final_info`` (with their
    ``_``-masks) only where an episode ended, in :class:`~symrl.envs.vector.SerialVectorEnv`'s layout."""

    core_claim = None  # the symrl.threads.CoreClaim make_train_envs took for them, released at close

    def __init__(self, make_share: Callable[[list[int]], Share], n_envs: int, parts: int = 1, name: str = "environment"):
        self.num_envs, self.name = n_envs, name
        shares = _split(n_envs, parts)
        self.share = make_share(shares[0])  # bad settings fail here, in this process
        for space in (self.share.observation_space, self.share.action_space):
            if space.shape is None or space.dtype is None:
                raise SymrlError(f"{space} is not supported: symrl needs Box observations and Discrete, MultiDiscrete "
                                 "or Box actions; flatten the space with a wrapper (e.g. gymnasium's FlattenObservation)")
        self.single_observation_space = self.share.observation_space
        self.single_action_space = self.share.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.buffers = self.share.buffers = Buffers(n_envs, self.single_observation_space, self.single_action_space,
                                                    len(shares) - 1)
        self._shares, self._make_share = shares, make_share
        self._workers: list[_Worker] = []
        self._started = False
        self._stop_workers = weakref.finalize(self, _close_workers, self._workers)  # also if never closed

    @property
    def parts(self) -> int:
        """The number of processes the environments are split over, this one included."""
        return len(self._shares)

    def _start_workers(self) -> None:
        """Fork the workers at the first reset, once the caller has built what it needs (a trainer: its network and
        optimizer). A forked worker shares this process's memory pages until one side writes to one; forked any
        earlier, a HalfCheetah worker next to a trainer held 68 MiB of private copies instead of 14."""
        for w, indices in enumerate(self._shares[1:]):
            self._workers.append(_Worker(w, self._make_share, indices, self.buffers, self.name))

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise SymrlError(f"reset(seed=...) takes one int (environment i gets seed + i), not {seed!r}")
        if options:
            raise SymrlError("split vector envs take no reset options; use --vec-backend async for those")
        if self.parts > len(self._workers) + 1:
            self._start_workers()
        self._started = True
        for worker in self._workers:
            worker.command(_RESET, _NO_SEED if seed is None else int(seed))
        self.share.reset(seed)
        for worker in self._workers:
            worker.result()
        return self.buffers.obs.copy(), {}

    def step(self, actions: np.ndarray):
        if not self._started:
            raise SymrlError("reset() the environments before the first step()")
        b = self.buffers
        b.actions[:] = actions
        for worker in self._workers:
            worker.command(_STEP)
        finished = self.share.step(b.actions)
        for worker in self._workers:
            finished.update(worker.result())
        return b.obs.copy(), b.rewards.copy(), b.terminated.copy(), b.truncated.copy(), self._infos(finished)

    def _infos(self, finished: dict[int, Any]) -> dict:
        """The rollout's infos from what finished environments reported (``final_info`` here)."""
        infos: dict[str, Any] = {}
        for i in sorted(finished):
            infos = self._add_info(infos, {"final_obs": self.buffers.final_obs[i].copy(), "final_info": finished[i]}, i)
        return infos

    def close_extras(self, **kwargs) -> None:
        self._stop_workers()
        self.share.close()
        if self.core_claim is not None:  # the cores make_train_envs claimed for these environments
            self.core_claim.release()


class GameSplitVectorEnv(SplitVectorEnv):
    """A :class:`SplitVectorEnv` whose shares report each finished environment's whole-game ``(return, length)``, or
    ``None`` when the game goes on (an Atari life lost): the rollout's infos carry a game's return where it is over."""

    def __init__(self, make_share: Callable[[list[int]], Share], n_envs: int, parts: int = 1, name: str = "environment"):
        super().__init__(make_share, n_envs, parts, name)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)

    def _infos(self, finished: dict) -> dict:
        game_over = np.zeros(self.num_envs, bool)
        for i, episode in finished.items():
            if episode is not None:
                game_over[i] = True
                self._returns[i], self._lengths[i] = episode
        done = self.buffers.terminated | self.buffers.truncated
        return finished_infos(done, game_over, self.buffers.final_obs, self._returns, self._lengths)


def worker_failure(process, data, what: str, fix: str) -> SymrlError:
    """A worker process's own error if it sent one through ``data``, else that it stopped (``what``: the worker, as the
    message names it; ``fix``: what the user can do)."""
    try:
        if data.poll(1.0):
            return SymrlError(f"{what} failed: {data.recv()}")
    except (EOFError, OSError):
        pass
    process.join(timeout=1.0)
    return SymrlError(f"{what} stopped (exit code {process.exitcode}); {fix}")


def _close_workers(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.close()
    workers.clear()


class _Worker:
    """The main process's handle on one worker process: its counters, its pipes and the process."""

    def __init__(self, w: int, make_share: Callable, indices: list[int], buffers: Buffers, name: str):
        context = _context()
        self.control, self.name = buffers.control[w], name
        self.wake, child_wake = context.Pipe()  # wake-ups both ways, when one side sleeps
        self.data, child_data = context.Pipe(duplex=False)  # pickled reports, worker to main
        self.process = context.Process(
            target=_work, args=(w, make_share, indices, buffers.layout, buffers.memory, child_wake, child_data),
            daemon=True, name=f"symrl-{name.lower()}")
        self.process.start()
        child_wake.close()
        child_data.close()
        self.sent = 0

    def command(self, kind: int, seed: int = _NO_SEED) -> None:
        self.control[_KIND], self.control[_SEED] = kind, seed
        self.sent += 1
        try:
            _signal(self.control, _COMMAND, self.sent, _WORKER_ASLEEP, self.wake)
        except OSError:  # the worker is gone; result() says why
            pass

    def result(self) -> dict[int, Any]:
        """Wait for the last command to be done; what the worker's finished environments reported."""
        try:
            _wait(self.control, _DONE, self.sent - 1, _MAIN_ASLEEP, self.wake, self._check)
        except (EOFError, OSError):  # the worker's end of the pipe closed
            raise self._failed() from None
        reply = self.control[_REPLY]
        if reply == _OK:
            return {}
        if reply == _ERROR:
            raise self._failed()
        try:
            return ForkingPickler.loads(self.data.recv_bytes())
        except (EOFError, OSError):
            raise self._failed() from None

    def _check(self) -> None:
        if not self.process.is_alive():
            raise self._failed()

    def _failed(self) -> SymrlError:
        return worker_failure(self.process, self.data, f"an {self.name} worker process", "rerun, or use --vec-backend async")

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.command(_CLOSE)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
        self.wake.close()
        self.data.close()


def _work(w: int, make_share: Callable, indices: list[int], layout: tuple, memory: dict, wake, data) -> None:
    """A worker process: builds its share, then runs the commands the main process signals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    buffers = Buffers(*layout, memory=memory)
    control, parent, seen = buffers.control[w], os.getppid(), 0

    def parent_alive() -> None:
        if os.getppid() != parent:
            raise EOFError

    try:
        share = make_share(indices)
        share.buffers = buffers
        spin = SPIN_SECONDS
        while True:
            start = time.perf_counter()
            seen = _wait(control, _COMMAND, seen, _WORKER_ASLEEP, wake, parent_alive, spin)
            # Spin next time only if this wait was short: the main process's work between two steps may need every
            # core (an Atari CNN's forward pass takes about 2.5 ms on two threads) and must not share one with a spin.
            spin = SPIN_SECONDS if time.perf_counter() - start < SPIN_SECONDS else 0.0
            kind = control[_KIND]
            if kind == _CLOSE:
                break
            if kind == _STEP:
                report = share.step(buffers.actions)
            else:
                share.reset(None if control[_SEED] == _NO_SEED else int(control[_SEED]))
                report = {}
            payload = ForkingPickler.dumps(report) if report else None  # an unpicklable info fails here, reported
            control[_REPLY] = _PAYLOAD if report else _OK
            _signal(control, _DONE, seen, _MAIN_ASLEEP, wake)
            if payload is not None:  # after the signal: the main process reads it then; a report over the pipe's
                data.send_bytes(payload)  # buffer would block a send made before while the main process waited
        share.close()
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the main process is gone
        return
    except Exception as exc:  # noqa: BLE001  (reported to the main process, which raises it)
        try:
            control[_REPLY] = _ERROR
            _signal(control, _DONE, -1, _MAIN_ASLEEP, wake)  # -1: no command's count, so any wait ends
            data.send(f"{type(exc).__name__}: {exc}")  # _failed() polls for it
        except OSError:
            return


def _signal(control: np.ndarray, slot: int, value: int, asleep: int, wake) -> None:
    """Set the counter ``control[slot]`` to ``value``; wake the other side through the pipe if it sleeps."""
    control[slot] = value
    if not SPIN_SIGNALS or control[asleep]:
        wake.send_bytes(b"")


def _wait(control: np.ndarray, slot: int, old: int, asleep: int, wake, check: Callable[[], None],
          spin_seconds: float = SPIN_SECONDS) -> int:
    """Wait until the counter ``control[slot]`` moves past ``old``, spinning for up to ``spin_seconds`` before
    sleeping; return it. ``check()`` raises if the other side is gone."""
    if not SPIN_SIGNALS:  # one wake-up per signal; the pipe orders memory
        while not wake.poll(0.1):
            check()
        wake.recv_bytes()
        return int(control[slot])
    deadline, spins = time.perf_counter() + spin_seconds, 0
    while control[slot] == old:
        spins += 1
        if spins % 256 == 0 and time.perf_counter() > deadline:
            break
    else:
        return int(control[slot])
    control[asleep] = 1  # sleep; a wake-up missed in the race with _signal costs one poll timeout
    timeout = 0.0005
    try:
        while control[slot] == old:
            if wake.poll(timeout):
                wake.recv_bytes()
            timeout = min(2 * timeout, 0.05)
            check()
    finally:
        control[asleep] = 0
    return int(control[slot])
