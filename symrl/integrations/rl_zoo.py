"""Train and watch SA2C / SPPO with RL Baselines3 Zoo (``pip install 'symrl[zoo]'``).

    python -m symrl.integrations.rl_zoo train --algo sppo --env CartPole-v1 --seed 0 -f logs/
    python -m symrl.integrations.rl_zoo enjoy --algo sppo --env CartPole-v1 -f logs/

Every Zoo flag works. ``sppo`` and ``sa2c`` join the Zoo's algorithms, and their hyperparameters come from
the files shipped in ``symrl/integrations/zoo_hyperparams/`` (SPEC 4 settings plus ``alpha``, ``beta``, ``z``)
unless ``--conf-file`` names another. The Zoo evaluates string values such as ``policy_kwargs`` as Python,
as it always does: use hyperparameter files you trust.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

try:
    import rl_zoo3
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("symrl.integrations.rl_zoo needs RL Baselines3 Zoo: pip install 'symrl[zoo]'") from exc

from .sb3 import SA2C, SPPO

HYPERPARAMS = Path(__file__).with_name("zoo_hyperparams")
ALGOS = {"sa2c": SA2C, "sppo": SPPO}


def register() -> None:
    """Add ``sa2c`` and ``sppo`` to the Zoo's algorithm table (``rl_zoo3.ALGOS``)."""
    rl_zoo3.ALGOS.update(ALGOS)


def _zoo_args(argv: Sequence[str]) -> list[str]:
    """The Zoo's arguments, with symrl's hyperparameter file added for sa2c/sppo when none is named."""
    args = list(argv)
    algo = next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--algo"), None)
    algo = algo or next((arg.split("=", 1)[1] for arg in args if arg.startswith("--algo=")), None)
    has_conf = any(arg in ("--conf-file", "-conf") or arg.startswith("--conf-file=") for arg in args)
    if algo in ALGOS and not has_conf:
        args += ["--conf-file", str(HYPERPARAMS / f"{algo}.yml")]
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("train", "enjoy")
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: python -m symrl.integrations.rl_zoo {{{','.join(commands)}}} --algo sppo --env ENV [Zoo flags]")
    register()
    command, rest = argv[0], argv[1:]
    # The Zoo's scripts read sys.argv themselves.
    sys.argv = [f"rl_zoo3 {command}", *(_zoo_args(rest) if command == "train" else rest)]
    if command == "train":
        from rl_zoo3.train import train

        train()
    else:
        from rl_zoo3.enjoy import enjoy

        enjoy()


if __name__ == "__main__":
    main()
