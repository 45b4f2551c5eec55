"""``symrl demo``: a small study that needs nothing but this package, then its report.

PPO, symmetric PPO and the scaled-PPO control (PPO with its policy loss times c = alpha + beta * |z|, the
rescaling SPPO's gradient reduces to, SPEC 1.1) on CartPole-v1 with clean and noisy rewards (Gaussian,
sigma 1), 5 seeds each, 50k steps: 30 runs, about a minute on 2 cores. It is an ordinary
sweep: re-running it skips what is done, and ``symrl report OUT`` rebuilds the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .sweeps import SweepSummary, parse_sweep, run_sweep

ALPHA, BETA, Z = 0.5, 1.0, -1.0

DEMO = {
    "name": "demo",
    "out": "runs/demo",
    "steps": 50_000,
    "seeds": 5,
    "algorithms": {
        "PPO": {"algo": "ppo"},
        "SPPO": {"algo": "sppo", "alpha": ALPHA, "beta": BETA, "z": Z},
        "scaled PPO": {"algo": "ppo", "policy_coef": ALPHA + BETA * abs(Z)},
    },
    "envs": ["CartPole-v1"],
    "noise": {"clean": None, "gaussian:1.0": "gaussian:1.0"},
    "overrides": {"eval_freq": 5_000, "eval_episodes": 10, "tensorboard": False},
}


def run_demo(out: Optional[str | Path] = None, workers: Optional[int] = None, progress: bool = True,
             steps: Optional[int] = None) -> tuple[SweepSummary, Path]:
    """Run the demo study into ``out`` (default runs/demo) and write its report to ``out/report``.

    ``steps`` shortens every run (a quick look at the pipeline; the default budget is what the README shows).
    """
    from .report import write_report  # noqa: PLC0415

    spec = dict(DEMO, out=str(out or DEMO["out"]), steps=steps or DEMO["steps"])
    sweep = parse_sweep(spec, source="the demo study")
    summary = run_sweep(sweep, backend="local", workers=workers, progress=progress)
    report = write_report([sweep.out], sweep.out / "report")
    return summary, report
