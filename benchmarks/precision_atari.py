"""Does --precision bf16 still learn on Atari? float32 and bfloat16 runs side by side, same seeds.

    python benchmarks/precision_atari.py --env BreakoutNoFrameskip-v4 --steps 100000 --seeds 0 1
    python benchmarks/precision_atari.py --steps 1000000 --seeds 0 --precisions bf16 --device cuda   # one run

Each run trains PPO with the Atari preset and ALE's vector env, then evaluates 10 episodes; the table gives
the mean training return of the last 100 finished games, the evaluation return and the wall time. A check
that the bfloat16 path is not broken, not an equivalence test: that needs many seeds and longer budgets.
"""

from __future__ import annotations

import argparse
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--torch-threads", type=int, default=0, help="CPU threads for torch and ALE (0: torch's default)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import pandas as pd  # noqa: PLC0415

    import symrl  # noqa: PLC0415

    print("| precision | seed | train return (last 100 games) | eval return (10 episodes) | wall s |\n|---|---|---|---|---|")
    for seed in args.seeds:
        for precision in args.precisions:
            out = f"runs/precision-{args.algo}-{args.env}-{precision}-seed{seed}"
            start = time.perf_counter()
            result = symrl.train(algo=args.algo, env=args.env, total_steps=args.steps, seed=seed, vec_env="ale",
                                 precision=precision, device=args.device, torch_threads=args.torch_threads,
                                 eval_freq=args.steps, eval_episodes=10, progress=False, tensorboard=False, out=out,
                                 overwrite=True)
            wall = time.perf_counter() - start
            metrics = pd.read_csv(f"{out}/metrics.csv")
            games = metrics.dropna(subset=["ep_return_mean"])
            # mean over the last rows weighted by their episode counts, about the last 100 games
            tail = games.iloc[::-1].assign(cum=lambda d: d["episodes"].cumsum())
            tail = tail[tail["cum"].shift(fill_value=0) < 100]
            train_return = (tail["ep_return_mean"] * tail["episodes"]).sum() / tail["episodes"].sum()
            print(f"| {precision} | {seed} | {train_return:.1f} | {result.final_return:.1f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
