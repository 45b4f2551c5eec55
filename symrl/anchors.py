"""Fixed per-environment normalisation anchors: a random policy's score -> 0, a documented reference -> 1.

A normalised score ``(score - random) / (reference - random)`` puts environments with different return scales
on one axis and, unlike min-max over a study's runs, does not move when an arm or a run is added. Atari games
use the published random and human scores (:mod:`symrl.atari_scores`); other environments the table in
``symrl/anchors.yaml``, each entry with its source (measured random scores: ``scripts/measure_random_scores.py``).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import NamedTuple, Optional

import yaml

from . import atari_scores

_VERSION = re.compile(r"-v\d+$")


class Anchor(NamedTuple):
    """Scores mapped to 0 (``random``) and 1 (``reference``), and where they come from."""

    random: float
    reference: float
    source: str

    def normalize(self, score: float) -> float:
        return (score - self.random) / (self.reference - self.random)


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Anchor]:
    """The anchors of ``symrl/anchors.yaml`` by key (an exact id or an id without its version)."""
    data = yaml.safe_load(resources.files("symrl").joinpath("anchors.yaml").read_text()) or {}
    return {str(key): Anchor(float(entry["random"]), float(entry["reference"]), str(entry["source"]))
            for key, entry in data.items()}


def anchor(env_id: str) -> Optional[Anchor]:
    """The anchors of ``env_id``, or None: an Atari game's random and human scores, else the table's entry for
    the exact id, else for the id without its version (``HalfCheetah-v4`` -> ``HalfCheetah``)."""
    game = atari_scores.game_from_env_id(env_id)
    scores = atari_scores.ATARI_SCORES.get(game) if game is not None else None
    if scores is not None:
        return Anchor(scores.random, scores.human, f"random agent and human tester scores of {game} (DQN Zoo's Atari-57 table)")
    entries = table()
    return entries.get(str(env_id)) or entries.get(_VERSION.sub("", str(env_id)))
