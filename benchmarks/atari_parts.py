"""Where an Atari PPO iteration's time goes, and what each Atari speed-up changes, measured in one process.

    python benchmarks/atari_parts.py

1. Stepping 8 Pong environments, milliseconds per vector step: Gymnasium's wrapper stack in one process (what
   ``--vec-backend sync`` ran before the fused games) vs the same games as fused :class:`AtariGame` s in one
   process, split over one process per core (``--vec-backend sync`` now), ALE's C++ vector env
   (``--vec-backend ale``) and the wrapper stack in a process per environment (``--vec-backend async``).
2. One rollout (8 Pong envs x 128 steps) with libgomp's default spin of PyTorch's OpenMP threads vs symrl's
   ``GOMP_SPINCOUNT=10000``, each in fresh processes, alternated.
3. One PPO update on the same 1,024-step Pong rollout with its frames stored channels-last (what the rollout
   buffer does) vs contiguous NCHW, alternated.
4. Nature CNN forward + backward at batch 256 in float32 vs under bfloat16 autocast (``--precision bf16``),
   alternated.

Medians over repeats; the two sides of each comparison alternate, so drift of the machine hits both.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import warnings

import numpy as np
import torch


def median_seconds(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, the functions alternating ``repeats`` times (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def env_step(symrl) -> list[str]:
    from symrl.envs import make_train_envs  # noqa: PLC0415
    from symrl.envs.atari_game import AtariGamesVectorEnv  # noqa: PLC0415
    from symrl.envs.make import make_wrapper_stack_envs  # noqa: PLC0415

    def config(**kw):
        return symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=8, **kw)

    rng, steps = np.random.default_rng(0), 100
    envs = {"wrappers": make_wrapper_stack_envs(config()),
            "fused": AtariGamesVectorEnv(config(), parts=1),
            "sync": make_train_envs(config()),
            "ale": make_train_envs(config(vec_env="ale")),
            "async": make_train_envs(config(vec_env="async"))}
    for vec in envs.values():
        vec.reset(seed=0)

    def stepper(vec):
        return lambda: [vec.step(rng.integers(0, 6, 8)) for _ in range(steps)]

    med = median_seconds({name: stepper(vec) for name, vec in envs.items()}, repeats=5)
    for vec in envs.values():
        vec.close()
    ms = {name: 1e3 * s / steps for name, s in med.items()}
    labels = {"wrappers": "Gymnasium wrapper stack, one process", "fused": "fused games (AtariGame), one process",
              "sync": f"fused games over {envs['sync'].parts} processes (sync)", "ale": "ALE C++ vector env (ale)",
              "async": "wrapper stack, a process per env (async)"}
    return [f"| 8 Pong envs, ms per step | wrappers {ms['wrappers']:.2f} | {labels[name]} {ms[name]:.2f} | "
            f"{ms['wrappers'] / ms[name]:.2f}x |" for name in ("fused", "sync", "ale", "async")]


ROLLOUT = """
import time, warnings
warnings.filterwarnings("ignore")
import symrl
from symrl.trainer import Trainer
cfg = symrl.make_config("ppo", "PongNoFrameskip-v4", total_steps=10**9, eval_episodes=0, progress=False,
                        tensorboard=False, seed=0, n_envs=8)
trainer = Trainer(cfg)
trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
times = []
for _ in range(3):
    start = time.perf_counter()
    trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
    times.append(time.perf_counter() - start)
trainer.envs.close()
print(sorted(times)[1])
"""


def rollout_spin(symrl) -> list[str]:
    """A rollout in a fresh process per setting (libgomp reads GOMP_SPINCOUNT when PyTorch loads)."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    def run(spin: str) -> float:
        env = dict(os.environ, GOMP_SPINCOUNT=spin)
        return float(subprocess.run([sys.executable, "-c", ROLLOUT], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()[-1])

    times: dict[str, list[float]] = {"300000": [], "10000": []}
    for _ in range(3):
        for spin in times:
            times[spin].append(run(spin))
    before, after = (statistics.median(times[spin]) for spin in ("300000", "10000"))
    return [f"| one rollout (8 Pong envs x 128 steps, sync), s | libgomp's default spin {before:.3f} | "
            f"GOMP_SPINCOUNT=10000 (symrl's default) {after:.3f} | {before / after:.2f}x |"]


def update_layout(symrl) -> list[str]:
    from symrl.trainer import Trainer  # noqa: PLC0415

    cfg = symrl.make_config("ppo", "PongNoFrameskip-v4", total_steps=10**9, eval_episodes=0, progress=False,
                            tensorboard=False, seed=0, n_envs=8)
    trainer = Trainer(cfg)
    trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
    batch = trainer._batch()
    contiguous = dataclasses.replace(batch, obs=batch.obs.contiguous())
    med = median_seconds({"channels-last": lambda: trainer.update(batch, cfg.clip_range),
                          "contiguous": lambda: trainer.update(contiguous, cfg.clip_range)}, repeats=6)
    trainer.envs.close()
    return [f"| one PPO update (1,024 frames, 16 minibatches), s | contiguous {med['contiguous']:.3f} | "
            f"channels-last {med['channels-last']:.3f} | {med['contiguous'] / med['channels-last']:.2f}x |"]


def cnn_precision(symrl) -> list[str]:
    import gymnasium as gym  # noqa: PLC0415

    from symrl.policies import ActorCritic  # noqa: PLC0415

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    cfg = symrl.make_config("ppo", "PongNoFrameskip-v4")
    policies = {p: ActorCritic(space, gym.spaces.Discrete(6), cfg.replace(precision=p)) for p in ("fp32", "bf16")}
    frames = torch.randint(0, 256, (256, 84, 84, 4), dtype=torch.uint8).permute(0, 3, 1, 2)  # channels-last
    actions = torch.randint(0, 6, (256,))

    def forward_backward(policy):
        def run():
            log_prob, entropy, values = policy.evaluate(frames, actions)
            (log_prob.mean() + values.mean() + entropy.mean()).backward()
        return run

    med = median_seconds({p: forward_backward(policy) for p, policy in policies.items()}, repeats=10)
    return [f"| Nature CNN forward+backward, batch 256, ms | fp32 {1e3 * med['fp32']:.1f} | "
            f"bf16 {1e3 * med['bf16']:.1f} | {med['fp32'] / med['bf16']:.2f}x |"]


def main() -> None:
    warnings.filterwarnings("ignore")
    import symrl  # noqa: PLC0415

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| what | before | after | speed-up |\n|---|---|---|---|")
    for part in (env_step, rollout_spin, update_layout, cnn_precision):
        print("\n".join(part(symrl)), flush=True)


if __name__ == "__main__":
    main()
