"""Sweeps: a grid of runs from one YAML file, run on this machine or on Ray, re-runnable at any time.

>>> from symrl.sweeps import load_sweep, run_sweep
>>> summary = run_sweep(load_sweep("studies/demo.yaml"), backend="local", workers=2)
>>> print(summary.line())
"""

from .runner import SweepSummary, run_sweep
from .spec import Cell, Sweep, load_sweep, parse_sweep

__all__ = ["Cell", "Sweep", "SweepSummary", "load_sweep", "parse_sweep", "run_sweep"]
