"""Random-agent and human scores of the Atari 2600 games, for human-normalised scores.

A human-normalised score ``(score - random) / (human - random)`` puts games with very different point scales
on one axis (0 = random play, 1 = the professional human tester), which is what aggregate statistics across
games (IQM, optimality gap) need.

Source: the Atari-57 table of DeepMind's DQN Zoo, ``dqn_zoo/atari_data.py``
(https://github.com/google-deepmind/dqn_zoo/blob/master/dqn_zoo/atari_data.py): evaluation returns averaged
over at least 3 episodes, up to 30 no-op starts, episodes capped at 108,000 frames. The same numbers
(human Alien 7127.7, random 227.8) are used with rliable's Atari data and by later DeepMind papers; the
DQN Nature 2015 paper printed an earlier human table that differs for some games.
Every value below was checked against that file; the random scores were cross-checked against
google-research/reincarnating_rl (``reincarnating_rl/atari_scores.py``), which agrees on every game here.

Video Pinball is left out on purpose: published copies disagree on its random score (16256.9 in DQN Zoo,
0.0 in reincarnating_rl and the tables derived from MuZero), and the two give very different normalised
scores; runs on it fall back to min-max normalisation.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional


class AtariScores(NamedTuple):
    """Mean episode return of the uniform-random agent and of the human tester."""

    random: float
    human: float


# keyed by the ALE game name as it appears in Gymnasium ids ("PongNoFrameskip-v4", "ALE/Pong-v5")
ATARI_SCORES: dict[str, AtariScores] = {
    "Alien": AtariScores(random=227.8, human=7127.7),
    "Amidar": AtariScores(random=5.8, human=1719.5),
    "Assault": AtariScores(random=222.4, human=742.0),
    "Asterix": AtariScores(random=210.0, human=8503.3),
    "Asteroids": AtariScores(random=719.1, human=47388.7),
    "Atlantis": AtariScores(random=12850.0, human=29028.1),
    "BankHeist": AtariScores(random=14.2, human=753.1),
    "BattleZone": AtariScores(random=2360.0, human=37187.5),
    "BeamRider": AtariScores(random=363.9, human=16926.5),
    "Berzerk": AtariScores(random=123.7, human=2630.4),
    "Bowling": AtariScores(random=23.1, human=160.7),
    "Boxing": AtariScores(random=0.1, human=12.1),
    "Breakout": AtariScores(random=1.7, human=30.5),
    "Centipede": AtariScores(random=2090.9, human=12017.0),
    "ChopperCommand": AtariScores(random=811.0, human=7387.8),
    "CrazyClimber": AtariScores(random=10780.5, human=35829.4),
    "Defender": AtariScores(random=2874.5, human=18688.9),
    "DemonAttack": AtariScores(random=152.1, human=1971.0),
    "DoubleDunk": AtariScores(random=-18.6, human=-16.4),
    "Enduro": AtariScores(random=0.0, human=860.5),
    "FishingDerby": AtariScores(random=-91.7, human=-38.7),
    "Freeway": AtariScores(random=0.0, human=29.6),
    "Frostbite": AtariScores(random=65.2, human=4334.7),
    "Gopher": AtariScores(random=257.6, human=2412.5),
    "Gravitar": AtariScores(random=173.0, human=3351.4),
    "Hero": AtariScores(random=1027.0, human=30826.4),
    "IceHockey": AtariScores(random=-11.2, human=0.9),
    "Jamesbond": AtariScores(random=29.0, human=302.8),
    "Kangaroo": AtariScores(random=52.0, human=3035.0),
    "Krull": AtariScores(random=1598.0, human=2665.5),
    "KungFuMaster": AtariScores(random=258.5, human=22736.3),
    "MontezumaRevenge": AtariScores(random=0.0, human=4753.3),
    "MsPacman": AtariScores(random=307.3, human=6951.6),
    "NameThisGame": AtariScores(random=2292.3, human=8049.0),
    "Phoenix": AtariScores(random=761.4, human=7242.6),
    "Pitfall": AtariScores(random=-229.4, human=6463.7),
    "Pong": AtariScores(random=-20.7, human=14.6),
    "PrivateEye": AtariScores(random=24.9, human=69571.3),
    "Qbert": AtariScores(random=163.9, human=13455.0),
    "Riverraid": AtariScores(random=1338.5, human=17118.0),
    "RoadRunner": AtariScores(random=11.5, human=7845.0),
    "Robotank": AtariScores(random=2.2, human=11.9),
    "Seaquest": AtariScores(random=68.4, human=42054.7),
    "Skiing": AtariScores(random=-17098.1, human=-4336.9),
    "Solaris": AtariScores(random=1236.3, human=12326.7),
    "SpaceInvaders": AtariScores(random=148.0, human=1668.7),
    "StarGunner": AtariScores(random=664.0, human=10250.0),
    "Surround": AtariScores(random=-10.0, human=6.5),
    "Tennis": AtariScores(random=-23.8, human=-8.3),
    "TimePilot": AtariScores(random=3568.0, human=5229.2),
    "Tutankham": AtariScores(random=11.4, human=167.6),
    "UpNDown": AtariScores(random=533.4, human=11693.2),
    "Venture": AtariScores(random=0.0, human=1187.5),
    "WizardOfWor": AtariScores(random=563.5, human=4756.5),
    "YarsRevenge": AtariScores(random=3092.9, human=54576.9),
    "Zaxxon": AtariScores(random=32.5, human=9173.3),
}

_BY_LOWER_NAME = {name.lower(): name for name in ATARI_SCORES}
_VERSION = re.compile(r"-v\d+$")
_ATARI_SUFFIXES = ("NoFrameskip", "Deterministic")


def game_from_env_id(env_id: str) -> Optional[str]:
    """The game name of an Atari env id ("PongNoFrameskip-v4", "ALE/Pong-v5" -> "Pong"); None if not Atari.

    A name counts as Atari when the id has the ``ALE/`` namespace or a ``NoFrameskip``/``Deterministic``
    suffix (then it is returned even when the game has no scores here), or when it is a game of
    :data:`ATARI_SCORES`. Matching is case-insensitive; the returned name is spelt as in the table.
    """
    name = _VERSION.sub("", str(env_id).strip())
    looks_atari = name.startswith("ALE/")
    name = name.removeprefix("ALE/")
    for suffix in _ATARI_SUFFIXES:
        if name.endswith(suffix):
            name, looks_atari = name[: -len(suffix)], True
    if name.endswith("-ram"):
        name, looks_atari = name[: -len("-ram")], True
    known = _BY_LOWER_NAME.get(name.lower().replace("_", ""))
    if known is not None:
        return known
    return name if looks_atari and name else None


def atari_scores(env_id: str) -> Optional[AtariScores]:
    """The random and human scores of an env id's game, or None (not Atari, or a game not in the table)."""
    game = game_from_env_id(env_id)
    return ATARI_SCORES.get(game) if game is not None else None


def human_normalized(env_id: str, score: float) -> float:
    """``(score - random) / (human - random)`` for an Atari env id; KeyError for a game not in the table."""
    scores = atari_scores(env_id)
    if scores is None:
        raise KeyError(f"no human and random scores for {env_id!r}")
    return (score - scores.random) / (scores.human - scores.random)
