"""Does symrl's fast PPO learn like Stable-Baselines3's PPO? Same task, settings, budget and seeds.

Both libraries train Gaussian PPO with the paper's MuJoCo settings (1 env, 2048 steps per rollout,
minibatch 64, 10 epochs, lr 3e-4, observation and reward normalisation) for ``--steps`` steps on
``--seeds`` seeds; each final policy is evaluated deterministically on 10 episodes of the clean task (the
normalisation statistics frozen). The script prints each seed's score, the mean of each library, a 95%
bootstrap confidence interval for the difference of means and a permutation test's p-value.

    python benchmarks/equivalence_vs_sb3.py --env Hopper-v4 --steps 150000 --seeds 10 --jobs 2

Scores are cached in ``--cache`` (JSON), so a re-run, or one with more seeds, only trains what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def train_symrl(env: str, steps: int, seed: int, engine: str = "auto") -> float:
    import symrl  # noqa: PLC0415

    result = symrl.train(algo="ppo", env=env, preset="mujoco", total_steps=steps, seed=seed, eval_freq=steps,
                         eval_episodes=10, progress=False, tensorboard=False, engine=engine)
    return result.final_return


def train_sb3(env: str, steps: int, seed: int) -> float:
    from stable_baselines3 import PPO  # noqa: PLC0415
    from stable_baselines3.common.env_util import make_vec_env  # noqa: PLC0415
    from stable_baselines3.common.evaluation import evaluate_policy  # noqa: PLC0415
    from stable_baselines3.common.vec_env import VecNormalize  # noqa: PLC0415

    venv = VecNormalize(make_vec_env(env, n_envs=1, seed=seed))
    model = PPO("MlpPolicy", venv, n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gae_lambda=0.95,
                seed=seed, device="cpu", verbose=0)
    model.learn(steps)
    eval_env = VecNormalize(make_vec_env(env, n_envs=1, seed=seed + 1_000_000), training=False, norm_reward=False)
    eval_env.obs_rms = venv.obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return float(mean)


def worker(lib: str, env: str, steps: int, seed: int) -> None:
    import warnings  # noqa: PLC0415

    warnings.filterwarnings("ignore")
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)  # the jobs run side by side
    score = train_sb3(env, steps, seed) if lib == "sb3" else train_symrl(env, steps, seed, _engine(lib))
    print(json.dumps({"score": score}))


def _engine(lib: str) -> str:
    """``symrl`` (the default engine) or ``symrl-torch`` / ``symrl-numpy``."""
    return lib.partition("-")[2] or "auto"


def run(lib: str, env: str, steps: int, seed: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--worker", lib, env, str(steps), str(seed)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode:
        raise SystemExit(f"error: {lib} seed {seed} failed:\n{out.stderr[-3000:]}")
    score = json.loads(out.stdout.strip().splitlines()[-1])["score"]
    print(f"{lib:6s} seed {seed}: {score:9.1f}", file=sys.stderr)
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default="benchmarks/equivalence_scores.json")
    parser.add_argument("--libs", nargs=2, default=["symrl", "sb3"], metavar=("A", "B"),
                        help="the two to compare: symrl (default engine), symrl-torch, symrl-numpy or sb3")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        lib, env, steps, seed = args.worker
        return worker(lib, env, int(steps), int(seed))

    cache = json.loads(Path(args.cache).read_text()) if Path(args.cache).exists() else {}
    lock = threading.Lock()

    def cached_run(job: tuple) -> float:
        key = f"{job[0]} {args.env} {args.steps} {job[1]}"
        if key not in cache:
            score = run(job[0], args.env, args.steps, job[1])
            with lock:
                cache[key] = score
                tmp = Path(args.cache + ".tmp")
                tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
                os.replace(tmp, args.cache)
        return cache[key]

    jobs = [(lib, seed) for seed in range(args.seeds) for lib in args.libs]
    with ThreadPoolExecutor(args.jobs) as pool:
        scores = list(pool.map(cached_run, jobs))
    by_lib = {lib: np.array([s for (name, _), s in zip(jobs, scores, strict=True) if name == lib]) for lib in args.libs}
    a, b = (by_lib[lib] for lib in args.libs)
    rng = np.random.default_rng(0)
    diffs = [rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean() for _ in range(10_000)]
    low, high = np.percentile(diffs, [2.5, 97.5])
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    perms = [rng.permutation(pooled) for _ in range(10_000)]
    p = float(np.mean([abs(x[: a.size].mean() - x[a.size :].mean()) >= observed for x in perms]))
    print(f"command: python benchmarks/equivalence_vs_sb3.py {' '.join(sys.argv[1:])}")
    print(f"{args.env}, PPO, {args.steps} steps, {args.seeds} seeds, deterministic evaluation on 10 episodes\n")
    print("| library | scores per seed | mean |\n|---|---|---|")
    for lib, x in by_lib.items():
        print(f"| {lib} | {', '.join(f'{v:.0f}' for v in x)} | {x.mean():.1f} |")
    print(f"\ndifference of means ({args.libs[0]} - {args.libs[1]}): {a.mean() - b.mean():.1f}, "
          f"95% bootstrap CI [{low:.1f}, {high:.1f}]; "
          f"permutation test p = {p:.2f}")


if __name__ == "__main__":
    main()
