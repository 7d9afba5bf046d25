"""--set on a file in the old ensemble spelling: the new key replaces the old one instead of clashing with it."""

from __future__ import annotations

import yaml

from pipeline.config import load_experiment


def test_set_ensemble_replaces_the_old_strategy_and_members(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"source": "demo"}, "runs": [
        {"name": "a"}, {"name": "b"}, {"name": "e", "strategy": "ensemble", "members": ["a"]}]}))

    run = load_experiment(path, overrides=["runs.e.ensemble=[a, b]"]).runs[2]

    assert (run.ensemble, run.strategy_label) == (["a", "b"], "ensemble")
