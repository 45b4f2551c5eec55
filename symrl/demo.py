"""``symrl demo``: a small robustness study that needs nothing but this package, then its report.

Does the symmetric loss make PPO more robust to reward noise, beyond what rescaling its policy loss does?
Four arms on CartPole-v1, clean and with Gaussian reward noise (sigma 4, which cut clean PPO's score by about
half in a pilot on seeds 100-105, disjoint from the demo's), 10 seeds each, 30k steps: 80 runs.

- PPO;
- scaled PPO: PPO with its policy loss times c = alpha + beta * |z| = 1.5, the control;
- SPPO with the authors' reverse mask: its gradient is exactly scaled PPO's (SPEC 1.1), so it is a negative control
  that should come out equivalent to scaled PPO, and its runs track scaled PPO's of the same seed;
- SPPO with ``reverse_mask=none``: a reverse term that is not a rescaling of PPO.

A run's score is its mean clean evaluation return over the last 20% of training (:func:`symrl.stats.run_scores`);
the verdicts compare each SPPO variant with scaled PPO (:func:`symrl.stats.robustness_comparisons`). It is an
ordinary sweep: re-running it skips what is done, and ``symrl report OUT`` rebuilds the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .sweeps import SweepSummary, parse_sweep, run_sweep

ALPHA, BETA, Z = 0.5, 1.0, -1.0
NOISE = "gaussian:4.0"

DEMO = {
    "name": "demo",
    "out": "runs/demo",
    "steps": 30_000,
    "seeds": 10,
    "algorithms": {
        "PPO": {"algo": "ppo"},
        "scaled PPO": {"algo": "ppo", "policy_coef": ALPHA + BETA * abs(Z)},
        "SPPO": {"algo": "sppo", "alpha": ALPHA, "beta": BETA, "z": Z},
        "SPPO unmasked": {"algo": "sppo", "alpha": ALPHA, "beta": BETA, "z": Z, "reverse_mask": "none"},
    },
    "envs": ["CartPole-v1"],
    "noise": {"clean": None, NOISE: NOISE},
    "overrides": {"eval_freq": 3_000, "eval_episodes": 3, "tensorboard": False},
}

EQUIVALENCE = (f"SPPO with the authors' mask has exactly scaled PPO's gradient (PPO's times c = alpha + beta*|z| = "
               f"{ALPHA + BETA * abs(Z):g}, SPEC 1.1): a difference between them is noise, not the symmetric loss.")


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
