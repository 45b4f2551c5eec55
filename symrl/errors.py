"""The one exception type for user mistakes; the CLI turns it into an ``error:`` line and exit code 2."""

from __future__ import annotations


class SymrlError(Exception):
    """A problem the user can fix (bad config, unknown environment, missing run directory...).

    The message names the problem and the fix in one line.
    """

    exit_code = 2


class TrainingDiverged(SymrlError):
    """A non-finite loss stopped training; the last good checkpoint is kept."""

    exit_code = 1
