"""Fixtures every test gets."""

from __future__ import annotations

from pathlib import Path

import pytest

import symrl.threads


@pytest.fixture(autouse=True)
def _own_core_claims(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test claims cores (symrl.threads.claim_cores) in a folder of its own: symrl runs elsewhere on the
    machine, or environments an earlier test left open, do not change how a test's environments are split."""
    monkeypatch.setattr(symrl.threads, "CLAIMS", Path(tmp_path_factory.mktemp("core_claims")))
