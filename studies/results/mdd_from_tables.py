"""The differences of the committed reduced studies with their 95% Welch intervals and minimum detectable
differences (80% power), recomputed from the per-setting tables of studies/results/README.md (mean [95% t-interval]
over n seeds: sd = half-width / t(0.975, n - 1) * sqrt(n)); the run directories themselves are not committed.

    python studies/results/mdd_from_tables.py
"""

from __future__ import annotations

import math

import scipy.stats

from symrl.stats import contrast_from_summaries


def group(low: float, high: float, n: int, mean: float | None = None) -> tuple[float, float, int]:
    """(mean, sd, n) of a table cell ``mean [low, high] (n seeds)``."""
    half = (high - low) / 2
    return (mean if mean is not None else (low + high) / 2), half / scipy.stats.t.ppf(0.975, n - 1) * math.sqrt(n), n


def show(name: str, *terms: tuple[float, tuple[float, float, int]]) -> None:
    result = contrast_from_summaries([(weight, *cell) for weight, cell in terms])
    print(f"{name}: {result.estimate:+.4g} [{result.low:.4g}, {result.high:.4g}], MDD {result.mdd:.3g}")


# MuJoCo (5 seeds, noisy only): DSPPO - scaled DPPO
show("HalfCheetah DSPPO - scaled DPPO", (1, group(694, 1288, 5, 991)), (-1, group(630, 1210, 5, 920)))
show("Hopper DSPPO - scaled DPPO", (1, group(433, 989, 5, 711)), (-1, group(540, 1066, 5, 803)))
show("InvertedDoublePendulum DSPPO - scaled DPPO", (1, group(9326, 9342, 5, 9334)), (-1, group(9332, 9339, 5, 9336)))
# Atari (3 seeds, noisy only): SPPO - PPO
show("Breakout SPPO - PPO", (1, group(0.85, 5.82, 3, 3.33)), (-1, group(-1.28, 5.94, 3, 2.33)))
show("Boxing SPPO - PPO", (1, group(-0.64, 7.53, 3, 3.44)), (-1, group(-1.69, 6.81, 3, 2.56)))
# RLHF sentiment (3 seeds): final clean evaluation reward
ppo_clean, ppo_noisy = group(0.626, 0.772, 3, 0.699), group(0.493, 0.662, 3, 0.577)
sppo_clean, sppo_noisy = group(0.599, 0.802, 3, 0.701), group(0.392, 0.747, 3, 0.569)
scaled_clean, scaled_noisy = group(0.623, 0.827, 3, 0.725), group(0.475, 0.645, 3, 0.560)
show("RLHF clean SPPO - scaled PPO", (1, sppo_clean), (-1, scaled_clean))
show("RLHF noisy SPPO - scaled PPO", (1, sppo_noisy), (-1, scaled_noisy))
show("RLHF noise effect on PPO (noisy - clean)", (1, ppo_noisy), (-1, ppo_clean))
show("RLHF noise effect on SPPO (noisy - clean)", (1, sppo_noisy), (-1, sppo_clean))
show("RLHF noise effect on scaled PPO (noisy - clean)", (1, scaled_noisy), (-1, scaled_clean))
show("RLHF (SPPO - PPO) x (noisy - clean)", (1, sppo_noisy), (-1, ppo_noisy), (-1, sppo_clean), (1, ppo_clean))
show("RLHF (SPPO - scaled PPO) x (noisy - clean)", (1, sppo_noisy), (-1, scaled_noisy), (-1, sppo_clean), (1, scaled_clean))
