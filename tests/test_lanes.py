"""The fast lane stays fast: a test that needs a trained store is marked, so `make test-fast` skips it."""

from __future__ import annotations

import pytest

# Session fixtures that train runs before their first test (a minute or more on 2 cores).
TRAINED_STORES = {"demo_store", "store_without_attributions", "real_store", "served"}
LANES = {"slow", "browser", "ddp"}


def test_tests_that_need_a_trained_store_are_not_in_the_fast_lane(request: pytest.FixtureRequest) -> None:
    """Checks every test of this session (in the fast lane, exactly the ones it would run)."""
    unmarked = [
        item.nodeid for item in request.session.items
        if TRAINED_STORES & set(getattr(item, "fixturenames", ()))
        and not LANES & {mark.name for mark in item.iter_markers()}
    ]
    assert not unmarked, f"mark these @pytest.mark.slow (they build a trained store): {unmarked}"
