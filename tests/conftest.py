"""Shared fixtures: every test gets its own Almanac home with a real SQLite catalog."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ALMANAC_HOME at a fresh directory for every test."""
    root = tmp_path / "home"
    monkeypatch.setenv("ALMANAC_HOME", str(root))
    return root
