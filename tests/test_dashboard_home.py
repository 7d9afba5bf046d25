"""The router: every page in Home.PAGES is in the menu, and a missing page file is an error on screen."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT


def test_a_missing_page_file_stops_the_app_with_its_name(tmp_path: Path, monkeypatch) -> None:
    """A copy of the dashboard without upload.py: Home says which file is missing instead of dropping the page."""
    copy = tmp_path / "dashboard"
    shutil.copytree(REPO_ROOT / "dashboard", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "views" / "upload.py").unlink()
    monkeypatch.setenv("PERIODEYE_STORE", str(tmp_path / "none.duckdb"))
    at = AppTest.from_file(str(copy / "Home.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [f"Dashboard page file missing from {copy / 'views'}: upload.py"]
