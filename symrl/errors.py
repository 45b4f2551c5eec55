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


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (at most 200 characters), or its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__
