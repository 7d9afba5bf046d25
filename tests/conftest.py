"""Shared fixtures: where the real paintings are, and small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_datasets_dir() -> Path:
    return Path(os.environ.get("PAINTINGS_SHARED", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets beside the project; CI sets PERIODEYE_REQUIRE_SHARED=1 so absence fails."""
    root = shared_datasets_dir()
    if not (root / "wikiart-styles").is_dir():
        msg = f"shared datasets not found at {root}; set PAINTINGS_SHARED to their folder"
        if os.environ.get("PERIODEYE_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root
