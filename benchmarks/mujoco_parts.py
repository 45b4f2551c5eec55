"""Where an A2C MuJoCo run's time goes (the paper's settings: 4 HalfCheetah envs, 8 steps per update), and
whether stepping the environments in two threads would help. One process, medians over repeats.

    python benchmarks/mujoco_parts.py

1. 20,000 steps of ``symrl train --algo a2c --env HalfCheetah-v4``, split by timers around the parts of the
   loop: the vector env's step (simulator and Gymnasium's Python step), the rest of the rollout (acting,
   normalisation, storage), GAE and batching, the update, and the loop's bookkeeping.
2. The same 20,000 environment steps with random actions and no agent: the four environments stepped one after
   the other in this process (the wrapper stack), split over this process and a worker (symrl's default on 2
   cores, ``symrl.envs.split``), split over two threads (MuJoCo's ``mj_step`` releases the GIL), and a process
   per environment (``--vec-backend async``).
"""

from __future__ import annotations

import collections
import statistics
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

STEPS, N_ENVS = 20_000, 4


def timed(spent: collections.Counter, name: str, fn):
    """``fn``, adding its wall time to ``spent[name]`` on every call."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        spent[name] += time.perf_counter() - start
        return out
    return wrapper


def a2c_breakdown(symrl) -> list[str]:
    from symrl.trainer import Trainer  # noqa: PLC0415

    totals: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(3):
        spent: collections.Counter = collections.Counter()
        cfg = symrl.make_config("a2c", "HalfCheetah-v4", total_steps=STEPS, n_envs=N_ENVS, eval_episodes=0,
                                progress=False, tensorboard=False, seed=0)
        trainer = Trainer(cfg)
        trainer.collector.envs.step = timed(spent, "env step", trainer.collector.envs.step)
        trainer.collector.collect = timed(spent, "rollout", trainer.collector.collect)
        trainer._batch = timed(spent, "GAE and batch", trainer._batch)
        trainer.update = timed(spent, "update", trainer.update)
        start = time.perf_counter()
        trainer.run()
        total = time.perf_counter() - start
        trainer.envs.close()
        spent["rollout"] -= spent["env step"]  # the rest of the rollout
        spent["loop bookkeeping"] = total - sum(spent.values())
        spent["total"] = total
        for name, seconds in spent.items():
            totals[name].append(seconds)
    rows = [f"| {name.replace('rollout', 'rest of the rollout')} | {statistics.median(s):.3f} |"
            for name, s in totals.items()]
    return ["| A2C, HalfCheetah-v4, 4 envs, 20,000 steps: part | seconds |", "|---|---|", *rows]


def threaded_stepping(symrl) -> list[str]:
    from symrl.envs import make_train_envs  # noqa: PLC0415
    from symrl.envs.make import make_split_envs, make_wrapper_stack_envs  # noqa: PLC0415

    cfg = symrl.make_config("a2c", "HalfCheetah-v4", n_envs=N_ENVS)
    envs, split = make_wrapper_stack_envs(cfg), make_split_envs(cfg, parts=2)
    processes = make_train_envs(symrl.make_config("a2c", "HalfCheetah-v4", n_envs=N_ENVS, vec_env="async"))
    for vector_env in (envs, split, processes):
        vector_env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS // N_ENVS, N_ENVS, 6)).astype(np.float32)
    pool, half = ThreadPoolExecutor(1), N_ENVS // 2

    def step_some(acts, lo, hi):
        for i in range(lo, hi):
            _, _, terminated, truncated, _ = envs.envs[i].step(acts[i])
            if terminated or truncated:
                envs.envs[i].reset()

    def two_threads(acts):
        other = pool.submit(step_some, acts, half, N_ENVS)
        step_some(acts, 0, half)
        other.result()

    steppers = {"serial (wrapper stack)": envs.step, "split over 2 processes (default)": split.step,
                "two threads": two_threads, "a process per env": processes.step}
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(3):
        for name, step in steppers.items():
            start = time.perf_counter()
            for acts in actions:
                step(acts)
            times[name].append(time.perf_counter() - start)
    for vector_env in (envs, split, processes):
        vector_env.close()
    pool.shutdown()
    med = {name: statistics.median(t) for name, t in times.items()}
    return ["| 20,000 HalfCheetah steps, 4 envs, random actions | seconds |", "|---|---|",
            *(f"| {name} | {s:.3f} |" for name, s in med.items())]


def main() -> None:
    warnings.filterwarnings("ignore")
    import symrl  # noqa: PLC0415

    for part in (a2c_breakdown, threaded_stepping):
        print("\n".join(part(symrl)) + "\n", flush=True)


if __name__ == "__main__":
    main()
