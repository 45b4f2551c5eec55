"""How long the command line takes to answer ``--help``, beside what loading the engine costs (issue 24: under 0.5 s).

Runs each command ``--repeats`` times in fresh interpreters, alternating, and prints the medians: ``symrl --help``,
``symrl train --help``, and the imports an eager CLI loaded (``import torch, gymnasium, symrl.trainer``).

    python benchmarks/bench_cli_startup.py --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "symrl --help": [sys.executable, "-m", "symrl.cli", "--help"],
    "symrl train --help": [sys.executable, "-m", "symrl.cli", "train", "--help"],
    "import symrl.trainer (the engine)": [sys.executable, "-c", "import symrl.trainer"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    engine = statistics.median(times["import symrl.trainer (the engine)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:36s} median {median:.3f} s  ({median / engine:.2f} x loading the engine)")


if __name__ == "__main__":
    main()
