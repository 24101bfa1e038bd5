"""Unit-test fixtures shared across the stages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings tests see no MAILGATE_* variable of the caller's shell, and no mailgate.toml of its directory."""
    for key in list(os.environ):
        if key.startswith("MAILGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
