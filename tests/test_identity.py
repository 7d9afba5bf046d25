"""A run's identity (config_hash) survives the code: stored runs are never retrained because a setting was added,
renamed into a group, or an ensemble is written with today's key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.config import GROUPS, replace_run
from pipeline.experiment import config_hash
from tests.identity_cases import FIXTURE, every_run, small_data


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    return small_data(folder), every_run(folder)


def test_every_stored_identity_is_kept(cases):
    """The hashes the code before config groups gave (tests/data/run_identities.json says how they were made)."""
    data, runs = cases
    recorded = json.loads(FIXTURE.read_text())["identities"]
    assert {key: config_hash(run, data) for key, run in runs.items()} == recorded


@pytest.mark.parametrize("group", list(GROUPS))
def test_a_new_setting_at_its_default_changes_no_identity(cases, group):
    """A field added to any group (here by subclassing it) leaves every run's identity alone while at its default,
    and makes a new identity once set: no list of added fields to keep."""
    data, runs = cases
    base = type(getattr(next(iter(runs.values())), group))
    grown = dataclasses.make_dataclass(f"{base.__name__}Plus", [("brand_new", float, 0.5)], bases=(base,))
    for key, run in runs.items():
        before = config_hash(run, data)
        with_default = dataclasses.replace(run, **{group: grown(**dataclasses.asdict(getattr(run, group)))})
        assert config_hash(with_default, data) == before, key
        changed = dataclasses.replace(run, **{group: grown(**dataclasses.asdict(getattr(run, group)), brand_new=2.0)})
        assert config_hash(changed, data) != before, key


def test_any_setting_changes_the_identity(cases):
    data, runs = cases
    run = runs["demo/lite0-head"]
    assert len({config_hash(replace_run(run, **change), data) for change in (
        {}, {"lr": 0.5}, {"tta": ["flip"]}, {"num_nodes": 2}, {"name": "other"}, {"ensemble": ["x"]})}) == 6
