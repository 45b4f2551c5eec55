"""Runs that share the machine (issue 25): one alone, then two and three of the same run at once.

Each copy is a separate `symrl train` process with its own seed, started together; its throughput is its training
steps per second of training time from its ``metrics.csv`` (the first rollout, which includes start-up, left out).
"together" is the sum over the copies that ran at once; "together / alone" at least 1 means that running them at
once is at least as fast as running them one after the other, the issue's target for two runs on 2 cores. Run it on
a quiet machine: anything else running takes cores from the copies.

    python benchmarks/bench_shared_machine.py                      # every workload, 1, 2 and 3 at once
    python benchmarks/bench_shared_machine.py --workloads ppo-cartpole --copies 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOADS = {  # name -> symrl train arguments (budgets of about 10-30 s alone on a 2-core machine)
    "ppo-cartpole": ["--algo", "ppo", "--env", "CartPole-v1", "--steps", "100000"],
    "ppo-halfcheetah": ["--algo", "ppo", "--env", "HalfCheetah-v4", "--steps", "60000"],
    "a2c-halfcheetah": ["--algo", "a2c", "--env", "HalfCheetah-v4", "--steps", "60000"],
    "ppo-atari": ["--algo", "ppo", "--env", "PongNoFrameskip-v4", "--steps", "8000"],
}
QUIET = ["--no-progress", "--set", "tensorboard=false", "--set", "eval_episodes=0", "--set", "checkpoint_freq=100000000"]


def steps_per_second(run_dir: Path) -> float:
    """Training steps per second of training time, from the run's metrics.csv, without its first rollout."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) < 2:
        raise SystemExit(f"{run_dir} logged {len(rows)} rollouts; give the workload a larger budget")
    first, last = rows[0], rows[-1]
    return (float(last["step"]) - float(first["step"])) / (float(last["time"]) - float(first["time"]))


def run_at_once(arguments: list[str], copies: int, folder: Path) -> list[float]:
    """Start ``copies`` runs together (seeds 0, 1, ...) and return each one's steps per second."""
    runs = [folder / f"copy{k}" for k in range(copies)]
    processes = [subprocess.Popen([sys.executable, "-m", "symrl.cli", "train", *arguments, *QUIET, "--seed", str(k),
                                   "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for k, run in enumerate(runs)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"symrl train {' '.join(arguments)} failed: {err.strip().splitlines()[-1:]}")
    return [steps_per_second(run) for run in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--copies", nargs="+", type=int, default=[1, 2, 3], help="how many runs at once (1 = alone)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the table shows medians")
    parser.add_argument("--steps", type=float, help="override every workload's budget (e.g. 2e4 for a quick check)")
    args = parser.parse_args()
    if 1 not in args.copies:
        parser.error("--copies must include 1: the other counts are compared with a run alone")
    if "ppo-atari" in args.workloads and importlib.util.find_spec("ale_py") is None:
        print("ppo-atari left out: ale-py is not installed (pip install -e '.[atari]')")
        args.workloads.remove("ppo-atari")
    print("| workload | runs at once | steps/s each (median) | together | together / alone |")
    print("|---|---|---|---|---|")
    for name in args.workloads:
        arguments = list(WORKLOADS[name])
        if args.steps:
            arguments[arguments.index("--steps") + 1] = str(int(args.steps))
        each: dict[int, list[float]] = {n: [] for n in args.copies}
        together: dict[int, list[float]] = {n: [] for n in args.copies}
        for _ in range(args.repeats):
            for copies in sorted(args.copies):
                with tempfile.TemporaryDirectory() as folder:
                    rates = run_at_once(arguments, copies, Path(folder))
                each[copies] += rates
                together[copies].append(sum(rates))
        alone = statistics.median(together[1])
        for copies in sorted(args.copies):
            total = statistics.median(together[copies])
            print(f"| {name} | {copies} | {statistics.median(each[copies]):,.0f} | {total:,.0f} | {total / alone:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
