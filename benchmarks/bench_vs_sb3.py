"""symrl vs Stable-Baselines3, side by side: training steps per second and peak memory.

Each measurement runs in a fresh subprocess (so peak memory is that run's own: its peak RSS plus the private
memory of any environment worker processes it starts), the two libraries
alternate round by round, and the table reports medians over rounds and their ratios. Both libraries get
the same hyperparameters and the same number of gradient updates; only the wall time of ``learn()`` /
``Trainer.run()`` is timed (construction excluded), evaluation and logging to disk are off.

    python benchmarks/bench_vs_sb3.py                       # every workload, 3 rounds
    python benchmarks/bench_vs_sb3.py --workloads ppo-mujoco --rounds 5
    python benchmarks/bench_vs_sb3.py --scaling             # steps/s vs n_envs, time per update vs width
    python benchmarks/bench_vs_sb3.py --workloads ppo-atari ppo-atari-ale --device cuda   # on a GPU
    python benchmarks/bench_vs_sb3.py --workloads ppo-minatar sppo-minatar   # MinAtar Breakout, the minatar preset
    python benchmarks/bench_vs_sb3.py --workloads a2c-mujoco-envpool   # symrl on EnvPool (pip install envpool)

Stable-Baselines3 is a benchmark-only dependency: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# workload -> (env, symrl algo, symrl overrides, sb3 algo, sb3 kwargs, steps, bins)
WORKLOADS = {
    "ppo-mujoco": dict(env="HalfCheetah-v4", algo="ppo", sb3="PPO", steps=5 * 2048, bins=0,
                       sb3_kwargs=dict(n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gae_lambda=0.95)),
    "dppo-mujoco": dict(env="HalfCheetah-v4", algo="ppo", sb3="PPO", steps=5 * 2048, bins=11,
                        sb3_kwargs=dict(n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gae_lambda=0.95)),
    "dsppo-mujoco": dict(env="HalfCheetah-v4", algo="sppo", sb3=None, steps=5 * 2048, bins=11),
    "a2c-mujoco": dict(env="HalfCheetah-v4", algo="a2c", sb3="A2C", steps=20_000, bins=0, n_envs=4,
                       sb3_kwargs=dict(n_steps=8, learning_rate=7e-4, gae_lambda=1.0)),
    "da2c-mujoco": dict(env="HalfCheetah-v4", algo="a2c", sb3="A2C", steps=20_000, bins=11, n_envs=4,
                        sb3_kwargs=dict(n_steps=8, learning_rate=7e-4, gae_lambda=1.0)),
    "dsa2c-mujoco": dict(env="HalfCheetah-v4", algo="sa2c", sb3=None, steps=20_000, bins=11, n_envs=4),
    "ppo-atari": dict(env="PongNoFrameskip-v4", algo="ppo", sb3="PPO", steps=3 * 1024, bins=0, n_envs=8, atari=True,
                      sb3_kwargs=dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, clip_range=0.1,
                                      ent_coef=0.01, vf_coef=0.5)),
    "sppo-atari": dict(env="PongNoFrameskip-v4", algo="sppo", sb3=None, steps=3 * 1024, bins=0, n_envs=8, atari=True),
    # the minatar preset's PPO (symrl/presets/minatar.yaml): 64 envs x 128 steps, separate [64, 64] ReLU MLPs on
    # the flattened 10x10x4 grid, sticky actions 0.1, a 10,000-step time limit, sign-clipped training rewards
    "ppo-minatar": dict(env="MinAtar/Breakout-v1", algo="ppo", sb3="PPO", steps=3 * 8192, bins=0, n_envs=64, minatar=True,
                        sb3_kwargs=dict(n_steps=128, batch_size=1024, n_epochs=4, learning_rate=5e-3, clip_range=0.2,
                                        clip_range_vf=0.2, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, vf_coef=0.25)),
    "sppo-minatar": dict(env="MinAtar/Breakout-v1", algo="sppo", sb3=None, steps=3 * 8192, bins=0, n_envs=64),
}
# the Atari workloads again with symrl's training environments in ALE's C++ vector env (--vec-backend ale),
# and with that and bfloat16 network bodies (--precision bf16). Stable-Baselines3's side is unchanged, so
# these rows are compared with ppo-atari's Stable-Baselines3 runs (sb3_base), measured in the same rounds
for _name in ("ppo-atari", "sppo-atari"):
    for _suffix, _symrl in (("-ale", dict(vec_env="ale")), ("-ale-bf16", dict(vec_env="ale", precision="bf16"))):
        WORKLOADS[_name + _suffix] = dict(WORKLOADS[_name], symrl=_symrl, sb3=None, sb3_base="ppo-atari")
# the optional EnvPool backend (--vec-backend envpool, where installed: pip install -e .[bench]): EnvPool's own
# C++ reimplementations of the tasks, so opt-in rows compared with Stable-Baselines3 on Gymnasium's
for _name in ("ppo-mujoco", "a2c-mujoco", "ppo-atari"):
    WORKLOADS[_name + "-envpool"] = dict(WORKLOADS[_name], symrl=dict(vec_env="envpool"), sb3=None, sb3_base=_name)
# (symmetric workload, its plain baseline): the "SPPO vs PPO <= 2% slower" target
SYMMETRIC_PAIRS = [("dsppo-mujoco", "dppo-mujoco"), ("dsa2c-mujoco", "da2c-mujoco"), ("sppo-atari", "ppo-atari"),
                   ("sppo-atari-ale", "ppo-atari-ale"), ("sppo-atari-ale-bf16", "ppo-atari-ale-bf16"),
                   ("sppo-minatar", "ppo-minatar")]


# -- workers (run in a subprocess) --------------------------------------------------------------------------
def run_symrl(w: dict, overrides: dict) -> float:
    import symrl  # noqa: PLC0415
    from symrl.trainer import Trainer  # noqa: PLC0415

    cfg = symrl.make_config(w["algo"], w["env"], total_steps=w["steps"], bins=w["bins"], eval_episodes=0,
                            progress=False, tensorboard=False, seed=0, **{**w.get("symrl", {}), **overrides})
    trainer = Trainer(cfg)
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def run_sb3(w: dict, overrides: dict) -> float:
    import stable_baselines3 as sb3  # noqa: PLC0415
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env  # noqa: PLC0415
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize  # noqa: PLC0415

    from symrl.envs.wrappers import DiscretizeAction  # noqa: PLC0415

    n_envs = overrides.get("n_envs", w.get("n_envs", 1))
    kwargs = dict(w["sb3_kwargs"])
    if "n_steps" in overrides:
        kwargs["n_steps"] = overrides["n_steps"]
    if "net_arch" in overrides:
        kwargs["policy_kwargs"] = dict(net_arch=overrides["net_arch"])
    if w.get("atari"):
        import ale_py  # noqa: PLC0415
        import gymnasium as gym  # noqa: PLC0415

        gym.register_envs(ale_py)
        env = VecFrameStack(make_atari_env(w["env"], n_envs=n_envs, seed=0), 4)
        policy = "CnnPolicy"
    elif w.get("minatar"):
        env, policy = minatar_sb3_env(w, n_envs), "MlpPolicy"
        kwargs.setdefault("policy_kwargs", minatar_sb3_policy())
    else:
        wrapper = (lambda e: DiscretizeAction(e, w["bins"])) if w["bins"] else None
        env = VecNormalize(make_vec_env(w["env"], n_envs=n_envs, seed=0, wrapper_class=wrapper))
        policy = "MlpPolicy"
    model = getattr(sb3, w["sb3"])(policy, env, seed=0, verbose=0, device=overrides.get("device", "cpu"), **kwargs)
    start = time.perf_counter()
    model.learn(w["steps"])
    return time.perf_counter() - start


def minatar_sb3_env(w: dict, n_envs: int):
    """The minatar preset's environments for Stable-Baselines3: its env_kwargs (sticky actions, time limit) and its
    sign-clipped training rewards (symrl clips them in the rollout, SB3 through a wrapper)."""
    import gymnasium as gym  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from stable_baselines3.common.env_util import make_vec_env  # noqa: PLC0415

    import symrl  # noqa: PLC0415
    from symrl.envs.registry import env_spec  # noqa: PLC0415

    env_spec(w["env"])  # registers MinAtar's ids in this process
    cfg = symrl.make_config(w["algo"], w["env"])
    assert cfg.sign_reward, "the minatar preset no longer clips rewards: drop the wrapper"
    sign = lambda e: gym.wrappers.TransformReward(e, np.sign)  # noqa: E731
    return make_vec_env(w["env"], n_envs=n_envs, seed=0, env_kwargs=cfg.env_kwargs, wrapper_class=sign)


def minatar_sb3_policy() -> dict:
    """The minatar preset's network for Stable-Baselines3's MlpPolicy (which flattens the grid): separate actor and
    critic MLPs [64, 64] with ReLU, orthogonal initialisation (SB3's default, the same gains as symrl's)."""
    from torch import nn  # noqa: PLC0415

    return dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.ReLU)


def worker(lib: str, name: str, overrides: dict) -> None:
    import warnings  # noqa: PLC0415

    warnings.filterwarnings("ignore")
    w = dict(WORKLOADS[name])
    if "steps" in overrides:
        w["steps"] = overrides.pop("steps")
    if lib == "symrl" and "n_envs" in w:
        overrides.setdefault("n_envs", w["n_envs"])
    workers = WorkerMemory()
    seconds = run_symrl(w, overrides) if lib == "symrl" else run_sb3(w, overrides)
    workers_mib = workers.stop()
    import torch  # noqa: PLC0415

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + workers_mib
    print(json.dumps({"sps": w["steps"] / seconds, "seconds": seconds, "peak_mib": peak_mib,
                      "workers_mib": workers_mib, "threads": torch.get_num_threads()}))


class WorkerMemory:
    """Peak private memory (USS) of this process's children, e.g. environment worker processes, sampled every
    0.25 s in a thread. Their shared pages are the same physical pages as this process's, already in its peak RSS,
    so a run's peak memory is this process's peak RSS plus its children's private memory. Linux only."""

    def __init__(self, interval: float = 0.25):
        import threading  # noqa: PLC0415

        self.peaks: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def _children() -> list[int]:
        pids = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(pid) for pid in f.read().split()]
        return pids

    def _sample(self, interval: float) -> None:
        while not self._done.wait(interval):
            for pid in self._children():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        kib = sum(int(line.split()[1]) for line in f if line.startswith("Private_"))
                except (FileNotFoundError, ProcessLookupError):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), kib / 1024)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return sum(self.peaks.values())


def measure(lib: str, name: str, overrides: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", lib, name, json.dumps(overrides or {})]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        raise SystemExit(f"error: {lib} {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- driver ----------------------------------------------------------------------------------------------
def machine() -> str:
    import torch  # noqa: PLC0415

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def compare(names: list[str], rounds: int, device: str = "cpu", steps: int | None = None) -> list[str]:
    results: dict[tuple, list[dict]] = {}
    bases = [WORKLOADS[n]["sb3_base"] for n in names if "sb3_base" in WORKLOADS[n]]
    runs = names + [b for b in dict.fromkeys(bases) if b not in names]  # a row's baseline is measured too
    for r in range(rounds):
        for name in runs:
            libs = (["symrl"] if name in names else []) + (["sb3"] if WORKLOADS[name]["sb3"] else [])
            if r % 2:
                libs.reverse()  # alternate the order so drift hits both
            for lib in libs:
                overrides = {**({"device": device} if device != "cpu" else {}), **({"steps": steps} if steps else {})}
                res = measure(lib, name, overrides)
                results.setdefault((lib, name), []).append(res)
                print(f"round {r + 1} {name:14s} {lib:6s} {res['sps']:8.0f} steps/s  peak {res['peak_mib']:.0f} MiB"
                      f" (workers {res['workers_mib']:.0f})",
                      file=sys.stderr)
    med = {k: (statistics.median(x["sps"] for x in v), statistics.median(x["peak_mib"] for x in v)) for k, v in results.items()}
    lines = ["| workload | symrl steps/s | SB3 steps/s | speed ratio | symrl peak MiB | SB3 peak MiB |",
             "|---|---|---|---|---|---|"]
    for name in names:
        s_sps, s_mem = med[("symrl", name)]
        baseline = ("sb3", WORKLOADS[name].get("sb3_base", name))
        if baseline in med:
            b_sps, b_mem = med[baseline]
            lines.append(f"| {name} | {s_sps:.0f} | {b_sps:.0f} | **{s_sps / b_sps:.2f}x** | {s_mem:.0f} | {b_mem:.0f} |")
        else:
            lines.append(f"| {name} | {s_sps:.0f} | - | - | {s_mem:.0f} | - |")
    pairs = [(a, b) for a, b in SYMMETRIC_PAIRS if a in names and b in names]
    if pairs:
        lines += ["", "| symmetric vs plain (symrl) | slowdown |", "|---|---|"]
        for a, b in pairs:
            lines.append(f"| {a} vs {b} | {100 * (med[('symrl', b)][0] / med[('symrl', a)][0] - 1):+.1f}% |")
    return lines


def scaling() -> list[str]:
    lines = ["| n_envs (PPO HalfCheetah, 2048 steps per rollout) | symrl steps/s | SB3 steps/s | ratio |",
             "|---|---|---|---|"]
    for n in (1, 2, 4, 8, 16):
        o = {"n_envs": n, "n_steps": 2048 // n}
        s, b = measure("symrl", "ppo-mujoco", o)["sps"], measure("sb3", "ppo-mujoco", o)["sps"]
        lines.append(f"| {n} | {s:.0f} | {b:.0f} | {s / b:.2f}x |")
    lines += ["", "| hidden width (2 layers, PPO HalfCheetah) | symrl s per iteration | SB3 s per iteration | ratio |",
              "|---|---|---|---|"]
    for width in (64, 256, 1024):
        o = {"net_arch": [width, width], "steps": 2 * 2048}
        s, b = measure("symrl", "ppo-mujoco", o)["seconds"] / 2, measure("sb3", "ppo-mujoco", o)["seconds"] / 2
        lines.append(f"| {width} | {s:.3f} | {b:.3f} | {b / s:.2f}x |")
    return lines


def update_overhead(pairs: list[tuple[str, str]], repeats: int = 15) -> list[str]:
    """In one process: the symmetric and the plain update on the same rollout, alternated ``repeats`` times.
    Environment stepping and acting do not depend on the loss, so this isolates what the reverse term
    costs; the slowdown of a whole iteration is that extra time over the plain iteration's time."""
    import warnings  # noqa: PLC0415

    warnings.filterwarnings("ignore")
    import symrl  # noqa: PLC0415
    from symrl.trainer import Trainer  # noqa: PLC0415

    lines = ["| symmetric vs plain (same rollout) | plain update s | symmetric update s | whole iteration slowdown |",
             "|---|---|---|---|"]
    for sym_name, plain_name in pairs:
        trainers, batches = {}, {}
        for name in (sym_name, plain_name):
            w = WORKLOADS[name]
            cfg = symrl.make_config(w["algo"], w["env"], total_steps=10**9, bins=w["bins"], eval_episodes=0,
                                    progress=False, tensorboard=False, seed=0, n_envs=w.get("n_envs", 1))
            trainers[name] = trainer = Trainer(cfg)
            start = time.perf_counter()
            trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
            batches[name] = (trainer._batch(), time.perf_counter() - start)
        times: dict[str, list[float]] = {sym_name: [], plain_name: []}
        for _ in range(repeats):
            for name in (plain_name, sym_name):
                trainer, (batch, _) = trainers[name], batches[name]
                start = time.perf_counter()
                trainer.update(batch, trainer.cfg.clip_range)
                times[name].append(time.perf_counter() - start)
        plain, sym = statistics.median(times[plain_name]), statistics.median(times[sym_name])
        iteration = plain + batches[plain_name][1]
        lines.append(f"| {sym_name} vs {plain_name} | {plain:.4f} | {sym:.4f} | {100 * (sym - plain) / iteration:+.2f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=[n for n in WORKLOADS if not n.endswith("-envpool")],
                        choices=list(WORKLOADS), help="default: all but the EnvPool rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch device for both libraries (e.g. cuda); default cpu")
    parser.add_argument("--steps", type=int, help="every workload's training steps for both libraries (default: each "
                        "workload's own, a few updates: one-time start-up costs weigh more in a short run)")
    parser.add_argument("--scaling", action="store_true", help="the n_envs and network-width tables instead")
    parser.add_argument("--overhead", action="store_true", help="symmetric vs plain update on the same rollout, in one process")
    parser.add_argument("--worker", nargs=3, metavar=("LIB", "WORKLOAD", "OVERRIDES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        lib, name, overrides = args.worker
        return worker(lib, name, json.loads(overrides))
    print(f"machine: {machine()}\ncommand: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}\n")
    if args.overhead:
        # on symrl's default settings: the -ale / -ale-bf16 variants' extra settings are not applied there
        print("\n".join(update_overhead([p for p in SYMMETRIC_PAIRS if "symrl" not in WORKLOADS[p[0]]])))
    else:
        print("\n".join(scaling() if args.scaling else compare(args.workloads, args.rounds, args.device, args.steps)))


if __name__ == "__main__":
    main()
